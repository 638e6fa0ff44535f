"""The OBD study's learners, its run (:func:`run_obd_study`, one :class:`ObdStudy` cell per learner) and ``towerjax study obd``."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.checks import InputError, check_choice
from towerjax.cli.arguments import add_seed_arguments, name_list, positive_float, positive_int, subcommand
from towerjax.datasets import CAMPAIGNS
from towerjax.objectives import DR, IPS, SNIPS, Naive, Objective, Regression
from towerjax.policy import log_policy
from towerjax.reward_model import RewardModelConfig
from towerjax.studies.obd.data import POSITION_HANDLINGS, ObdData, prepare_obd
from towerjax.studies.obd.estimates import baselines, slot_estimates
from towerjax.studies.obd.report import format_obd
from towerjax.studies.runner import Study, dataset_command, run_study
from towerjax.training import TrainConfig, train_seeds

__all__ = [
    "OBD_LEARNERS",
    "ObdStudy",
    "add_parser",
    "learner_config",
    "learner_objective",
    "run_obd_study",
]

OBD_LEARNERS = ("ips", "dr", "snips", "regression", "naive")


def learner_objective(name: str, cap: float | None) -> Objective:
    """The objective of an OBD learner; ``cap`` bounds the importance weights of ips, dr and snips."""
    weighted = {"ips": IPS, "dr": DR, "snips": SNIPS}
    if name in weighted:
        return weighted[name](cap=cap, entropy=0.0)  # the study's protocol: no entropy bonus
    return {"regression": Regression, "naive": Naive}[name]()


def learner_config(name: str, cap: float | None, **training) -> TrainConfig:
    """The training run of an OBD learner (:mod:`towerjax.studies.obd`, Hyperparameters); ``training``
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
    """Runs the OBD study (:mod:`towerjax.studies.obd`) and returns its results as a JSON-ready dict.

    Args:
      campaign: ``"all"``, ``"men"`` or ``"women"``.
      seeds: training seeds per learner.
      seed: the root key's seed.
      epochs, batch_size, learning_rate, hidden_sizes, embedding_size: training settings.
      learners: a non-empty subset of :data:`OBD_LEARNERS`.
      position_handling: ``"feature"``, ``"pooled"`` or ``"separate"`` (:mod:`towerjax.studies.obd`).
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
      {column: number of categories}, "item_labels_equal_before"}`` (:mod:`towerjax.studies.obd.data`; on the sample no item label is equal before alignment).

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
    uniform, bts = baselines(data, permutations, seed)
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
