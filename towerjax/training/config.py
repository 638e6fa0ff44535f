"""Training settings: :class:`TrainConfig`, one training run's objective, towers, optimiser,
schedule, validation and parallel layout (SPEC 6), and the choices its fields take."""

from __future__ import annotations

import copy
import dataclasses

from towerjax.checks import (
    InputError,
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_sizes,
)
from towerjax.objectives import IPS, OBJECTIVES, Objective, objective_from_name
from towerjax.reward_model import RewardModelConfig
from towerjax.towers import EMBEDDING_MODES, TwoTower, check_activation

__all__ = [
    "EMBEDDING_OPTIMIZERS",
    "LEGACY_SYNTHETIC_FIELDS",
    "OPTIMIZERS",
    "PROPOSALS",
    "SELECTIONS",
    "TRACED_FIELDS",
    "VALIDATION_DR_PAIRS",
    "TrainConfig",
    "with_traced",
]

OPTIMIZERS = ("adam", "adamw")
# TrainConfig.embedding_optimizer: the embedding tables' own optimiser (None: ``optimizer``'s).
EMBEDDING_OPTIMIZERS = ("row-adagrad",)
PROPOSALS = ("uniform", "popularity")  # TrainConfig.proposal of the sampled softmax
# Above this many (validation row, item) pairs the DR validation estimate is skipped unless
# asked for (TrainConfig.validation_dr): its reward model scores every pair every epoch.
VALIDATION_DR_PAIRS = 50_000_000
# Validation criteria of TrainConfig.select: an estimate, or its lower 95% bound.
SELECTIONS = ("snips", "dr", "snips-lower", "dr-lower")
# Fields of the synthetic problem that TrainConfig held before it was its own value
# (towerjax.synthetic.SyntheticProblem); TrainConfig.from_dict drops them.
LEGACY_SYNTHETIC_FIELDS = ("behavior", "epsilon", "n_rounds", "n_test_rounds", "n_actions", "dim")
# Settings that change no shape and no branch of the compiled run, so runs that differ only in
# them train as one compiled call with the values traced (with_traced; a search's candidates).
# "entropy" is the objective's entropy bonus, "choice" the index of a OneOf objective
# (towerjax.objectives.OneOf: several objectives in one call); the others are TrainConfig fields.
TRACED_FIELDS = ("learning_rate", "weight_decay", "temperature", "entropy", "choice")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. The defaults are the library's, chosen by ``benchmarks/learning.py``
    across tasks (benchmarks/RESULTS.md): one hidden layer of 64, ``D = 32``, Adam 1e-3,
    batch 128, 30 epochs, 20% of the logs held out for validation and the epoch with the best
    SNIPS estimate returned. :meth:`seed_study` gives the seed study's settings (SPEC 6).

    ``objective`` is an objective value (:mod:`towerjax.objectives`, e.g. ``IPS(cap=10)``,
    ``DR()``, ``TwoStage(candidates=20)``) holding its own options; a registry name
    (``"ips"``, ``"dr"``, ...) gives that objective with its defaults.
    The built-in synthetic problem a run draws without logs of its own is a separate value,
    :class:`towerjax.synthetic.SyntheticProblem`. ``optimizer`` is ``"adam"`` (L2 ``weight_decay`` coupled as in PyTorch's
    ``Adam(weight_decay)``) or ``"adamw"`` (decoupled decay, ``optax.adamw``).
    ``estimate_propensities=True`` ignores the logged ``pscore`` and trains a behaviour head
    (:mod:`towerjax.behavior`) alongside, whose ``sg(beta_hat(a_i|x_i))`` replaces it.
    ``batch_size`` may not exceed the synthetic problem's ``n_rounds``; with logs of your own
    a batch larger than the (training) logs uses all of them in one batch.
    ``evaluate_train=False`` skips the per-epoch true value on the
    training contexts (reported as NaN), which saves a forward pass over them each epoch.
    ``validation_dr`` records the DR estimate on the validation logs (its reward model
    scores every validation row against every item); ``None`` (default) does so when the
    validation logs have at most :data:`VALIDATION_DR_PAIRS` (row, item) pairs or ``select``
    needs it, and reports NaN otherwise. ``embedding_weight_decay`` is the L2 decay of the
    embedding tables of id features (:mod:`towerjax.features`; ``optax.masked`` by
    parameter name); ``None`` uses ``weight_decay``. ``embedding_mode`` places the tables
    in the towers (:class:`towerjax.towers.Tower`): ``"concat"`` (each table's rows
    concatenated with the dense columns) or ``"sum"`` (tables as wide as the first layer,
    added to its output: a one-hot input's first layer, by lookup). ``data_parallel`` shards every
    minibatch's events over that many devices (one run, SPMD: each device computes its
    rows' part of the loss and the compiler sums the gradients), composable with the seed
    axis (:func:`compile_seeds` lays devices out as ``seed x batch``); ``batch_size`` must
    be a multiple of it.

    ``sampled_softmax=M`` trains with a sampled softmax over ``M`` items drawn per step
    from ``proposal`` (``"uniform"``, or ``"popularity"``: the training logs' item counts
    plus one), with the log-Q correction (:mod:`towerjax.large_softmax`): the item tower
    runs on the batch's logged items and the ``M`` samples only, so a step's cost does not
    grow with the catalogue. The objective then sees ``log pi_hat(a_i|x_i)`` as a ``[B, 1]``
    column (its importance weight uses ``pi_hat``, biased ``O(1/M)``), and the entropy
    bonus its sampled estimate (:func:`towerjax.large_softmax.sampled_entropy`). DR and its
    variants (``Objective.sampled_row``) see the sampled row ``[B, 1 + M]`` (the logged item,
    then the samples): their direct term ``sum_a pi(a|x) q_hat(x, a)`` is estimated on it,
    self-normalised, with the reward model scored on those items only (the cross-fitted
    models of :meth:`towerjax.RewardModel.fold_fits`, each row by the model not fitted on it;
    never ``[n, A]``). Two-stage and the KL penalty need whole rows and are refused.
    Validation and reported values use the exact softmax, in chunks.

    ``sparse_embeddings=True`` (default) updates the embedding tables lazily: a step updates
    the rows its batch looks up and their Adam moments only (TensorFlow Addons' ``LazyAdam``,
    bias corrections of the global step; :mod:`towerjax.training.sparse`), at a cost in the
    rows looked up, not in the table's size. The context tables always; the item tables under
    a sampled softmax (under the full softmax every item row is looked up every step, so they
    update densely, which lazy Adam equals). Weight decay of the tables is lazy too: coupled
    L2 (``"adam"``) adds ``wd * E_j`` to the gradients of the looked-up rows only, ``"adamw"``
    decays the looked-up rows only; rows no event looks up keep their values. It equals dense
    Adam when every row is looked up every step, hence the default (the tuned settings carry
    over); ``False`` is dense Adam on every row each step (rows not looked up still move by
    their momentum and decay). Runs without id features are the same either way.
    ``embedding_optimizer="row-adagrad"`` trains the tables with row-wise Adagrad (one
    accumulator per row instead of Adam's two ``[V, D]`` moments: a ``2D``-th of the state;
    :func:`towerjax.training.make_optimizer`), lazily too; ``None`` uses ``optimizer``.
    """

    objective: Objective = dataclasses.field(default_factory=IPS)
    hidden_sizes: tuple[int, ...] = (64,)
    embedding_size: int = 32
    activation: str = "elu"
    temperature: float = 1.0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 128
    epochs: int = 30
    reward_model: RewardModelConfig = dataclasses.field(default_factory=RewardModelConfig)
    estimate_propensities: bool = False
    evaluate_train: bool = True
    validation_fraction: float = 0.2
    select: str | None = "snips"
    patience: int | None = None
    validation_dr: bool | None = None
    embedding_weight_decay: float | None = None
    embedding_mode: str = "concat"
    data_parallel: int = 1
    sampled_softmax: int | None = None
    proposal: str = "uniform"
    sparse_embeddings: bool = True
    embedding_optimizer: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.objective, str):
            object.__setattr__(self, "objective", objective_from_name(self.objective))
        if not isinstance(self.objective, Objective):
            raise InputError(
                "objective",
                f"expected an objective value or one of {tuple(OBJECTIVES)}, got {self.objective!r}",
            )
        for name in ("embedding_size", "batch_size", "epochs", "data_parallel"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.batch_size % self.data_parallel:
            raise InputError(
                "data_parallel",
                f"expected a divisor of batch_size={self.batch_size} (each device takes an equal share "
                f"of a batch's events), got {self.data_parallel}",
            )
        check_choice("proposal", self.proposal, PROPOSALS)
        if not isinstance(self.sparse_embeddings, bool):
            raise InputError("sparse_embeddings", f"expected True or False, got {self.sparse_embeddings!r}")
        if self.embedding_optimizer is not None:
            check_choice("embedding_optimizer", self.embedding_optimizer, EMBEDDING_OPTIMIZERS)
        if self.sampled_softmax is not None:
            object.__setattr__(
                self, "sampled_softmax", check_positive_int("sampled_softmax", self.sampled_softmax)
            )
            if not (self.objective.logged_only or self.objective.sampled_row):
                raise InputError(
                    "sampled_softmax",
                    f"objective {self.objective.name!r} sums over every item (it needs whole [B, A] rows); "
                    "a sampled softmax trains objectives that read the logged item only: ips, snips, "
                    "ipw-subgauss, ipw-ls, topk, naive, regression, ips-regression; and the doubly "
                    "robust ones, whose direct term it estimates on the samples: dr, sndr, switch-dr, dr-os",
                )
            if self.objective.kl or self.estimate_propensities:
                raise InputError(
                    "sampled_softmax",
                    "the KL penalty and the behaviour head need whole [B, A] rows; not with a sampled softmax",
                )
        check_activation(self.activation)
        check_choice("embedding_mode", self.embedding_mode, EMBEDDING_MODES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("temperature", "learning_rate"):
            check_positive(name, getattr(self, name))
        check_nonnegative("weight_decay", self.weight_decay)
        if self.embedding_weight_decay is not None:
            check_nonnegative("embedding_weight_decay", self.embedding_weight_decay)
        object.__setattr__(self, "hidden_sizes", check_sizes("hidden_sizes", self.hidden_sizes))
        if isinstance(self.validation_fraction, bool) or not 0.0 <= self.validation_fraction < 1.0:
            raise InputError(
                "validation_fraction", f"expected a value in [0, 1), got {self.validation_fraction}"
            )
        if self.select is not None:
            check_choice("select", self.select, SELECTIONS)
        if self.patience is not None:
            object.__setattr__(self, "patience", check_positive_int("patience", self.patience))
            if self.select is None:
                raise InputError("patience", "early stopping needs a selection criterion (select)")

    @classmethod
    def seed_study(cls, **overrides) -> TrainConfig:
        """The seed study's settings (SPEC 6), as its reproduction uses them.

        Adam 0.005 with coupled L2 1e-6, batch 10, 100 epochs, towers (100, 100, 100), D = 100,
        elu, ``tau = 1``, no validation split, and the reward model fitted and used on the same
        rows as the seed did (``folds=1``, in-sample); an objective given by name has no
        entropy bonus (the library's policy-gradient objectives have one by default).
        ``overrides`` replace any field.
        """
        settings = dict(
            optimizer="adam",
            learning_rate=0.005,
            weight_decay=1e-6,
            batch_size=10,
            epochs=100,
            hidden_sizes=(100, 100, 100),
            embedding_size=100,
            activation="elu",
            temperature=1.0,
            reward_model=RewardModelConfig(folds=1),
            validation_fraction=0.0,
            select=None,
            patience=None,
        )
        objective = overrides.pop("objective", "ips")
        if isinstance(objective, str):  # by name: the seed's learners, with no entropy bonus
            objective = dataclasses.replace(objective_from_name(objective), entropy=0.0)
        return cls(objective=objective, **{**settings, **overrides})

    @property
    def model(self) -> TwoTower:
        return TwoTower(self.hidden_sizes, self.embedding_size, self.activation, self.embedding_mode)

    def to_dict(self) -> dict:
        """JSON-ready: every field, the objective as ``{"name", **options}``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["objective"] = self.objective.to_dict()
        out["reward_model"] = dataclasses.asdict(self.reward_model)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, payload: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict` (also after a JSON round trip): the objective is
        rebuilt from its name and options (:func:`~towerjax.objectives.objective_from_name`),
        lists become tuples again and ``reward_model`` a :class:`RewardModelConfig`.

        Missing fields take their defaults; an unknown field raises
        :class:`~towerjax.checks.InputError` naming it. The synthetic problem's settings that
        configurations of earlier versions held (:data:`LEGACY_SYNTHETIC_FIELDS`: ``behavior``,
        ``epsilon``, ``n_rounds``, ``n_test_rounds``, ``n_actions``, ``dim``; now
        :class:`towerjax.synthetic.SyntheticProblem`) are dropped silently, so saved models and
        JSON written by earlier versions still load.
        """
        if not isinstance(payload, dict):
            raise InputError("config", f"expected a dict of TrainConfig fields, got {type(payload).__name__}")
        payload = {k: v for k, v in payload.items() if k not in LEGACY_SYNTHETIC_FIELDS}
        known = {f.name for f in dataclasses.fields(cls)}
        for name in payload:
            if name not in known:
                raise InputError(str(name), f"not a TrainConfig field (fields are {sorted(known)})")

        def tuples(options: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}

        fields = tuples(payload)
        objective = fields.get("objective")
        if isinstance(objective, dict):
            options = tuples(objective)
            if not isinstance(options.get("name"), str):
                raise InputError("objective", f"expected {{'name': ..., **options}}, got {objective!r}")
            fields["objective"] = objective_from_name(options.pop("name"), **options)
        reward_model = fields.get("reward_model")
        if isinstance(reward_model, dict):
            model_fields = {f.name for f in dataclasses.fields(RewardModelConfig)}
            for name in reward_model:
                if name not in model_fields:
                    raise InputError(
                        f"reward_model.{name}",
                        f"not a RewardModelConfig field (fields are {sorted(model_fields)})",
                    )
            fields["reward_model"] = RewardModelConfig(**tuples(reward_model))
        return cls(**fields)


def with_traced(config: TrainConfig, values: dict) -> TrainConfig:
    """``config`` with some :data:`TRACED_FIELDS` set to traced (or concrete) scalars.

    Used inside a compiled run (``make_train``'s ``hyperparameters``): a ``vmap`` over the values
    trains a grid of candidates as one call, like seeds. The copy is made without
    ``__post_init__``, whose Python checks cannot read a traced value; give concrete values to
    :class:`TrainConfig` (and the objective) first to have them checked.

    Args:
      config: the run's configuration (everything else, and the shapes, come from it).
      values: ``{name: scalar}`` with names from :data:`TRACED_FIELDS` (``entropy`` sets
        ``config.objective.entropy``, ``choice`` a :class:`~towerjax.objectives.OneOf`'s index).

    Raises:
      InputError: naming an unknown field.
    """
    unknown = sorted(set(values) - set(TRACED_FIELDS))
    if unknown:
        raise InputError(
            "hyperparameters", f"{unknown} cannot be traced; expected names from {TRACED_FIELDS}"
        )
    traced = copy.copy(config)
    for name, value in values.items():
        if name in ("entropy", "choice"):
            if name == "choice" and not hasattr(traced.objective, "choices"):
                raise InputError("hyperparameters", "'choice' needs a OneOf objective (several objectives)")
            objective = copy.copy(traced.objective)
            object.__setattr__(objective, "entropy" if name == "entropy" else "index", value)
            object.__setattr__(traced, "objective", objective)
        else:
            object.__setattr__(traced, name, value)
    return traced
