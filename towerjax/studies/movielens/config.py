"""The MovieLens study's settings: :class:`MovieLensStudyConfig`, its miniature sizes and the paper's table.

The choices behind every default are in ``docs/studies/movielens.md``.
"""

from __future__ import annotations

import dataclasses

from towerjax import losses
from towerjax.checks import InputError, check_nonnegative, check_positive, check_positive_int, check_sizes
from towerjax.towers import TwoTower, check_activation

__all__ = [
    "EMBEDDING_MODE",
    "EVALUATIONS",
    "METHODS",
    "MINIATURE",
    "PAPER_PRECISION_AT_5",
    "REFERENCES",
    "MovieLensStudyConfig",
]

METHODS = ("CE", "1-IPS", "2-IPS")
EVALUATIONS = ("one-stage", "two-stage")
REFERENCES = ("logging", "ranker", "oracle")
# The towers add each id's table row to the first layer's output: a one-hot input's first
# layer, by lookup (towerjax.towers.Tower; docs/studies/movielens.md says why not "concat").
EMBEDDING_MODE = "sum"

# Ma et al. (WWW 2020), MovieLens-1M, Precision@5 in percent (SPEC 8).
PAPER_PRECISION_AT_5 = {
    "two-stage": {"CE": 95.8, "1-IPS": 95.1, "2-IPS": 98.1},
    "one-stage": {"CE": 86.3, "1-IPS": 90.1, "2-IPS": 95.7},
}


@dataclasses.dataclass(frozen=True)
class MovieLensStudyConfig:
    """Every setting of the study; the defaults are the reported run (``docs/studies/movielens.md``).

    Simulator: ``simulator_dim``, ``simulator_l2``, ``simulator_steps``,
    ``simulator_learning_rate``. Logging policy: ``logging_rank``, ``logging_noise``
    (``sigma_0``), ``logging_temperature`` (``tau_0``), ``events_per_user``. Ranker:
    ``ranker_noise`` (``sigma_r``). Generators: ``hidden_sizes``, ``embedding_size``,
    ``activation``, ``learning_rate``, ``weight_decay``, ``batch_size``, ``epochs``; the
    weights of 1-IPS and 2-IPS: ``clip`` (``None`` for none) then ``self_normalize``;
    2-IPS: ``candidates`` (``k``), ``num_samples`` (``T``), ``alpha``. Evaluation: the
    two-stage candidate set is the generator's top ``candidates``; metrics at ``ks``.
    A bad value raises :class:`towerjax.checks.InputError` naming the field.
    """

    simulator_dim: int = 16
    simulator_l2: float = 5.0
    simulator_steps: int = 500
    simulator_learning_rate: float = 0.05
    logging_rank: int = 2
    logging_noise: float = 1.0
    logging_temperature: float = 1.0
    events_per_user: int = 20
    ranker_noise: float = 0.25
    hidden_sizes: tuple[int, ...] = ()
    embedding_size: int = 32
    activation: str = "elu"
    learning_rate: float = 0.03
    weight_decay: float = 3.0
    batch_size: int = 1024
    epochs: int = 15
    clip: tuple[float, float] | None = (0.01, 10.0)
    self_normalize: bool = True
    candidates: int = 30
    num_samples: int = 20
    alpha: float = 1e-3
    ks: tuple[int, ...] = (5, 10)
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        for name in (
            "simulator_dim",
            "simulator_steps",
            "logging_rank",
            "events_per_user",
            "embedding_size",
            "batch_size",
            "epochs",
            "candidates",
            "num_samples",
        ):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        for name in ("simulator_learning_rate", "logging_temperature", "learning_rate"):
            check_positive(name, getattr(self, name))
        for name in ("simulator_l2", "logging_noise", "ranker_noise", "weight_decay", "alpha"):
            check_nonnegative(name, getattr(self, name))
        object.__setattr__(self, "hidden_sizes", check_sizes("hidden_sizes", self.hidden_sizes))
        check_activation(self.activation)
        object.__setattr__(self, "clip", losses.check_weight_options(None, self.clip))
        object.__setattr__(self, "ks", _cutoffs(self.ks, self.candidates))
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        if not methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
            raise InputError("methods", f"expected distinct names from {METHODS}, got {self.methods!r}")
        object.__setattr__(self, "methods", methods)

    @property
    def model(self) -> TwoTower:
        return TwoTower(self.hidden_sizes, self.embedding_size, self.activation, EMBEDDING_MODE)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for name in ("hidden_sizes", "ks", "methods", "clip"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out


def _cutoffs(value, candidates: int) -> tuple[int, ...]:
    ks = (value,) if isinstance(value, int) else tuple(value)
    if not ks:
        raise InputError("ks", "expected at least one cut-off")
    ks = tuple(check_positive_int("ks", k) for k in ks)
    if max(ks) > candidates:
        raise InputError("ks", f"expected cut-offs <= candidates={candidates}, got {ks}")
    return tuple(sorted(set(ks)))


# Tiny sizes for tests and smoke runs (use with a small dataset or the real one).
MINIATURE = {
    "simulator_dim": 4,
    "simulator_steps": 50,
    "events_per_user": 4,
    "embedding_size": 8,
    "batch_size": 32,
    "epochs": 2,
    "candidates": 12,
    "num_samples": 4,
}
