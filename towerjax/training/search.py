"""The best policy for the logs at hand: a search over candidates, chosen and reported honestly (SPEC 9).

A :class:`Search` is a value: objectives and a grid of the settings that change no shape
(:data:`~towerjax.training.config.TRACED_FIELDS`: learning rate, weight decay, temperature,
entropy bonus). :func:`train_search` splits the logs' rows three ways (training ``T``,
selection ``S``, report ``R``), trains every candidate on ``T`` (one compiled call per
objective, the grid a ``vmap`` axis like seeds: :func:`~towerjax.training.train_seeds`'
``hyperparameters``), keeps each run's best epoch and chooses the candidate by a lower
confidence bound of its estimate on ``S``::

    c_hat = argmax_c  Vhat_S(pi_c) - z se_S(pi_c)        (z = 1.645, one-sided)

and then reports on ``R`` only, which neither training nor selection saw: the chosen policy's
value with its interval, the logging policy's (on-policy: ``mean_R r_i``), and their paired
difference ``d_i = phi_i(pi_c_hat) - r_i`` (:func:`towerjax.evaluation.paired_difference`).
Selecting and reporting on the same rows would be biased upward (the winner's curse,
``E max_c Vhat(pi_c) >= max_c V(pi_c)``). Baselines are always in the table: the logging
policy, the most popular item (the item with the most rewards in ``T``, for everyone), and the
best naive and regression candidates.

    result = train_search(Search(), TrainConfig(), data, progress=print)
    print(result.summary())
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.checks import InputError, check_choice, check_nonnegative, check_positive
from towerjax.data import LoggedData
from towerjax.evaluation import Estimate, estimator_terms, paired_difference, weight_diagnostics
from towerjax.evaluation.results import wald_estimate
from towerjax.features import take
from towerjax.objectives import Objective, OneOf, Regression, WeightedRegression, objective_from_name
from towerjax.reward_model import RewardModel
from towerjax.training.config import TrainConfig, with_traced
from towerjax.training.loop import TrainResult, estimator_inputs
from towerjax.training.search_report import search_summary, verdict_lines
from towerjax.training.seeds import EpochLines, train_seeds

__all__ = [
    "BASELINE_OBJECTIVES",
    "CRITERIA",
    "MIN_REPORT_ESS",
    "Candidate",
    "Search",
    "SearchResult",
    "split_three",
    "train_search",
]

CRITERIA = ("snips", "dr")
# Always searched (at the base settings when a Search leaves them out): the table's baselines.
BASELINE_OBJECTIVES = ("naive", "regression")
# Below this effective sample size of the report rows, (sum w)^2 / sum w^2, the report warns:
# the normal interval of a weighted mean rests on the central limit theorem for about that many
# rows' worth of weight; with fewer, a handful of rows carry the estimate and its standard
# error is itself too noisy to trust (a rule of thumb, not a guarantee).
MIN_REPORT_ESS = 100.0


@dataclasses.dataclass(frozen=True)
class Search:
    """A search space and how to choose in it (SPEC 9).

    Attributes:
      objectives: objective names or values (:mod:`towerjax.objectives`); each is one
        compiled call. The naive and regression baselines join when left out.
      learning_rate, weight_decay: the grid of each setting, crossed.
      entropy: the entropy bonus grid, for the objectives whose default has one (the
        policy-gradient ones); the others keep their own value.
      temperature: the policy temperature grid ``tau`` of ``softmax(s / tau)``, for the
        objectives that fit the scores as a reward model (``regression``, ``ips-regression``):
        their scores are the logits of ``P(r = 1)``, whose scale the data fixes, so ``tau``
        decides how greedy their policy is (``tau = 0.1``: nearly the greedy policy of the
        fitted rewards). The other objectives learn the scale of their scores (the entropy
        bonus sets how sharp they get) and keep ``tau = 1``.
      criterion: ``"snips"`` or ``"dr"``: the validation estimate candidates (and each run's
        epochs) are chosen by, as its lower confidence bound.
      z: the one-sided bound's multiplier: ``Vhat - z se`` (1.645: a 95% lower bound).
      select_fraction, report_fraction: the shares of the logs held out for choosing and for
        reporting (the rest trains).
      budget_seconds: stop starting objectives once the search would run past this many
        seconds (the baselines run first); ``None``: no limit.
      min_report_ess: the report warns below this effective sample size (:data:`MIN_REPORT_ESS`).
    """

    objectives: tuple[str | Objective, ...] = ("naive", "regression", "ips-regression", "snips", "dr")
    learning_rate: tuple[float, ...] = (1e-3, 3e-3)
    weight_decay: tuple[float, ...] = (1e-6,)
    temperature: tuple[float, ...] = (1.0, 0.1)
    entropy: tuple[float, ...] = (0.01, 0.05, 0.2)
    criterion: str = "snips"
    z: float = 1.645
    select_fraction: float = 0.2
    report_fraction: float = 0.2
    budget_seconds: float | None = None
    min_report_ess: float = MIN_REPORT_ESS

    def __post_init__(self) -> None:
        objectives = self.objectives
        if isinstance(objectives, str | Objective):
            objectives = (objectives,)
        if not objectives:
            raise InputError("objectives", "expected at least one objective")
        values = tuple(objective_from_name(o) if isinstance(o, str) else o for o in objectives)
        for value in values:
            if not isinstance(value, Objective):
                raise InputError("objectives", f"expected objective names or values, got {value!r}")
        object.__setattr__(self, "objectives", values)
        for name in ("learning_rate", "weight_decay", "temperature", "entropy"):
            grid = getattr(self, name)
            grid = (grid,) if isinstance(grid, int | float) else tuple(grid)
            if not grid:
                raise InputError(name, "expected at least one value")
            check = check_positive if name in ("learning_rate", "temperature") else check_nonnegative
            object.__setattr__(self, name, tuple(float(check(name, v)) for v in grid))
        check_choice("criterion", self.criterion, CRITERIA)
        check_positive("z", self.z)
        for name in ("select_fraction", "report_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not 0.0 < value < 1.0:
                raise InputError(name, f"expected a value in (0, 1), got {value}")
        if self.select_fraction + self.report_fraction >= 1.0:
            raise InputError(
                "report_fraction",
                f"select_fraction + report_fraction = {self.select_fraction + self.report_fraction:g} "
                "leaves no rows to train on; expected a sum below 1",
            )
        if self.budget_seconds is not None:
            check_positive("budget_seconds", self.budget_seconds)
        check_nonnegative("min_report_ess", self.min_report_ess)

    def all_objectives(self) -> list[Objective]:
        """The searched objectives, the baselines (:data:`BASELINE_OBJECTIVES`) first."""
        objectives = list(self.objectives)
        names = {o.name for o in objectives}
        objectives = [objective_from_name(n) for n in BASELINE_OBJECTIVES if n not in names] + objectives
        return sorted(objectives, key=lambda o: o.name not in BASELINE_OBJECTIVES)

    def groups(self, base: TrainConfig) -> list[tuple[TrainConfig, list[dict[str, float]]]]:
        """``[(config, [values of each candidate])]``: the compiled calls of the search and
        their candidates' traced settings, each checked by building its concrete configuration.

        Without a budget, one call: ``config`` has the :class:`~towerjax.objectives.OneOf` of
        every objective, and each candidate's ``"choice"`` picks its objective. With
        ``budget_seconds``, one call per objective (baselines first), so the search can stop
        between objectives. Every ``config`` is ``base`` with the criterion's lower-bound
        epoch selection.
        """
        objectives = self.all_objectives()
        select = f"{self.criterion}-lower"
        candidates = []
        for index, objective in enumerate(objectives):
            entropies = self.entropy if objective.entropy > 0 else (objective.entropy,)
            temperatures = (
                self.temperature if isinstance(objective, Regression | WeightedRegression) else (1.0,)
            )
            grid = itertools.product(self.learning_rate, self.weight_decay, temperatures, entropies)
            for lr, wd, t, e in grid:
                values = {"learning_rate": lr, "weight_decay": wd, "temperature": t, "entropy": e}
                candidates.append((objective, index, values))
        if self.budget_seconds is None:
            choices = tuple(dataclasses.replace(o, entropy=0.0) for o in objectives)
            config = dataclasses.replace(base, objective=OneOf(choices=choices), select=select, patience=None)
            out = [(config, [{**values, "choice": index} for _, index, values in candidates])]
        else:
            out = []
            for objective in objectives:
                config = dataclasses.replace(base, objective=objective, select=select, patience=None)
                out.append((config, [values for o, _, values in candidates if o is objective]))
        for config, values in out:
            for v in values:
                Candidate(config, v).config  # noqa: B018  (checks the concrete values)
        return out


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One candidate: a configuration whose traced settings are ``values`` (with a
    :class:`~towerjax.objectives.OneOf` objective, ``values["choice"]`` picks its objective)."""

    base: TrainConfig
    values: dict[str, float]

    @property
    def objective(self) -> Objective:
        """The candidate's own objective (its entropy bonus included)."""
        objective = self.base.objective
        if isinstance(objective, OneOf):
            objective = objective.choices[int(self.values["choice"])]
        return dataclasses.replace(objective, entropy=self.values["entropy"])

    @property
    def config(self) -> TrainConfig:
        """The concrete, checked :class:`TrainConfig` (as saved with the chosen policy)."""
        fields = {k: v for k, v in self.values.items() if k not in ("entropy", "choice")}
        return dataclasses.replace(self.base, objective=self.objective, **fields)

    @property
    def label(self) -> str:
        """``"snips lr=0.003 entropy=0.05"``: the objective and the settings that vary."""
        v = self.values
        parts = [self.objective.name, f"lr={v['learning_rate']:g}"]
        if v["entropy"]:
            parts.append(f"entropy={v['entropy']:g}")
        if v["weight_decay"] != self.base.weight_decay:
            parts.append(f"wd={v['weight_decay']:g}")
        if v["temperature"] != 1.0:
            parts.append(f"tau={v['temperature']:g}")
        return " ".join(parts)


def split_three(key: jax.Array, n: int, select_fraction: float, report_fraction: float) -> tuple:
    """``(train_rows, select_rows, report_rows)``: one random permutation of ``n`` rows cut
    into the training rows and ``round(fraction * n)`` selection and report rows.

    Raises:
      InputError: naming ``report_fraction`` unless each part has at least 2 rows.
    """
    n_select, n_report = round(select_fraction * n), round(report_fraction * n)
    if min(n_select, n_report, n - n_select - n_report) < 2:
        raise InputError(
            "report_fraction",
            f"{n} rows split {select_fraction:g} / {report_fraction:g} leave {n - n_select - n_report} "
            f"training, {n_select} selection and {n_report} report rows; expected at least 2 in each",
        )
    order = np.asarray(jax.random.permutation(key, n))
    cut = n - n_select - n_report
    return order[:cut], order[cut : cut + n_select], order[cut + n_select :]


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What :func:`train_search` returns.

    Attributes:
      chosen: the chosen :class:`Candidate` (``chosen.config`` is its concrete configuration).
      params: the chosen run's parameters (its best epoch's).
      run: the chosen run's :class:`TrainResult` (curves over epochs; no leading axis).
      table: one dict per row of the report (the chosen policy, the best candidate of each
        objective, and the popularity and logging baselines): name, objective, settings,
        epoch, the selection bound on ``S``, the SNIPS and DR estimates on ``R``, the paired
        difference to logging, the report ESS; ``true_value`` with ``test_data``.
      report: the chosen policy's row of ``table``.
      verdict: ``"better"`` (the chosen policy beats logging by two standard errors of the
        paired difference on ``R``), ``"not better"``, or ``"initial"`` (no trained candidate
        beat the initial policy on ``S``).
      lines: the plain sentences to show a user (verdict, warnings).
      candidates: per candidate (``[S, C]`` per objective flattened): ``{"label", "objective",
        "values", "lower", "estimate", "stderr", "epoch", "finite", "true_value"}``.
      rows: ``{"train", "select", "report"}`` row counts.
      seconds: wall-clock seconds of the whole search; ``skipped``: objectives left out by the budget.
      criterion: the estimate candidates were chosen by (``"snips"``, ``"dr"``).
      timings: per objective, :func:`~towerjax.training.train_seeds`' timings of its compiled call.
      split: the rows of each part, ``{"train": ..., "select": ..., "report": ..., "of": ...}``:
        ``"train"`` indexes ``data``; ``"select"`` and ``"report"`` index ``data`` when the search
        split it (``"of": "data"``) or the given ``validation`` logs, halved
        (``"of": "validation"``; ``"train"`` is then every row of ``data``).
      report_inputs: the chosen policy's per-row estimator inputs on the report rows, ``{"w",
        "direct", "q_logged"}`` ``[n]`` float64 (the reward model fitted on the training rows), from
        which its "estimate" is chosen (:func:`towerjax.workflow.train.held_out_estimate`).
    """

    chosen: Candidate
    params: dict
    run: TrainResult
    table: list[dict]
    report: dict
    verdict: str
    lines: list[str]
    candidates: list[dict]
    rows: dict[str, int]
    seconds: float
    skipped: list[str]
    criterion: str
    timings: dict[str, dict] = dataclasses.field(default_factory=dict)
    split: dict[str, np.ndarray | str] | None = None
    report_inputs: dict[str, np.ndarray] | None = None

    def summary(self) -> str:
        """The report table as text, then the verdict lines."""
        return search_summary(self.table, self.lines, self.criterion)

    def to_dict(self) -> dict:
        """JSON-ready (NaN kept; pass through :func:`towerjax.jsonio.plain`)."""
        return {
            "chosen": {"label": self.chosen.label, "config": self.chosen.config.to_dict()},
            "criterion": self.criterion,
            "verdict": self.verdict,
            "lines": self.lines,
            "rows": self.rows,
            "table": self.table,
            "candidates": self.candidates,
            "seconds": self.seconds,
            "skipped": self.skipped,
            "timings": self.timings,
        }


def train_search(
    search: Search | None = None,
    config: TrainConfig | None = None,
    data: LoggedData | None = None,
    *,
    seed: int = 0,
    seeds: int = 1,
    validation: LoggedData | None = None,
    test_data: LoggedData | None = None,
    devices: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Trains every candidate of ``search`` on ``data`` and returns the one chosen honestly (SPEC 9).

    Args:
      search: the :class:`Search` (default ``Search()``).
      config: the base :class:`TrainConfig` (towers, batch size, epochs, reward model...);
        its objective, learning rate, weight decay, temperature, entropy and selection are
        the search's. Default ``TrainConfig()``.
      data: the logs (:class:`LoggedData`, one dataset).
      seed: root random seed (the three-way split, and each run's key).
      seeds: runs per candidate (their keys shared across candidates).
      validation: held-out logs to choose and report on (split in halves: selection rows
        and report rows); default: ``search.select_fraction`` and ``report_fraction`` of
        ``data``.
      test_data: logs with the true ``expected_reward`` (benchmarks): adds each candidate's
        true value of its returned policy.
      devices: devices to shard the seeds over.
      progress: called with a line per objective (and the epochs' lines of each); ``None``
        is silent.

    Returns:
      A :class:`SearchResult`.

    Raises:
      InputError: naming the argument; if every candidate's run became NaN/inf.
    """
    search = Search() if search is None else search
    config = TrainConfig() if config is None else config
    if not isinstance(search, Search):
        raise InputError("search", f"expected a Search, got {type(search).__name__}")
    if not isinstance(data, LoggedData):
        raise InputError("data", f"expected LoggedData, got {type(data).__name__}")
    say = progress or (lambda _line: None)
    start = time.perf_counter()
    key_split, key_fit = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0x5EA))
    if validation is None:
        train_rows, select_rows, report_rows = split_three(
            key_split, data.n_rounds, search.select_fraction, search.report_fraction
        )
        train, select, report = (data.take_rows(r) for r in (train_rows, select_rows, report_rows))
        split = {"train": train_rows, "select": select_rows, "report": report_rows, "of": "data"}
    else:
        if validation.n_rounds < 4:
            raise InputError("validation", f"has {validation.n_rounds} rows, expected at least 4")
        order = np.asarray(jax.random.permutation(key_split, validation.n_rounds))
        half = validation.n_rounds // 2
        train, select, report = data, validation.take_rows(order[:half]), validation.take_rows(order[half:])
        split = {
            "train": np.arange(data.n_rounds),
            "select": order[:half],
            "report": order[half:],
            "of": "validation",
        }
    rows = {"train": train.n_rounds, "select": select.n_rounds, "report": report.n_rounds}
    groups = search.groups(config)
    total = sum(len(c) for _, c in groups)
    counts = collections.Counter(Candidate(c, v).objective.name for c, values in groups for v in values)
    calls = "one compiled call" if len(groups) == 1 else f"{len(groups)} compiled calls"
    say(
        f"searching {total} candidates ({', '.join(f'{k} {n}' for k, n in counts.items())}; {calls}), "
        f"{seeds} seed(s) each: training on {rows['train']} rows, choosing on {rows['select']}, "
        f"reporting on {rows['report']}"
    )
    runs, skipped, done, timings = [], [], 0, {}
    for config_group, values in groups:
        elapsed = time.perf_counter() - start
        if search.budget_seconds is not None and done:
            expected = elapsed / done * len(values)
            if elapsed + expected > search.budget_seconds:
                skipped.append(config_group.objective.name)
                say(f"  skipping {config_group.objective.name}: the budget of {search.budget_seconds:g} s")
                continue
        lines = EpochLines(lambda line: say("  " + line)) if progress is not None else False
        hyper = {name: [v[name] for v in values] for name in values[0]}
        result, timing = train_seeds(
            config_group,
            seeds=seeds,
            seed=seed,
            devices=devices,
            data=train,
            validation=select,
            test_data=test_data,
            hyperparameters=hyper,
            finite=False,
            progress=lines,
            label=f"{len(values)} candidates"
            + (f" of {config_group.objective.name}" if len(groups) > 1 else ""),
        )
        runs.append((config_group, values, result))
        timings[config_group.objective.name if len(groups) > 1 else "all"] = timing
        done += len(values)
        elapsed = time.perf_counter() - start
        left = elapsed / done * (total - done)
        say(f"  {done} of {total} candidates done, {elapsed:.0f} s elapsed, ~{left:.0f} s left")
    ess_floor = min(search.min_report_ess, select.n_rounds / 4)
    candidates, best = _score_candidates(runs, search, _selection_ess(runs, select), ess_floor)
    if best is None:
        raise InputError(
            "search", "every candidate's training became NaN/inf; lower the learning rates or check the logs"
        )
    reward_model = RewardModel(config.reward_model)
    fit = jax.jit(reward_model.fit)(key_fit, train)
    table, report_inputs = _report_table(
        runs, candidates, best, reward_model, fit, train, report, search, test_data
    )
    chosen_row = table[0]
    group, c, s = best
    config_group, values, result = runs[group]
    chosen = Candidate(config_group, values[c])
    run = jax.tree.map(lambda a: a[s, c], result)
    verdict, lines = verdict_lines(chosen_row, search, int(run.selected_epoch))
    if not any(c["eligible"] for c in candidates):
        lines.append(
            f"warning: no candidate's policy had an effective sample size of {ess_floor:.0f} on the "
            "selection rows; the choice rests on a few rows"
        )
    seconds = time.perf_counter() - start
    say(f"search done in {seconds:.0f} s: chose {chosen.label}")
    return SearchResult(
        chosen=chosen,
        params=run.params,
        run=run,
        table=table,
        report=chosen_row,
        verdict=verdict,
        lines=lines,
        candidates=candidates,
        rows=rows,
        seconds=seconds,
        skipped=skipped,
        criterion=search.criterion,
        timings=timings,
        split=split,
        report_inputs=report_inputs,
    )


def _selection_ess(runs: list, select: LoggedData) -> list[np.ndarray]:
    """Per call of the search, ``[S, C]``: the effective sample size ``(sum w)^2 / sum w^2`` of
    each run's returned policy on the selection rows."""
    out = []
    for config_group, values, result in runs:

        @functools.partial(jax.jit, static_argnums=0)
        def ess_of(config, params, temperature):
            traced = with_traced(config, {"temperature": temperature})
            w = estimator_inputs(traced, None, None, params, select)["w"]
            return jnp.sum(w) ** 2 / jnp.maximum(jnp.sum(w**2), 1e-30)

        temperatures = jnp.asarray([v["temperature"] for v in values], jnp.float32)
        per_seed = jax.vmap(functools.partial(ess_of, config_group), in_axes=(0, 0))
        out.append(
            np.stack(
                [
                    np.asarray(per_seed(jax.tree.map(lambda a, s=s: a[s], result.params), temperatures))
                    for s in range(result.loss.shape[0])
                ]
            )
        )
    return out


def _score_candidates(
    runs: list, search: Search, ess: list[np.ndarray], ess_floor: float
) -> tuple[list[dict], tuple | None]:
    """Each run's selection bound ``Vhat_S - z se_S`` and the best ``(group, candidate, seed)``
    among the finite runs whose selection-row ESS is at least ``ess_floor`` (``min(min_report_ess,
    n_S / 4)``): a policy whose estimate rests on a handful of rows has a standard error too noisy
    to bound it, and the maximum over many candidates finds the lucky one (a nearly greedy
    policy under a competent logger, in the benchmark's grid, had a selection bound of 0.75 and a
    true value of 0.50 with 10 effective report rows). All finite runs compete when none reaches
    the floor."""
    out, best = [], None
    name = search.criterion
    for g, (config_group, values, result) in enumerate(runs):
        estimate = np.asarray(result.selected_validation[name], np.float64)
        stderr = np.asarray(result.selected_validation[name + "_se"], np.float64)
        loss = np.asarray(result.loss, np.float64)
        finite = np.isfinite(loss).all(axis=-1) & np.isfinite(estimate) & np.isfinite(stderr)
        for leaf in jax.tree.leaves(result.params):
            leaf = np.asarray(leaf)
            finite &= np.isfinite(leaf.reshape(*leaf.shape[:2], -1)).all(axis=-1)
        lower = np.where(finite, estimate - search.z * stderr, -np.inf)
        eligible = finite & (ess[g] >= ess_floor)
        seeds = estimate.shape[0]
        for c, values_c in enumerate(values):
            candidate = Candidate(config_group, values_c)
            for s in range(seeds):
                entry = {
                    "label": candidate.label,
                    "objective": candidate.objective.name,
                    "values": values_c,
                    "seed": s,
                    "estimate": float(estimate[s, c]),
                    "stderr": float(stderr[s, c]),
                    "lower": float(lower[s, c]),
                    "epoch": int(result.selected_epoch[s, c]),
                    "finite": bool(finite[s, c]),
                    "select_ess": float(ess[g][s, c]),
                    "eligible": bool(eligible[s, c]),
                    "true_value": float(result.selected_value[s, c]),
                    "top_share": float(
                        np.asarray(result.top_share)[s, c, int(result.selected_epoch[s, c]) - 1]
                    )
                    if int(result.selected_epoch[s, c]) > 0
                    else math.nan,
                    "index": (g, c, s),
                }
                out.append(entry)
    pool = [e for e in out if e["eligible"]] or [e for e in out if e["finite"]]
    if pool:
        chosen = max(pool, key=lambda e: e["lower"])
        best = chosen["index"]
    return out, best


def _popularity_scores(train: LoggedData) -> np.ndarray:
    """``[A]``: each item's summed reward in the training rows, ties broken by its count."""
    n_actions = train.n_actions
    rewards = np.bincount(
        np.asarray(train.action), weights=np.asarray(train.reward, np.float64), minlength=n_actions
    )
    counts = np.bincount(np.asarray(train.action), minlength=n_actions)
    return rewards + 1e-9 * counts


def _row(name, objective, values, epoch, lower, inputs, reward, criterion, logging_terms, true_value) -> dict:
    """One table row from the policy's per-row inputs on the report rows."""
    w = np.asarray(inputs["w"], np.float64)
    terms = estimator_terms(
        inputs["w"], reward, direct=inputs["direct"], q_logged=inputs["q_logged"], names=("snipw", "dr")
    )
    snips, dr = np.asarray(terms["snipw"], np.float64), np.asarray(terms["dr"], np.float64)
    chosen_terms = snips if criterion == "snips" else dr
    return {
        "name": name,
        "objective": objective,
        "settings": values,
        "epoch": epoch,
        "select_lower": lower,
        "snips": wald_estimate(snips).to_dict(),
        "dr": wald_estimate(dr).to_dict(),
        "difference": paired_difference(chosen_terms, logging_terms).to_dict(),
        "ess": float(weight_diagnostics(jnp.asarray(w)).ess),  # of the report rows
        "true_value": true_value,
    }


def _report_table(
    runs, candidates, best, reward_model, fit, train, report, search, test_data
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The chosen policy's row, the best candidate of each other objective, popularity and
    logging, all on the report rows; and the chosen policy's per-row estimator inputs there
    (``w``, ``direct``, ``q_logged`` ``[n]``, :attr:`SearchResult.report_inputs`)."""
    reward = np.asarray(report.reward, np.float64)
    logging_terms = reward
    criterion = search.criterion
    best_of = {}  # the best finite candidate of each objective, by its selection bound
    for entry in candidates:
        name = entry["objective"]
        better = name not in best_of or (entry["eligible"], entry["lower"]) > (
            best_of[name]["eligible"],
            best_of[name]["lower"],
        )
        if entry["finite"] and better:
            best_of[name] = entry
    chosen = next(e for e in candidates if e["index"] == best)
    entries = [chosen] + [e for e in best_of.values() if e["objective"] != chosen["objective"]]
    table = []

    @functools.partial(jax.jit, static_argnums=0)
    def inputs_of(config, params, temperature):  # one compile per call of the search
        return estimator_inputs(
            with_traced(config, {"temperature": temperature}), reward_model, fit, params, report
        )

    for entry in entries:
        g, c, s = entry["index"]
        config_group, values, result = runs[g]
        candidate = Candidate(config_group, values[c])
        params = jax.tree.map(lambda a, s=s, c=c: a[s, c], result.params)
        inputs = inputs_of(config_group, params, jnp.float32(values[c]["temperature"]))
        if entry is chosen:
            chosen_inputs = {k: np.asarray(v, np.float64) for k, v in inputs.items()}
        name = ("chosen: " if entry is chosen else "") + candidate.label
        table.append(
            _row(
                name,
                entry["objective"],
                values[c],
                entry["epoch"],
                entry["lower"],
                inputs,
                reward,
                criterion,
                logging_terms,
                entry["true_value"],
            )
        )
    top = int(np.argmax(_popularity_scores(train)))
    action = np.asarray(report.action)
    logged = jax.jit(reward_model.predict_logged)

    def q_of(items):  # q_hat(x_i, items_i) on the report rows: [n], never [n, A]
        return np.asarray(logged(fit, report.context, take(report.action_context, jnp.asarray(items))))

    inputs = {
        "w": (action == top) / np.asarray(report.pscore, np.float64),
        "direct": q_of(np.full_like(action, top)),
        "q_logged": q_of(action),
    }
    true_value = math.nan
    if test_data is not None and test_data.expected_reward is not None:
        true_value = float(np.mean(np.asarray(test_data.expected_reward)[:, top]))
    table.append(
        _row(
            f"popularity (item {top} for everyone)",
            "popularity",
            {},
            None,
            math.nan,
            inputs,
            reward,
            criterion,
            logging_terms,
            true_value,
        )
    )
    logging = wald_estimate(logging_terms).to_dict()
    true_value = math.nan
    if test_data is not None and test_data.expected_reward is not None and test_data.pi_b is not None:
        true_value = float(
            np.mean(np.sum(np.asarray(test_data.pi_b) * np.asarray(test_data.expected_reward), -1))
        )
    table.append(
        {
            "name": "logging policy (on-policy mean reward)",
            "objective": "logging",
            "settings": {},
            "epoch": None,
            "select_lower": math.nan,
            "snips": logging,
            "dr": logging,
            "difference": Estimate(0.0, 0.0, 0.0, 0.0).to_dict(),
            "ess": float(reward.shape[0]),
            "true_value": true_value,
        }
    )
    return table, chosen_inputs
