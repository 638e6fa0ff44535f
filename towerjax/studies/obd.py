"""The Open Bandit Dataset study: two-tower policies learned from ``bts`` logs, evaluated on ``random`` logs.

What it does. Each learner (``ips``, ``dr``, ``snips``, ``regression``, ``naive``; SPEC 3-4)
trains a two-tower softmax policy on the OBD small sample's Bernoulli-Thompson-sampling
(``bts``) log of one campaign, ``seeds`` times (one compiled call over the seed keys,
sharded over the devices, the logs shared: :func:`towerjax.train.train_seeds` with
``data=``). The context is the user features (one-hot) and the user-item
affinities (with ``"feature"`` positions, the default, a one-hot of the slot too); the
item tower reads the item features. Each learned policy is then
evaluated off-policy on the ``random`` log of the same campaign (the uniform logging
policy, propensity ``1/A`` per slot: 1/80 for ``all``) with IPS and SNIPS, and compared with the random
policy's own click rate (the uniform policy's on-policy value) and with the ``bts``
policy's click rate on its own log.

Positions. An OBD impression fills ``K = 3`` slots; each row is one (impression, slot)
pair and its propensity is the logging policy's probability of that item *in that slot*,
``pi_0(a | x, k)``. Both logs are read with :meth:`towerjax.data.LoggedData.from_obp`,
which keeps each row's slot (``position``), and every slot's rows are used. The study
makes OBP's independence assumption (as OBP's own estimators do): the click in slot ``k``
depends only on the context, the slot and the item shown there, not on the items in the
other two slots, so each slot is its own single-slot bandit with exact propensities (the
logging policy's choice of three distinct items is not modelled as a slate). Every policy
is evaluated slot by slot on the ``random`` rows shown there, and the study reports the
plain mean of the per-slot values (each slot counts 1/3, whatever its number of rows;
IPS over the pooled rows would weigh the slots by their row counts instead). How the
``bts`` rows of the three slots train the policies (``position_handling``):

- ``"feature"`` (default): ``from_obp(position_handling="feature")``: one position-aware
  policy ``pi(a | x, k)`` per seed, trained on all ``bts`` rows with a one-hot of the slot
  ``k`` appended to the context; for slot ``k`` it is evaluated on the ``random`` rows of
  slot ``k``, whose context carries the same one-hot.
- ``"pooled"``: ``from_obp(position_handling="pooled")``: one policy ``pi(a | x)`` per
  seed, trained on all ``bts`` rows with the context unchanged (it never sees the slot),
  and evaluated as it is on each slot's ``random`` rows.
- ``"separate"``: the pooled reading split by slot (``data.take_rows(data.position == k)``):
  one policy per slot and seed, trained only on the ``bts`` rows of that slot and
  evaluated on that slot's ``random`` rows.

The uniform and ``bts`` click rates are slot averages over the same rows. Per-slot
numbers are reported too.

Seeds. The headline value of a learner is that of its *seed-averaged policy*
``pi_bar = (1/S) sum_s pi_s`` (the mixture: draw a seed, act with its policy). Its IPS
estimate equals the mean of the per-seed IPS estimates; its SNIPS estimate is SNIPS
with ``pi_bar``'s weights. The per-seed estimates, their mean and standard deviation
(the training-seed spread, on the same evaluation rows) are reported beside it. Seed
``s`` of a run with root ``seed`` trains with key ``s`` of
``jax.random.split(jax.random.key(seed), seeds)``; with separate positions slot ``k``
uses the root ``n_slots * seed + k`` instead, so every slot has keys of its own.

Confidence intervals. Normal 95% intervals, ``value +- 1.96 * se``, with ``se`` from
the per-row terms on the ``random`` rows (``std(ddof=1) / sqrt(n_k)`` per slot; the
delta method for SNIPS, as :func:`towerjax.evaluation.off_policy_estimates`), combined
over slots as ``sqrt(sum_k se_k^2) / K`` since the slots' rows are disjoint. They
express the evaluation data's sampling noise for the given learned policies (not the
randomness of the ``bts`` training log). With about a dozen clicks per slot the normal
approximation is rough, and for a policy that concentrates on a few items the interval
can be much too narrow (below), so it is not the significance test on its own.

Significance. The difference between a learner and the uniform policy is estimated
*paired*, on the same ``random`` rows: for IPS the per-row terms ``(w_i - 1) r_i``
(learned IPS term minus the row's own click), for SNIPS the difference of the two
influence functions ``w_i (r_i - V_snips) / mean(w) - (r_i - mean(r))``, each with a
normal 95% interval. Because the interval's standard error only sees the clicked rows'
weights, it is too narrow when the policy concentrates on items that happen to have few
clicks in the random log; so each difference also gets a permutation test of the sharp
null "clicks do not depend on the policy's weights" (each slot's clicks reassigned to
uniformly drawn rows of that slot, ``permutations`` draws, two-sided). A difference is
called significant only when the interval excludes 0 *and* the permutation p-value is
below 0.05 (no correction for the several learners compared). The ``bts`` click rate is
compared unpaired (other rows): ``se = sqrt(se_bts^2 + se_uniform^2)``, and a
permutation test shuffling each slot's clicks over both logs' rows.

Data alignment. The two logs' files encode categorical values by hashes. The user
features agree by name between the files (a category missing from ``bts`` is dropped
from the ``random`` context, and counted). The two ``item_context.csv`` files list the
same items in the same order with the same numeric feature, but every categorical item
feature has other hash labels in each file (no label is shared), so each file's one-hot
columns differ in name and order and item ``a``'s raw feature rows differ between the
logs. The study aligns them by category value:
:meth:`towerjax.datasets.OpenBanditData.align_items` maps each ``random`` label to the
``bts`` label of the same items (checked one to one per column) and re-expresses the
``random`` log in the ``bts`` item table, so an item id has the same features and the same
action index in training and evaluation. The result reports the number of categories
matched per column.

Hyperparameters (chosen a priori for 10,000 rows and 80 items, not tuned on the
evaluation logs): towers with one hidden layer of 32 units, embedding size 16, elu,
temperature 1, Adam learning rate 1e-3 with weight decay 1e-6, batch 100, 10 epochs;
the DR reward model an MLP (32, 32) fitted by cross-entropy for 10 epochs. The
importance weights of ``ips``, ``dr`` and ``snips`` are capped at 10
(``IPS(cap=10)``, ``DR(cap=10)``, ``SNIPS(cap=10)``): ``bts`` propensities go down to
4.5e-5, so uncapped weights reach the thousands, and for DR every unclicked
low-propensity row (``w (0 - q_hat)``) would dominate its batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.arguments import add_seed_arguments, name_list, positive_float, positive_int, subcommand
from towerjax.checks import InputError, check_choice
from towerjax.data import LoggedData
from towerjax.datasets import CAMPAIGNS, OpenBanditData, load_obd
from towerjax.evaluation import mean_se, normal_interval
from towerjax.objectives import DR, IPS, SNIPS, Naive, Objective, Regression
from towerjax.policy import log_policy
from towerjax.reward_model import RewardModelConfig
from towerjax.studies.runner import Study, dataset_command, run_study
from towerjax.train import TrainConfig, train_seeds

__all__ = [
    "OBD_LEARNERS",
    "POSITION_HANDLINGS",
    "ObdData",
    "ObdStudy",
    "add_parser",
    "format_obd",
    "learner_config",
    "learner_objective",
    "prepare_obd",
    "run_obd_study",
    "slot_estimates",
]

OBD_LEARNERS = ("ips", "dr", "snips", "regression", "naive")
POSITION_HANDLINGS = ("feature", "pooled", "separate")


def learner_objective(name: str, cap: float | None) -> Objective:
    """The objective of an OBD learner; ``cap`` bounds the importance weights of ips, dr and snips."""
    weighted = {"ips": IPS, "dr": DR, "snips": SNIPS}
    if name in weighted:
        return weighted[name](cap=cap, entropy=0.0)  # the study's protocol: no entropy bonus
    return {"regression": Regression, "naive": Naive}[name]()


def learner_config(name: str, cap: float | None, **training) -> TrainConfig:
    """The training run of an OBD learner (module docstring, Hyperparameters); ``training``
    overrides ``hidden_sizes``, ``embedding_size``, ``learning_rate``, ``batch_size`` or ``epochs``."""
    fields = dict(
        hidden_sizes=(32,),
        embedding_size=16,
        activation="elu",
        temperature=1.0,
        optimizer="adam",
        learning_rate=1e-3,
        weight_decay=1e-6,
        batch_size=100,
        epochs=10,
        reward_model=RewardModelConfig(hidden_sizes=(32, 32), batch_size=100, epochs=10),
        evaluate_train=False,
        validation_fraction=0.0,
        select=None,
    )
    return TrainConfig(objective=learner_objective(name, cap), **{**fields, **training})


def run_obd_study(
    *,
    campaign: str = "all",
    seeds: int = 10,
    seed: int = 0,
    epochs: int = 10,
    learners: Sequence[str] = OBD_LEARNERS,
    position_handling: str = "feature",
    batch_size: int = 100,
    learning_rate: float = 1e-3,
    hidden_sizes: Sequence[int] = (32,),
    embedding_size: int = 16,
    cap: float | None = 10.0,
    permutations: int = 10000,
    devices: int | None = None,
    wheel: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs the OBD study (module docstring) and returns its results as a JSON-ready dict.

    Args:
      campaign: ``"all"``, ``"men"`` or ``"women"``.
      seeds: training seeds per learner.
      seed: the root key's seed.
      epochs, batch_size, learning_rate, hidden_sizes, embedding_size: training settings.
      learners: a non-empty subset of :data:`OBD_LEARNERS`.
      position_handling: ``"feature"``, ``"pooled"`` or ``"separate"`` (module docstring).
      cap: the importance-weight cap of ``ips``, ``dr`` and ``snips``; ``None`` for none.
      permutations: draws of the permutation tests (0 skips them; their p-values are NaN).
      devices: local devices to shard the seeds over (default: all).
      wheel, cache_dir: passed to :func:`towerjax.datasets.load_obd`.
      log: progress messages.

    Returns:
      ``{"campaign", "seeds", "seed", "position_handling", "config", "n_slots",
      "rows": {"bts", "random"} (per slot), "clicks": {...}, "alignment", "uniform",
      "bts", "learners": {name: {"ips", "snips", "difference": {"ips", "snips"}, "ess",
      "max_prob", "loss", "seconds"}}, "seconds"}``. Each estimate is a dict
      ``{"value", "stderr", "ci": [lo, hi], "per_slot": [{"value", "stderr"}]}``; the
      learners' ``ips``/``snips`` add ``"per_seed"``, ``"per_seed_stderr"``,
      ``"seed_mean"`` and ``"seed_std"``; differences (learners' and ``bts["difference"]``)
      add ``"significant"`` (the normal interval excludes 0) and ``"p_permutation"``.
      ``ess`` is the mixture policy's effective sample size ``(sum w)^2 / sum w^2`` summed
      over slots, ``max_prob`` its mean largest action probability on the random rows.
      ``alignment`` is ``{"random_rows_with_unseen_user_categories", "item_categories_matched":
      {column: number of categories}, "item_labels_equal_before"}`` (module docstring, Data
      alignment; on the sample no item label is equal before alignment).

    Raises:
      InputError: naming the argument, for an unknown campaign, learner or position
        handling, or a non-positive ``seeds``, ``epochs`` or other setting (before any data
        is read or model trained).
    """
    start = time.perf_counter()
    learners = _check_options(campaign, seeds, seed, learners, permutations, position_handling)
    # TrainConfig and the objectives check epochs, batch_size, learning_rate, sizes and cap, naming each.
    training = dict(
        hidden_sizes=tuple(hidden_sizes),
        embedding_size=embedding_size,
        learning_rate=learning_rate,
        batch_size=batch_size,
        epochs=epochs,
    )
    configs = {name: learner_config(name, cap, **training) for name in learners}
    data = prepare_obd(campaign, position_handling, wheel=wheel, cache_dir=cache_dir)
    uniform, bts = _baselines(data, permutations, seed)
    train_log, eval_log = data.train_log, data.eval_log
    log(
        f"OBD {campaign}: bts {train_log.n_rounds} rows ({int(train_log.click.sum())} clicks), "
        f"random {eval_log.n_rounds} rows ({int(eval_log.click.sum())} clicks), {data.n_slots} slots "
        f"(positions {position_handling!r}), {train_log.n_actions} items; uniform CTR {uniform['value']:.4%}, bts CTR {bts['value']:.4%}"
    )
    study = ObdStudy(data, configs, seeds=seeds, seed=seed, permutations=permutations, devices=devices)
    rows = run_study(study, progress=False, log=log)
    return {
        "campaign": campaign,
        "seeds": int(seeds),
        "seed": int(seed),
        "position_handling": position_handling,
        "permutations": int(permutations),
        "config": {name: config.to_dict() for name, config in configs.items()},
        **data.summary(),
        "uniform": uniform,
        "bts": bts,
        "learners": {row.pop("learner"): row for row in rows},
        "seconds": time.perf_counter() - start,
    }


def _check_options(campaign, seeds, seed, learners, permutations, position_handling) -> tuple[str, ...]:
    """The learners as a tuple; InputError naming the first bad option."""
    check_choice("campaign", campaign, CAMPAIGNS)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise InputError("seeds", f"expected a positive integer, got {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError("seed", f"expected a non-negative integer, got {seed!r}")
    learners = (learners,) if isinstance(learners, str) else tuple(learners)
    unknown = [name for name in learners if name not in OBD_LEARNERS]
    if not learners or unknown:
        raise InputError("learners", f"expected a non-empty subset of {OBD_LEARNERS}, got {learners!r}")
    if len(set(learners)) != len(learners):
        raise InputError("learners", f"expected each learner once, got {learners!r}")
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)) or permutations < 0:
        raise InputError("permutations", f"expected a non-negative integer, got {permutations!r}")
    check_choice("position_handling", position_handling, POSITION_HANDLINGS)
    return learners


@dataclasses.dataclass(frozen=True)
class ObdData:
    """The two logs of one campaign, read with :meth:`LoggedData.from_obp` and aligned.

    Attributes:
      train_log: the ``bts`` log as read.
      eval_log: the ``random`` log in the ``bts`` item table (:meth:`OpenBanditData.align_items`).
      n_slots: number of slots ``K``.
      position_handling: ``"feature"``, ``"pooled"`` or ``"separate"`` (module docstring).
      train: the ``bts`` log from ``from_obp`` (``position`` carried; a slot one-hot in the
        context with ``"feature"``).
      evaluation: the ``random`` log the same way, its context in ``train``'s column layout.
      train_sets: the training data: ``[train]`` (one policy for every slot) or, with
        ``"separate"``, one per slot.
      eval_sets: per slot ``k``, the ``random`` rows shown in slot ``k``.
      item_categories: per categorical item feature, ``{random label: bts label}``.
      unseen: random rows with a user category the ``bts`` log never saw.
    """

    train_log: OpenBanditData
    eval_log: OpenBanditData
    n_slots: int
    position_handling: str
    train: LoggedData
    evaluation: LoggedData
    train_sets: list[LoggedData]
    eval_sets: list[LoggedData]
    item_categories: dict[str, dict[str, str]]
    unseen: int

    @property
    def one_policy(self) -> bool:
        """Whether one policy (per seed) serves every slot."""
        return self.position_handling != "separate"

    @property
    def items(self) -> jax.Array:
        """``[A, F]`` the (``bts``) item features of both logs."""
        return self.train.action_context

    @property
    def eval_context(self) -> list[jax.Array]:
        """Per slot, ``[n_k, D]`` the random rows' contexts in the training layout."""
        return [e.context for e in self.eval_sets]

    @property
    def actions(self) -> list[np.ndarray]:
        return [np.asarray(e.action) for e in self.eval_sets]

    @property
    def rewards(self) -> list[np.ndarray]:
        return [np.asarray(e.reward, np.float64) for e in self.eval_sets]

    @property
    def pscores(self) -> list[np.ndarray]:
        return [np.asarray(e.pscore, np.float64) for e in self.eval_sets]

    def train_clicks(self, slot: int) -> np.ndarray:
        """The ``bts`` rows' clicks in ``slot``."""
        return np.asarray(self.train.reward, np.float64)[np.asarray(self.train.position) == slot]

    def summary(self) -> dict:
        """``{"n_slots", "n_actions", "rows", "clicks", "alignment"}`` of the study's result."""
        return {
            "n_slots": self.n_slots,
            "n_actions": self.train.n_actions,
            "rows": {
                "bts": [int(self.train_clicks(k).size) for k in range(self.n_slots)],
                "random": [int(r.size) for r in self.rewards],
            },
            "clicks": {
                "bts": [int(self.train_clicks(k).sum()) for k in range(self.n_slots)],
                "random": [int(r.sum()) for r in self.rewards],
            },
            "alignment": {
                "random_rows_with_unseen_user_categories": int(self.unseen),
                "item_categories_matched": {name: len(m) for name, m in self.item_categories.items()},
                "item_labels_equal_before": sum(
                    a == b for m in self.item_categories.values() for a, b in m.items()
                ),
            },
        }


def prepare_obd(
    campaign: str,
    position_handling: str = "feature",
    *,
    wheel: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ObdData:
    """Loads a campaign's ``bts`` and ``random`` logs, aligns them and reads them with
    :meth:`LoggedData.from_obp` (module docstring, Positions and Data alignment).

    Raises:
      InputError: for an unknown ``campaign`` or ``position_handling``, or a log without
        rows in some slot.
      DatasetFileError: when the two item tables cannot be aligned (and as :func:`load_obd`).
    """
    check_choice("campaign", campaign, CAMPAIGNS)
    check_choice("position_handling", position_handling, POSITION_HANDLINGS)
    train_log = load_obd("bts", campaign, wheel=wheel, cache_dir=cache_dir)
    raw_eval_log = load_obd("random", campaign, wheel=wheel, cache_dir=cache_dir)
    item_categories = raw_eval_log.item_category_map(train_log)
    eval_log = raw_eval_log.align_items(train_log)
    n_slots = max(train_log.n_positions, eval_log.n_positions)
    for name, logs in (("bts", train_log), ("random", eval_log)):
        missing = [k for k in range(n_slots) if not np.any(logs.position == k)]
        if missing:
            raise InputError("campaign", f"the {name} log of {campaign!r} has no rows in slot(s) {missing}")
    eval_context, unseen = _aligned_context(eval_log, train_log)
    # "separate" splits the pooled reading by slot; "feature" appends the K-wide slot one-hot.
    reading = "pooled" if position_handling == "separate" else position_handling
    options = {"n_positions": n_slots} if reading == "feature" else {}
    train = LoggedData.from_obp(train_log.to_bandit_feedback(), position_handling=reading, **options)
    evaluation = LoggedData.from_obp(
        {**eval_log.to_bandit_feedback(), "context": eval_context}, position_handling=reading, **options
    )
    slots = range(n_slots)
    if position_handling == "separate":
        train_sets = [train.take_rows(np.asarray(train.position) == k) for k in slots]
    else:
        train_sets = [train]
    return ObdData(
        train_log=train_log,
        eval_log=eval_log,
        n_slots=n_slots,
        position_handling=position_handling,
        train=train,
        evaluation=evaluation,
        train_sets=train_sets,
        eval_sets=[evaluation.take_rows(np.asarray(evaluation.position) == k) for k in slots],
        item_categories=item_categories,
        unseen=unseen,
    )


def _baselines(data: ObdData, permutations: int, seed: int) -> tuple[dict, dict]:
    """The uniform policy's value (the random log's click rate), the ``bts`` log's, and their difference."""
    uniform = _slot_average([_mean_terms(r) for r in data.rewards])
    bts = _slot_average([_mean_terms(data.train_clicks(k).astype(np.float64)) for k in range(data.n_slots)])
    bts["difference"] = _with_ci(
        {"value": bts["value"] - uniform["value"], "stderr": math.hypot(bts["stderr"], uniform["stderr"])},
        significance=True,
    )
    bts["difference"]["p_permutation"] = _two_sample_pvalue(
        [data.train_clicks(k) for k in range(data.n_slots)],
        data.rewards,
        permutations,
        np.random.default_rng(seed),
    )
    return uniform, bts


class ObdStudy(Study):
    """The learners as cells: each trains ``seeds`` policies and estimates their value on the random log."""

    name = "obd"

    def __init__(
        self,
        data: ObdData,
        configs: dict[str, TrainConfig],
        *,
        seeds: int,
        seed: int,
        permutations: int,
        devices: int | None = None,
    ):
        self.data, self.configs = data, configs
        self.seeds, self.seed, self.permutations, self.devices = seeds, seed, permutations, devices
        # Every learner shares the towers' shapes and temperature, so one compiled evaluation serves all.
        first = next(iter(configs.values()))
        model, temperature, items = first.model, first.temperature, data.items

        @jax.jit
        def probabilities(params, context):
            scores = jax.vmap(lambda p: model.scores(p, context, items))(params)
            return jnp.exp(log_policy(scores, temperature))

        self.probabilities = probabilities

    def manifest(self) -> dict:
        return {
            "seeds": self.seeds,
            "seed": self.seed,
            "permutations": self.permutations,
            "config": {name: config.to_dict() for name, config in self.configs.items()},
        }

    def cells(self) -> list[str]:
        return list(self.configs)

    def label(self, cell: str) -> str:
        return f"{cell:>10}"

    def summary(self, cell: str, rows: list[dict]) -> str:
        (row,) = rows
        ips, diff = row["ips"], row["difference"]["ips"]
        return (
            f"IPS {ips['value']:.4%} [{ips['ci'][0]:.4%}, {ips['ci'][1]:.4%}], minus uniform "
            f"{diff['value']:+.4%} [{diff['ci'][0]:+.4%}, {diff['ci'][1]:+.4%}], "
            f"permutation p {diff['p_permutation']:.3f}"
        )

    def run_cell(self, cell: str) -> list[dict]:
        start = time.perf_counter()
        data = self.data
        prob_logged, max_prob, losses = [], [], []
        for k in range(data.n_slots):
            if k == 0 or not data.one_policy:  # feature, pooled: one training run serves every slot
                trained = self.train(cell, k)
                losses.append(np.asarray(trained.loss, np.float64))
            pi = np.asarray(
                self.probabilities(trained.params, data.eval_context[k]), np.float64
            )  # [S, n_k, A]
            prob_logged.append(pi[:, np.arange(pi.shape[1]), data.actions[k]])
            max_prob.append(float(pi.max(axis=-1).mean()))
        estimates = slot_estimates(
            prob_logged, data.rewards, data.pscores, permutations=self.permutations, seed=self.seed
        )
        estimates["max_prob"] = float(np.mean(max_prob))
        estimates["loss"] = np.mean(np.stack(losses), axis=(0, 1)).tolist()
        estimates["seconds"] = time.perf_counter() - start
        return [{"learner": cell, **estimates}]

    def train(self, learner: str, slot: int):
        """``seeds`` runs of ``learner`` on the slot's ``bts`` rows (one policy for all slots: on all),
        one compiled call."""
        shared = self.data.one_policy
        result, _ = train_seeds(
            self.configs[learner],
            seeds=self.seeds,
            seed=self.seed if shared else self.data.n_slots * self.seed + slot,
            devices=self.devices,
            data=self.data.train_sets[0 if shared else slot],
        )
        return result


def slot_estimates(
    prob_logged: Sequence[np.ndarray],
    reward: Sequence[np.ndarray],
    pscore: Sequence[np.ndarray],
    *,
    permutations: int = 10000,
    seed: int = 0,
) -> dict:
    """IPS and SNIPS of ``S`` policies and their mixture, slot by slot, and the paired difference to the log's CTR.

    Args:
      prob_logged: per slot ``k``, ``[S, n_k]`` each seed's probability of the logged action.
      reward: per slot, ``[n_k]`` the logged rewards (0 or 1 for the permutation test).
      pscore: per slot, ``[n_k]`` the logged propensities.
      permutations: draws of the permutation test of the differences (0 skips it).
      seed: its random generator's seed.

    Returns:
      ``{"ips", "snips", "difference": {"ips", "snips"}, "ess"}`` as described in
      :func:`run_obd_study`; the slot-averaged values weigh every slot equally.
    """
    per = {"ips": [], "snips": [], "diff_ips": [], "diff_snips": [], "seed_ips": [], "seed_snips": []}
    ess, mixture = 0.0, []
    for p, r, ps in zip(prob_logged, reward, pscore, strict=True):
        p = np.atleast_2d(np.asarray(p, np.float64))
        r, ps = np.asarray(r, np.float64), np.asarray(ps, np.float64)
        w = p / ps  # [S, n_k]
        per["seed_ips"].append([_mean_terms(ws * r) for ws in w])
        per["seed_snips"].append([_snips(ws, r) for ws in w])
        w_bar = w.mean(axis=0)  # the mixture policy's weights
        mixture.append((w_bar, r))
        per["ips"].append(_mean_terms(w_bar * r))
        snips = _snips(w_bar, r)
        per["snips"].append(snips)
        per["diff_ips"].append(_mean_terms((w_bar - 1.0) * r))
        influence = _snips_influence(w_bar, r, snips["value"]) - (r - r.mean())
        per["diff_snips"].append({"value": snips["value"] - r.mean(), "stderr": mean_se(influence)[1]})
        ess += float(w_bar.sum() ** 2 / np.sum(w_bar**2)) if np.any(w_bar > 0) else 0.0
    out = {}
    for name in ("ips", "snips"):
        entry = _slot_average(per[name])
        seed_values = [
            _slot_average([per[f"seed_{name}"][k][s] for k in range(len(per[name]))])
            for s in range(len(per[f"seed_{name}"][0]))
        ]
        entry["per_seed"] = [e["value"] for e in seed_values]
        entry["per_seed_stderr"] = [e["stderr"] for e in seed_values]
        entry["seed_mean"] = float(np.mean(entry["per_seed"]))
        entry["seed_std"] = float(np.std(entry["per_seed"], ddof=1)) if len(seed_values) > 1 else float("nan")
        out[name] = entry
    out["difference"] = {
        "ips": _slot_average(per["diff_ips"], significance=True),
        "snips": _slot_average(per["diff_snips"], significance=True),
    }
    p_ips, p_snips = _permutation_pvalues(mixture, permutations, np.random.default_rng(seed))
    out["difference"]["ips"]["p_permutation"] = p_ips
    out["difference"]["snips"]["p_permutation"] = p_snips
    out["ess"] = ess
    return out


def _permutation_pvalues(
    mixture: Sequence[tuple[np.ndarray, np.ndarray]], permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Two-sided p-values of the IPS and SNIPS differences under "clicks ignore the policy".

    The sharp null: within each slot, which rows were clicked is exchangeable with
    respect to the policy's weights (so ``V(pi)`` equals the click rate). Each draw puts
    the slot's ``c_k`` clicks on ``c_k`` rows chosen uniformly without replacement and
    recomputes the slot-averaged differences; the p-value counts draws at least as far
    from the null mean as the observed one (``(1 + count) / (1 + draws)``). Unlike the
    normal interval, it sees the weights of the rows that were *not* clicked, so it
    stays valid when the policy concentrates on items with few clicks.
    """
    if permutations < 1:
        return float("nan"), float("nan")
    observed = np.zeros(2)
    null_mean = np.zeros(2)
    draws = np.zeros((permutations, 2))
    for w, r in mixture:
        n, clicks = w.size, int(np.rint(r.sum()))
        total = w.sum()
        observed += [np.sum(w * r) / n, np.sum(w * r) / total]
        null_mean += [clicks * w.mean() / n, clicks / n]
        if clicks == 0:
            continue
        rows = _draw_without_replacement(rng, n, clicks, permutations)
        sums = w[rows].sum(axis=1)
        draws[:, 0] += sums / n
        draws[:, 1] += sums / total
    # The slot average divides every term by K; that scaling cancels in the comparison.
    extreme = np.abs(draws - null_mean) >= np.abs(observed - null_mean) - 1e-12
    p = (1 + extreme.sum(axis=0)) / (1 + permutations)
    return float(p[0]), float(p[1])


def _two_sample_pvalue(
    first: Sequence[np.ndarray], second: Sequence[np.ndarray], permutations: int, rng: np.random.Generator
) -> float:
    """Two-sided permutation p-value of the slot-averaged click-rate difference of two logs.

    Per slot, the null shuffles the clicks over the two logs' rows pooled (the count
    landing in ``first`` is hypergeometric); the statistic is the mean over slots of
    ``ctr_first - ctr_second``, whose null mean is 0.
    """
    if permutations < 1:
        return float("nan")
    observed, draws = 0.0, np.zeros(permutations)
    for a, b in zip(first, second, strict=True):
        clicks_a, clicks_b = int(np.sum(a)), int(np.sum(b))
        total = clicks_a + clicks_b
        observed += clicks_a / a.size - clicks_b / b.size
        in_a = rng.hypergeometric(total, a.size + b.size - total, a.size, size=permutations)
        draws += in_a / a.size - (total - in_a) / b.size
    extreme = np.abs(draws) >= abs(observed) - 1e-12
    return float((1 + extreme.sum()) / (1 + permutations))


def _draw_without_replacement(rng: np.random.Generator, n: int, k: int, draws: int) -> np.ndarray:
    """``[draws, k]`` row indices, each row ``k`` distinct values of ``range(n)``."""
    if k > n // 2:
        return np.argsort(rng.random((draws, n)), axis=1)[:, :k]
    rows = rng.integers(0, n, size=(draws, k))
    while True:
        ordered = np.sort(rows, axis=1)
        bad = np.flatnonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=1))
        if bad.size == 0:
            return rows
        rows[bad] = rng.integers(0, n, size=(bad.size, k))


def format_obd(result: dict) -> str:
    """Markdown table of :func:`run_obd_study`'s result; click rates in percent."""

    def cell(entry: dict, signed: bool = False) -> str:
        fmt = "{:+.3f}" if signed else "{:.3f}"
        lo, hi = (fmt.format(100 * c) for c in entry["ci"])
        return f"{fmt.format(100 * entry['value'])} [{lo}, {hi}]"

    def verdict(*entries: dict) -> str:
        """Says yes when every normal interval excludes 0 and every permutation p < 0.05, else why not."""
        ci = [e["significant"] for e in entries]
        p = [e.get("p_permutation", float("nan")) for e in entries]
        p_text = "/".join(f"{v:.2f}" for v in p)
        perm = [v < 0.05 for v in p if not math.isnan(v)]
        if all(ci) and all(perm):
            return f"yes (p={p_text})" if perm else "yes"
        if not any(ci) and not any(perm):
            return f"no (p={p_text})" if perm else "no"
        if all(ci):
            return f"no: CI excludes 0, but permutation p={p_text}"
        return f"no: {'a CI excludes' if any(ci) else 'CI includes'} 0, permutation p={p_text}"

    lines = [
        "| policy | IPS (%) [95% CI] | SNIPS (%) [95% CI] | IPS − uniform (pp) [95% CI] "
        "| SNIPS − uniform (pp) [95% CI] | significant? (perm. p IPS/SNIPS) |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in result["learners"].items():
        diff = entry["difference"]
        lines.append(
            f"| {name} | {cell(entry['ips'])} | {cell(entry['snips'])} | {cell(diff['ips'], True)} "
            f"| {cell(diff['snips'], True)} | {verdict(diff['ips'], diff['snips'])} |"
        )
    uniform, bts = result["uniform"], result["bts"]
    lines.append(f"| uniform (random log's CTR) | {cell(uniform)} | — | 0 | 0 | — |")
    lines.append(
        f"| bts (its own log's CTR) | {cell(bts)} | — | {cell(bts['difference'], True)} (unpaired) "
        f"| — | {verdict(bts['difference'])} |"
    )
    rows, clicks = result["rows"], result["clicks"]
    lines.append("")
    lines.append(
        f"Campaign `{result['campaign']}`, {result['seeds']} seeds, positions `{result['position_handling']}`; "
        f"random log rows per slot {rows['random']} (clicks {clicks['random']}), "
        f"bts rows {rows['bts']} (clicks {clicks['bts']}). Values are the mean of the per-slot values; "
        "a learner's is that of its seed-averaged policy. Normal 95% intervals from the random rows' "
        "per-row terms (delta method for SNIPS); differences paired on the same random rows, "
        "bts unpaired. Significant = the interval excludes 0 and the permutation test (clicks shuffled "
        f"over each slot's rows, {result.get('permutations', 0)} draws) gives p < 0.05; "
        "no multiple-comparison correction."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _mean_terms(terms: np.ndarray) -> dict:
    """The mean of per-row terms and its standard error."""
    value, stderr = mean_se(terms)
    return {"value": value, "stderr": stderr}


def _snips_influence(w: np.ndarray, r: np.ndarray, value: float) -> np.ndarray:
    """SNIPS's per-row influence ``w_i (r_i - V) / mean(w)``; SNIPS's delta-method s.e. is its mean's."""
    return w * (r - value) / w.mean()


def _snips(w: np.ndarray, r: np.ndarray) -> dict:
    total = w.sum()
    if total <= 0:
        return {"value": float("nan"), "stderr": float("nan")}
    value = float(np.sum(w * r) / total)
    return {"value": value, "stderr": mean_se(_snips_influence(w, r, value))[1]}


def _with_ci(entry: dict, significance: bool = False) -> dict:
    entry["ci"] = list(normal_interval(entry["value"], entry["stderr"]))
    if significance:
        entry["significant"] = bool(entry["ci"][0] > 0 or entry["ci"][1] < 0)
    return entry


def _slot_average(slots: Sequence[dict], significance: bool = False) -> dict:
    """Equal-weight mean over slots; the slots' rows are disjoint, so their variances add."""
    values = [s["value"] for s in slots]
    errors = [s["stderr"] for s in slots]
    entry = {
        "value": float(np.mean(values)),
        "stderr": float(math.sqrt(sum(e * e for e in errors)) / len(slots)),
        "per_slot": [{"value": float(v), "stderr": float(e)} for v, e in zip(values, errors, strict=True)],
    }
    return _with_ci(entry, significance)


def _aligned_context(source: OpenBanditData, target: OpenBanditData) -> tuple[np.ndarray, int]:
    """``source``'s context (user one-hot and affinities) in ``target``'s column layout.

    Columns are matched by name; a ``target`` column absent from ``source`` is 0, and a
    ``source`` category the training log never saw is dropped. Returns the context and
    the number of rows that had such an unseen category. The slot is not part of it:
    :meth:`LoggedData.from_obp` appends it (``"feature"``) to both logs alike.
    """
    names = source.context_feature_names(position_feature=False)
    values = source.context()
    column = {name: j for j, name in enumerate(names)}
    wanted = target.context_feature_names(position_feature=False)
    out = np.zeros((values.shape[0], len(wanted)))
    for j, name in enumerate(wanted):
        if name in column:
            out[:, j] = values[:, column[name]]
    extra = [column[name] for name in names if name not in set(wanted)]
    dropped = int(np.sum(np.any(values[:, extra] != 0, axis=1))) if extra else 0
    return out, dropped


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """``towerjax study obd``."""
    parser = subcommand(
        subparsers,
        "obd",
        _main,
        help="Open Bandit Dataset: learn from the bts logs, evaluate on the random logs",
    )
    parser.add_argument("--campaign", choices=CAMPAIGNS, default="all", help="OBD campaign")
    add_seed_arguments(parser, seeds=10)
    parser.add_argument("--epochs", type=positive_int, default=10, help="passes over the bts log")
    parser.add_argument(
        "--learners", type=name_list, default=None, help="comma-separated subset of " + ",".join(OBD_LEARNERS)
    )
    parser.add_argument(
        "--positions",
        choices=POSITION_HANDLINGS,
        default="feature",
        help="all slots' rows train one policy with a slot one-hot in the context (feature), one "
        "policy blind to the slot (pooled), or one policy per slot (separate); OBP's independence "
        "assumption across slots",
    )
    parser.add_argument(
        "--cap", type=positive_float, default=10.0, help="importance-weight cap of ips, dr, snips"
    )
    parser.add_argument("--no-cap", action="store_true", help="no cap")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.set_defaults(flags={"position_handling": "--positions"})


def _main(args: argparse.Namespace) -> int:
    def run() -> dict:
        return run_obd_study(
            campaign=args.campaign,
            seeds=args.seeds,
            seed=args.seed,
            epochs=args.epochs,
            learners=OBD_LEARNERS if args.learners is None else tuple(args.learners),
            position_handling=args.positions,
            cap=None if args.no_cap else args.cap,
            devices=args.devices,
            log=lambda line: print(line, flush=True),
        )

    return dataset_command(args, run, format_obd)
