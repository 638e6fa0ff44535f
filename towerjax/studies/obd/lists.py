"""The OBD three-position study: Plackett-Luce list policies learned and valued on all three slots.

What it does. For each campaign and each logger (``bts``, ``random``), the log's rows are split at
random into a training half and a held-out half (``heldout``, the same split for every learner).
Each learner (:data:`LIST_LEARNERS`) trains ``seeds`` two-tower Plackett-Luce list policies of
``K = 3`` items on the training rows of one logger (one vmapped, compiled call), and the
seed-averaged policy (the mixture; its position marginals are the seeds' mean) is valued on the
held-out rows of *both* loggers, the ``random`` rows re-expressed in the ``bts`` item table
(:meth:`towerjax.datasets.OpenBanditData.align_items`, as :func:`towerjax.studies.obd.prepare_obd`
does) so an item has the same features and index in every log. Beside it: each logger's own
on-policy list value on its held-out rows, the sum over slots of the slot's click rate.

Why these estimators. The OBD sample's rows are (impression, slot) pairs sampled independently
(no two rows share an impression), so no complete list is observed, and each row's
``propensity_score`` is the logger's *marginal* ``pi_0(a at k | x)``. So the list value is
estimated position by position (:mod:`towerjax.position_rows`): IIPS and SNIIPS, summed over the
three slots, with the target policy's exact position marginals. Standard IPS, reward-interaction
IPS and cascade DR need whole lists and are not computed.

Learners. ``iips`` and ``sniips``: :func:`towerjax.position_rows.position_row_loss` (weights capped at
``cap`` in the surrogate, as the single-slot study's IPS: ``bts`` marginals go down to 4.5e-5);
``naive``: the click likelihood of the clicked items at their slots, no correction; ``single-ips``:
the single-slot study's IPS learner (:func:`towerjax.studies.obd.learner_config`, pooled slots)
trained on the same rows, its softmax's scores then used as the Plackett-Luce list policy.
Hyperparameters are the single-slot study's (:mod:`towerjax.studies.obd`): towers (32,), ``D = 16``,
elu, Plackett-Luce temperature 1, Adam 1e-3 with weight decay 1e-6, batch 100, 10 epochs; the
context is the user features and affinities without the slot.

Intervals and significance. Each value has a normal 95% interval (delta method) and a bootstrap
percentile interval (rows resampled together). A policy's difference to the logger is paired on
the same held-out rows (per-row terms minus the logger's, :func:`towerjax.evaluation.paired_difference`)
and called significant only when its interval excludes 0 *and* the permutation test of
"clicks do not depend on the policy's weights" (:func:`towerjax.studies.obd.estimates.permutation_pvalues`,
each slot's clicks reassigned among its rows) gives p < 0.05, as in the single-slot study.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from towerjax.checks import InputError, check_positive, check_positive_int
from towerjax.cli.arguments import add_seed_arguments, name_list, positive_float, positive_int, subcommand
from towerjax.datasets import CAMPAIGNS
from towerjax.evaluation import paired_difference
from towerjax.position_rows import POSITION_ROW_ESTIMATORS, position_row_estimates, position_row_terms
from towerjax.studies.obd.data import prepare_obd
from towerjax.studies.obd.estimates import permutation_pvalues
from towerjax.studies.obd.list_report import format_obd_lists
from towerjax.studies.obd.list_train import (
    ListLearnerConfig,
    PositionRows,
    list_marginals,
    make_position_row_train,
)
from towerjax.studies.obd.study import learner_config
from towerjax.studies.runner import ROWS_FILE, Study, dataset_command, interrupted, run_study
from towerjax.training import train_seeds

__all__ = ["LIST_LEARNERS", "LOGGERS", "ObdListStudy", "add_parser", "run_obd_list_study"]

LIST_LEARNERS = ("iips", "sniips", "naive", "single-ips")
LOGGERS = ("bts", "random")


class CampaignRows:
    """A campaign's two logs as position rows in the ``bts`` item table, and their train/held-out split."""

    def __init__(self, campaign: str, heldout: float, seed: int, wheel=None, cache_dir=None):
        data = prepare_obd(campaign, "pooled", wheel=wheel, cache_dir=cache_dir)
        self.n_slots, self.items = data.n_slots, data.items
        self.logged = {"bts": data.train, "random": data.evaluation}
        self.rows = {name: PositionRows.from_logged(log) for name, log in self.logged.items()}
        self.split = {}
        for index, name in enumerate(LOGGERS):
            n = self.rows[name].n_rows
            order = np.random.default_rng([seed, CAMPAIGNS.index(campaign), index]).permutation(n)
            cut = round(heldout * n)
            self.split[name] = {"train": np.sort(order[cut:]), "heldout": np.sort(order[:cut])}
        self.summary = data.summary()

    def train_rows(self, logger: str) -> PositionRows:
        return self.rows[logger].take(self.split[logger]["train"])

    def heldout_rows(self, logger: str) -> PositionRows:
        return self.rows[logger].take(self.split[logger]["heldout"])


def _host(rows: PositionRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``slot`` (int32), ``reward`` and ``pscore`` (float64) on the host, for estimates in float64."""
    return (
        np.asarray(rows.slot, np.int32),
        np.asarray(rows.reward, np.float64),
        np.asarray(rows.pscore, np.float64),
    )


def logger_value(rows: PositionRows, n_slots: int, key: jax.Array, n_bootstrap: int) -> dict:
    """The logger's on-policy list value on ``rows``: IIPS with ``w = 1``, the sum of the slots' click rates."""
    slot, reward, pscore = _host(rows)
    with jax.enable_x64(True):
        est = position_row_estimates(
            slot, reward, pscore, pscore, n_slots=n_slots, key=key, n_bootstrap=n_bootstrap
        )["iips"]
    return _entry(est)


def _entry(est) -> dict:
    return {
        "value": est.value,
        "stderr": est.stderr,
        "ci": [est.wald_low, est.wald_high],
        "bootstrap_ci": [est.bootstrap_low, est.bootstrap_high],
    }


def policy_values(
    marginals: np.ndarray,
    rows: PositionRows,
    n_slots: int,
    *,
    key: jax.Array,
    n_bootstrap: int,
    permutations: int,
    seed: int,
) -> dict:
    """IIPS and SNIIPS of the mixture of ``S`` list policies (marginals ``[S, N]``) on ``rows``, their
    per-seed values, and the paired difference to the logger with its permutation p-value."""
    mixture = marginals.mean(axis=0)
    slot, reward, pscore = _host(rows)
    with jax.enable_x64(True):
        estimates = position_row_estimates(
            slot, reward, pscore, mixture, n_slots=n_slots, key=key, n_bootstrap=n_bootstrap
        )
        terms = {
            k: np.asarray(t)
            for k, t in position_row_terms(slot, reward, pscore, mixture, n_slots=n_slots).items()
        }
        logger = np.asarray(position_row_terms(slot, reward, pscore, pscore, n_slots=n_slots)["iips"])
        per_seed = [
            {
                k: float(np.mean(t))
                for k, t in position_row_terms(slot, reward, pscore, m, n_slots=n_slots).items()
            }
            for m in marginals
        ]
    w = mixture / pscore
    by_slot = [(w[slot == k], reward[slot == k]) for k in range(n_slots)]
    p_values = permutation_pvalues(by_slot, permutations, np.random.default_rng(seed))
    out = {}
    for name, p_value in zip(POSITION_ROW_ESTIMATORS, p_values, strict=True):
        entry = _entry(estimates[name])
        entry["per_seed"] = [values[name] for values in per_seed]
        entry["diagnostics"] = estimates[name].diagnostics.to_dict()
        diff = paired_difference(terms[name], logger)
        ci = [diff.wald_low, diff.wald_high]
        entry["difference"] = {
            "value": diff.value,
            "stderr": diff.stderr,
            "ci": ci,
            "p_permutation": p_value,
            "significant": bool((ci[0] > 0 or ci[1] < 0) and p_value < 0.05),
        }
        out[name] = entry
    return out


class ObdListStudy(Study):
    """Cells ``(campaign, trained_on, learner)``: ``seeds`` list policies trained and valued on both loggers."""

    name = "obd-lists"

    def __init__(
        self,
        campaigns: Sequence[str],
        learners: Sequence[str],
        config: ListLearnerConfig,
        *,
        seeds: int,
        seed: int,
        heldout: float,
        n_bootstrap: int,
        permutations: int,
        devices: int | None = None,
        wheel=None,
        cache_dir=None,
        log: Callable[[str], None] = print,
    ):
        self.campaigns, self.learners, self.config = tuple(campaigns), tuple(learners), config
        self.seeds, self.seed, self.heldout = seeds, seed, heldout
        self.n_bootstrap, self.permutations, self.devices = n_bootstrap, permutations, devices
        self.wheel, self.cache_dir, self.log = wheel, cache_dir, log
        self._data: dict[str, CampaignRows] = {}
        self._train: dict[str, Callable] = {}

    def data(self, campaign: str) -> CampaignRows:
        """The campaign's rows (read once)."""
        if campaign not in self._data:
            self._data[campaign] = CampaignRows(campaign, self.heldout, self.seed, self.wheel, self.cache_dir)
        return self._data[campaign]

    def manifest(self) -> dict:
        return {
            "seeds": self.seeds,
            "seed": self.seed,
            "heldout": self.heldout,
            "n_bootstrap": self.n_bootstrap,
            "permutations": self.permutations,
            "config": self.config.to_dict(),
        }

    def cells(self) -> list[tuple[str, str, str]]:
        return [
            (c, logger, learner) for c in self.campaigns for logger in LOGGERS for learner in self.learners
        ]

    def label(self, cell) -> str:
        campaign, logger, learner = cell
        return f"{campaign}/{logger}/{learner}"

    def summary(self, cell, rows: list[dict]) -> str:
        (row,) = rows
        parts = []
        for logger in LOGGERS:
            v = row["values"][logger]["iips"]
            parts.append(f"on {logger} {100 * v['value']:.3f}% ({100 * v['difference']['value']:+.3f} pp)")
        return "IIPS list value " + ", ".join(parts)

    def run_cell(self, cell) -> list[dict]:
        start = time.perf_counter()
        campaign, logger, learner = cell
        data = self.data(campaign)
        params, model = self.train(campaign, logger, learner)
        row = {"campaign": campaign, "trained_on": logger, "learner": learner, "values": {}, "max_prob": {}}
        key = jax.random.key(self.seed)
        for index, evaluated_on in enumerate(LOGGERS):
            rows = data.heldout_rows(evaluated_on)
            marginals, top = list_marginals(
                model, params, rows, data.items, data.n_slots, self.config.temperature
            )
            row["values"][evaluated_on] = policy_values(
                marginals,
                rows,
                data.n_slots,
                key=jax.random.fold_in(key, index),
                n_bootstrap=self.n_bootstrap,
                permutations=self.permutations,
                seed=self.seed,
            )
            row["max_prob"][evaluated_on] = float(np.mean(top))
        row["seconds"] = time.perf_counter() - start
        return [row]

    def train(self, campaign: str, logger: str, learner: str):
        """``seeds`` policies of ``learner`` on the training rows of ``logger``: stacked params and the scorer."""
        data = self.data(campaign)
        keys = jax.random.split(jax.random.key(self.seed), self.seeds)
        if learner == "single-ips":
            config = learner_config(
                "ips",
                self.config.cap,
                hidden_sizes=self.config.hidden_sizes,
                embedding_size=self.config.embedding_size,
                learning_rate=self.config.learning_rate,
                batch_size=self.config.batch_size,
                epochs=self.config.epochs,
            )
            logged = data.logged[logger].take_rows(data.split[logger]["train"])
            result, _ = train_seeds(
                config, seeds=self.seeds, seed=self.seed, devices=self.devices, data=logged
            )
            return result.params, config.model
        config = ListLearnerConfig(**{**self.config.to_dict(), "objective": learner})
        name = f"{campaign}/{learner}"  # one compiled training per campaign (context width) and learner
        if name not in self._train:
            train = make_position_row_train(config, data.items, data.n_slots)
            self._train[name] = jax.jit(jax.vmap(train, in_axes=(0, None)))
        params = self._train[name](keys, data.train_rows(logger))
        return jax.tree.map(np.asarray, params), config.train_config().model


def run_obd_list_study(
    *,
    campaigns: Sequence[str] = CAMPAIGNS,
    learners: Sequence[str] = LIST_LEARNERS,
    seeds: int = 5,
    seed: int = 0,
    epochs: int = 10,
    heldout: float = 0.5,
    cap: float | None = 10.0,
    batch_size: int = 100,
    n_bootstrap: int = 1000,
    permutations: int = 2000,
    out: Path | None = None,
    devices: int | None = None,
    wheel=None,
    cache_dir=None,
    log: Callable[[str], None] = print,
) -> dict:
    """Runs the three-position study (:mod:`towerjax.studies.obd.lists`); JSON-ready results.

    Args:
      campaigns: a non-empty subset of ``("all", "men", "women")``.
      learners: a non-empty subset of :data:`LIST_LEARNERS`.
      seeds, seed: training seeds per cell and the root seed (the split's too).
      epochs, batch_size, cap: training settings (:class:`~towerjax.studies.obd.list_train.ListLearnerConfig`).
      heldout: the share of each log's rows held out for evaluation, in ``(0, 1)``.
      n_bootstrap, permutations: bootstrap resamples and permutation-test draws.
      out: a folder for the rows (a rerun resumes from it), or ``None`` (in memory).
      devices, wheel, cache_dir: as :func:`towerjax.studies.obd.run_obd_study`.
      log: progress lines.

    Returns:
      ``{"campaigns": {campaign: {"rows", "clicks", "heldout_rows", "heldout_clicks", "loggers":
      {logger: value}}}, "policies": [row, ...], "config", "seeds", "seed", "heldout", "seconds"}``;
      each row is ``{"campaign", "trained_on", "learner", "values": {evaluated_on: {"iips", "sniips"}},
      "max_prob", "seconds"}``, each value ``{"value", "stderr", "ci", "bootstrap_ci"}`` (policies' add
      ``"per_seed"``, ``"diagnostics"`` and ``"difference": {"value", "stderr", "ci", "p_permutation",
      "significant"}`` to the logger on the same rows).

    Raises:
      InputError: naming the option, before any data is read.
    """
    start = time.perf_counter()
    campaigns = _names("campaigns", campaigns, CAMPAIGNS)
    learners = _names("learners", learners, LIST_LEARNERS)
    seeds = check_positive_int("seeds", seeds)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError("seed", f"expected a non-negative integer, got {seed!r}")
    if not 0 < heldout < 1:
        raise InputError("heldout", f"expected a share in (0, 1), got {heldout!r}")
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    permutations = check_positive_int("permutations", permutations)
    if cap is not None:
        check_positive("cap", cap)
    config = ListLearnerConfig(cap=cap, epochs=epochs, batch_size=batch_size)
    study = ObdListStudy(
        campaigns,
        learners,
        config,
        seeds=seeds,
        seed=seed,
        heldout=heldout,
        n_bootstrap=n_bootstrap,
        permutations=permutations,
        devices=devices,
        wheel=wheel,
        cache_dir=cache_dir,
        log=log,
    )
    summary = {}
    for campaign in campaigns:
        data = study.data(campaign)
        key = jax.random.key(seed)
        loggers = {}
        for index, name in enumerate(LOGGERS):
            held = data.heldout_rows(name)
            loggers[name] = logger_value(held, data.n_slots, jax.random.fold_in(key, index), n_bootstrap)
        summary[campaign] = {
            "rows": data.summary["rows"],
            "clicks": data.summary["clicks"],
            "heldout_rows": {n: int(data.heldout_rows(n).n_rows) for n in LOGGERS},
            "heldout_clicks": {n: int(np.sum(data.heldout_rows(n).reward)) for n in LOGGERS},
            "loggers": loggers,
        }
        log(
            f"OBD lists {campaign}: held-out list value (sum of the 3 slots' click rates) "
            + ", ".join(f"{n} {100 * loggers[n]['value']:.3f}%" for n in LOGGERS)
        )
    rows = run_study(study, out, progress=False, log=log)
    return {
        "campaigns": summary,
        "policies": rows,
        "learners": list(learners),
        "config": config.to_dict(),
        "seeds": seeds,
        "seed": int(seed),
        "heldout": heldout,
        "n_bootstrap": n_bootstrap,
        "permutations": permutations,
        "seconds": time.perf_counter() - start,
    }


def _names(argument: str, given, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = (given,) if isinstance(given, str) else tuple(given)
    if not names or any(n not in allowed for n in names) or len(set(names)) != len(names):
        raise InputError(argument, f"expected a non-empty subset of {allowed}, each once, got {names!r}")
    return names


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """``towerjax study obd-lists``."""
    parser = subcommand(
        subparsers,
        "obd-lists",
        _main,
        help="Open Bandit Dataset: list policies learned and valued on all three slots (position rows)",
    )
    parser.add_argument(
        "--campaigns", type=name_list, default=None, help="comma-separated [default all,men,women]"
    )
    add_seed_arguments(parser, seeds=5)
    parser.add_argument("--epochs", type=positive_int, default=10, help="passes over the training rows")
    parser.add_argument(
        "--learners",
        type=name_list,
        default=None,
        help="comma-separated subset of " + ",".join(LIST_LEARNERS),
    )
    parser.add_argument(
        "--heldout", type=float, default=0.5, help="share of each log held out for evaluation"
    )
    parser.add_argument(
        "--cap", type=positive_float, default=10.0, help="weight cap of iips, sniips, single-ips"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the rows; a rerun resumes from it")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def _main(args: argparse.Namespace) -> int:
    def run() -> dict:
        return run_obd_list_study(
            campaigns=CAMPAIGNS if args.campaigns is None else tuple(args.campaigns),
            learners=LIST_LEARNERS if args.learners is None else tuple(args.learners),
            seeds=args.seeds,
            seed=args.seed,
            epochs=args.epochs,
            heldout=args.heldout,
            cap=args.cap,
            out=args.out,
            devices=args.devices,
            log=lambda line: print(line, flush=True),
        )

    try:
        return dataset_command(args, run, format_obd_lists)
    except KeyboardInterrupt:
        if args.out is None:
            raise
        return interrupted(args.out / ROWS_FILE)
