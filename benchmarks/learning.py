"""Learning benchmark: do the off-policy learners learn better policies than regression?

Tasks x learners, several seeds each (one compiled call per cell, seeds vmapped). For every
cell it reports, as mean ± standard error over seeds, the true value of the final policy
and of the validation-selected epoch (SNIPS on a held-out 20% of the logs), the share of
the gap from the logging policy's value to the best value that the learner closes, the
distance of the selected epoch from the best epoch (true values), and a collapse indicator:
the share of test contexts whose top item is the single most common one (next to the same
share for the best policy, so a task whose best policy favours one item is not mistaken
for a collapse).

Tasks (all but ``obd`` have a known ``q(x, a)``, so values are exact on held-out contexts;
on ``obd`` the value is the unbiased IPS estimate on the uniformly random test logs):

- ``seed-uniform``, ``seed-epsilon-greedy``: the seed study's setting (SPEC 5.1), 15,000
  logged rounds, 10 actions, 10,000 test contexts; a fresh problem per seed.
- ``obp-skewed``: Open Bandit Pipeline's synthetic semantics (SPEC 5.2), 20 actions, 5
  context dimensions, linear logging policy skewed by ``beta = 3``, 10,000 rounds.
- ``digits``: a supervised-to-bandit reduction of scikit-learn's bundled digits (10
  classes). Rewards are noisy, ``q = 0.9`` for the right class, ``0.3`` for the next class
  ``(y + 1) mod 10`` and ``0.1`` otherwise; the logging policy shows the right class with
  probability 0.1 and the next class with 0.5, so the uncorrected limit ``pi ∝ q pi_0``
  prefers the wrong class. Each training image is logged three times.
- ``obd``: the Open Bandit Dataset sample, trained on the ``bts`` campaign's logs (slots
  pooled with the slot one-hot in the context), valued on the ``random`` campaign's logs
  (:func:`towerjax.metrics.randomized_value`); the best value is unknown there.
- ``obp-peer``: the exact logs of ``benchmarks/obp_policy_learner.py`` (Open Bandit
  Pipeline's own ``SyntheticBanditDataset``), when its ``.npz`` files exist, to compare with
  OBP's ``NNPolicyLearner`` on identical data.

Run (about 30 minutes on two CPU cores for the full grid)::

    python benchmarks/learning.py                       # library defaults
    python benchmarks/learning.py --preset seed-study   # the seed study's settings
    python benchmarks/learning.py --tasks digits --learners ips,dr --seeds 3 --epochs 5   # a smoke run

Each finished cell is one JSON line in ``--out`` (default
``benchmarks/results/learning-<preset>.jsonl``); a rerun skips the cells already there.
The table at the end is Markdown for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from towerjax.training import expose_cpu_cores

expose_cpu_cores()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from towerjax import jsonio  # noqa: E402
from towerjax.data import LoggedData  # noqa: E402
from towerjax.evaluation import mean_se  # noqa: E402
from towerjax.metrics import randomized_value  # noqa: E402
from towerjax.objectives import (  # noqa: E402
    DR,
    IPS,
    SNDR,
    SNIPS,
    LogSmoothingIPS,
    Naive,
    Regression,
    WeightedRegression,
)
from towerjax.policy import log_policy  # noqa: E402
from towerjax.synthetic import SyntheticProblem, obp_problem, sample_logged_data  # noqa: E402
from towerjax.training import Search, TrainConfig, train_search, train_seeds  # noqa: E402

RESULTS = Path(__file__).parent / "results"

LEARNERS = {
    "naive": Naive(),
    "regression": Regression(),
    "ips-regression": WeightedRegression(),
    "ips": IPS(),
    "snips": SNIPS(),
    "dr": DR(),
    "sndr": SNDR(),
    "ipw-ls": LogSmoothingIPS(),
    # The anti-collapse options: the defaults above carry an entropy bonus of 0.05; these rows
    # show the learners without it, with a weaker one (0.01), and with a KL penalty on top.
    "ips-no-entropy": IPS(entropy=0.0),
    "snips-no-entropy": SNIPS(entropy=0.0),
    "dr-no-entropy": DR(entropy=0.0),
    "ips+entropy": IPS(entropy=0.01),
    "snips+entropy": SNIPS(entropy=0.01),
    "dr+entropy": DR(entropy=0.01),
    "ips+kl": IPS(kl=0.01),
}


def _stack(logs: list[LoggedData]) -> LoggedData:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *logs)


def _seed_task(behavior: str):
    problem = SyntheticProblem(behavior=behavior)  # 15000 training and 10000 test events

    def build(seeds: int, seed: int):
        train, test = [], []
        for s in range(seeds):
            k_problem, k_train, k_test = jax.random.split(jax.random.fold_in(jax.random.key(seed), s), 3)
            logs, held_out = problem.sample(k_problem, k_train, k_test)
            train.append(logs)
            test.append(held_out)
        return _stack(train), _stack(test)

    return build


def _obp_skewed(seeds: int, seed: int):
    train, test = [], []
    for s in range(seeds):
        k_problem, k_train, k_test = jax.random.split(jax.random.fold_in(jax.random.key(seed + 1000), s), 3)
        problem = obp_problem(k_problem, n_actions=20, dim_context=5, beta=3.0)
        train.append(sample_logged_data(k_train, problem, 10000))
        test.append(sample_logged_data(k_test, problem, 10000))
    return _stack(train), _stack(test)


def _digits_logs(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, repeats: int) -> LoggedData:
    """Bandit logs of labelled images: noisy rewards and a logging policy that prefers ``y + 1``."""
    n, classes = x.shape[0] * repeats, 10
    x, y = np.repeat(x, repeats, axis=0), np.repeat(y, repeats)
    rows = np.arange(n)
    q = np.full((n, classes), 0.1)
    q[rows, (y + 1) % classes] = 0.3
    q[rows, y] = 0.9
    pi_b = np.full((n, classes), 0.4 / (classes - 2))
    pi_b[rows, (y + 1) % classes] = 0.5
    pi_b[rows, y] = 0.1
    action = np.array([rng.choice(classes, p=p) for p in pi_b])
    reward = (rng.random(n) < q[rows, action]).astype(np.float32)
    return LoggedData(
        context=jnp.asarray(x, jnp.float32),
        action_context=jnp.eye(classes),
        action=jnp.asarray(action, jnp.int32),
        reward=jnp.asarray(reward),
        pscore=jnp.asarray(pi_b[rows, action], jnp.float32),
        pi_b=jnp.asarray(pi_b, jnp.float32),
        expected_reward=jnp.asarray(q, jnp.float32),
    )


def _digits(seeds: int, seed: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = digits.target.astype(np.int64)
    train, test = [], []
    for s in range(seeds):
        rng = np.random.default_rng(seed * 1000 + s)
        order = rng.permutation(len(y))
        cut = int(0.7 * len(y))
        train.append(_digits_logs(rng, x[order[:cut]], y[order[:cut]], repeats=3))
        test.append(_digits_logs(rng, x[order[cut:]], y[order[cut:]], repeats=1))
    return _stack(train), _stack(test)


def _obp_peer(seeds: int, seed: int):
    folder = RESULTS / "obp_synthetic"
    files = sorted(folder.glob("seed*.npz"))[:seeds]
    if len(files) < seeds:
        raise FileNotFoundError(
            f"{folder}: run benchmarks/obp_policy_learner.py first ({len(files)} seeds found)"
        )

    def logs(z, part):
        return LoggedData(
            context=jnp.asarray(z[f"{part}_context"], jnp.float32),
            action_context=jnp.asarray(z["action_context"], jnp.float32),
            action=jnp.asarray(z[f"{part}_action"], jnp.int32),
            reward=jnp.asarray(z[f"{part}_reward"], jnp.float32),
            pscore=jnp.asarray(z[f"{part}_pscore"], jnp.float32),
            pi_b=jnp.asarray(z[f"{part}_pi_b"], jnp.float32),
            expected_reward=jnp.asarray(z[f"{part}_expected_reward"], jnp.float32),
        )

    loaded = [np.load(f) for f in files]
    return _stack([logs(z, "train") for z in loaded]), _stack([logs(z, "test") for z in loaded])


def _obd(seeds: int, seed: int):
    """The Open Bandit Dataset small sample (campaign ``all``: 80 items, 3 slots): train on the
    ``bts`` log, test on the ``random`` log.

    Both logs come from :func:`towerjax.studies.obd.prepare_obd` with the slot as a feature, as the
    OBD study's default: train = all 10,000 ``bts`` rows, the slot's one-hot appended to the
    context, with their logged propensities; test = all 10,000 ``random`` rows in the same
    context layout (user categories matched by name) with the ``bts`` item table, propensity
    1/80 per slot. The test logs have no ``q(x, a)`` (``expected_reward`` and ``pi_b`` are
    None), so :func:`run_cell` reports the policy's unbiased IPS value on them
    (:func:`towerjax.metrics.randomized_value`; pooled over the rows of all slots, so each
    slot weighs by its number of rows, where the study averages slots equally), the mean
    reward as the logging policy's value, and NaN for the best value and the gaps.

    Seeds: the same logs for every seed (``seed`` is unused); seeds differ by the training
    key (initialisation, batch order and the random 20% validation split), so the standard
    errors over seeds are the training spread, not the logs' sampling noise.
    """
    from towerjax.studies.obd import prepare_obd

    data = prepare_obd("all", "feature")
    test = LoggedData(
        context=jnp.concatenate(data.eval_context),
        action_context=data.items,
        action=jnp.asarray(np.concatenate(data.actions), jnp.int32),
        reward=jnp.asarray(np.concatenate(data.rewards), jnp.float32),
        pscore=jnp.asarray(np.concatenate(data.pscores), jnp.float32),
    )
    return _stack([data.train_sets[0]] * seeds), _stack([test] * seeds)


def _grid_tasks() -> dict:
    """The task grid of ``benchmarks/grid.py`` (log sizes, action counts, loggers, noise,
    semi-synthetic MovieLens), importable when this file runs as a script."""
    sys.path.insert(0, str(Path(__file__).parent))
    import grid

    return grid.TASKS


# The search learners: the default Search, and the same choosing by DR's lower bound.
SEARCHES = {"search": Search(), "search-dr": Search(criterion="dr")}
RANKED_TASKS = ("movielens-schnabel",)  # also scored by per-user AUC and NDCG@5 on random exposure


def ranking(task: str, seed: int, scores_per_seed: list[np.ndarray], train, test) -> dict:
    """Per-user AUC and NDCG@5 over items shown uniformly at random (20 per user;
    ``grid.random_exposure``), relevance ``q >= 0.5`` (rating >= 4), mean ± s.e. over seeds;
    and the same for ranking items by their number of logged rewards (popularity)."""
    import grid

    out = {}
    for name, per_seed in (("policy", scores_per_seed), ("popularity", None)):
        auc, ndcg = [], []
        for s in range(len(scores_per_seed)):
            q = np.asarray(test.expected_reward[s])
            if per_seed is None:
                likes = np.bincount(
                    np.asarray(train.action[s]), weights=np.asarray(train.reward[s]), minlength=q.shape[1]
                )
                scores = np.broadcast_to(likes, q.shape)
            else:
                scores = per_seed[s]
            exposed = grid.random_exposure(seed * 100 + s, q.shape[0], q.shape[1])
            metrics = grid.ranking_metrics(np.asarray(scores), q >= 0.5, exposed)
            auc.append(metrics["auc"])
            ndcg.append(metrics["ndcg5"])
        out[name] = {"auc": _mean_se(np.array(auc)), "ndcg5": _mean_se(np.array(ndcg))}
    return out


TASKS = {
    "seed-uniform": _seed_task("uniform"),
    "seed-epsilon-greedy": _seed_task("epsilon-greedy"),
    "obp-skewed": _obp_skewed,
    "digits": _digits,
    "obp-peer": _obp_peer,
    "obd": _obd,
    **_grid_tasks(),
}


def base_config(preset: str, epochs: int | None) -> TrainConfig:
    """The library's defaults (with SNIPS validation on 20% of the logs, if the defaults have
    none, so a selected epoch is always reported), or the seed study's settings."""
    config = TrainConfig.seed_study() if preset == "seed-study" else TrainConfig()
    if config.validation_fraction == 0 or config.select is None:
        config = dataclasses.replace(config, validation_fraction=0.2, select="snips")
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    return dataclasses.replace(config, evaluate_train=False)


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    """:func:`towerjax.evaluation.mean_se` over the finite values (NaN, NaN when there are none)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return mean_se(values) if values.size else (float("nan"), float("nan"))


def run_cell(
    task: str, learner: str, data, config: TrainConfig, seeds: int, preset: str = "defaults"
) -> dict:
    train, test = data
    objective = LEARNERS[learner]
    if preset == "seed-study":  # the seed's learners had no entropy bonus (TrainConfig.seed_study)
        objective = dataclasses.replace(objective, entropy=0.0)
    config = dataclasses.replace(config, objective=objective)
    start = time.perf_counter()
    result, _ = train_seeds(config, seeds=seeds, data=train, test_data=test, per_seed_data=True, finite=False)
    seconds = time.perf_counter() - start
    logging, best = np.asarray(result.behavior_value), np.asarray(result.optimal_value)
    final = np.asarray(result.test_value)[:, -1]
    selected = np.asarray(result.selected_value)
    best_epoch = np.asarray(result.test_value).max(axis=1)
    randomized = {}
    if test.expected_reward is None:
        # Randomised test logs without q(x, a) (the obd task): the returned parameters' value is
        # their unbiased IPS estimate on the test logs; they are the selected epoch's when
        # config.select is set (the final epoch's value is then unknown, NaN), else the final
        # epoch's. The logging policy's value is the mean reward; the best value is unknown.
        estimates = []
        for s in range(seeds):
            params = jax.tree.map(lambda leaf, s=s: leaf[s], result.params)
            scores = config.model.scores(params, test.context[s], test.action_context[s])
            pi = jnp.exp(log_policy(scores, config.temperature))
            estimates.append(randomized_value(pi, test.action[s], test.reward[s], test.pscore[s]))
        value = np.array([float(e.value) for e in estimates])
        selected = value
        if config.select is None:
            final = value
        logging = np.asarray(test.reward, np.float64).mean(axis=1)
        best = best_epoch = best_top = np.full(seeds, np.nan)
        randomized = {
            "value_estimator": "randomized_ips",
            "per_seed_selected_stderr": [float(e.stderr) for e in estimates],
        }
    else:
        q = np.asarray(test.expected_reward)
        best_top = np.array(
            [np.bincount(row.argmax(-1), minlength=q.shape[-1]).max() / row.shape[0] for row in q]
        )
    nonfinite = int(np.sum(~np.isfinite(np.asarray(result.loss)).all(axis=1)))
    if task in RANKED_TASKS:
        scores = [
            np.asarray(
                config.model.scores(
                    jax.tree.map(lambda a, s=s: a[s], result.params),
                    _seed_slice(test, s).context,
                    _seed_slice(test, s).action_context,
                )
            )
            for s in range(seeds)
        ]
        randomized["ranking"] = ranking(task, 0, scores, train, test)

    def gap(values):
        return (values - logging) / (best - logging)

    return {
        "task": task,
        "learner": learner,
        "seeds": seeds,
        "config": config.to_dict(),
        "logging_value": _mean_se(logging),
        "best_value": _mean_se(best),
        "final_value": _mean_se(final),
        "selected_value": _mean_se(selected),
        "final_gap": _mean_se(gap(final)),
        "selected_gap": _mean_se(gap(selected)),
        "selected_minus_best_epoch": _mean_se(selected - best_epoch),
        "top_share": _mean_se(np.asarray(result.top_share)[:, -1]),
        "best_policy_top_share": _mean_se(best_top),
        "nonfinite_runs": nonfinite,
        "per_seed_final": final.tolist(),
        "per_seed_selected": selected.tolist(),
        "selected_epoch": np.asarray(result.selected_epoch).tolist(),
        "seconds": seconds,
        **randomized,
    }


def _seed_slice(logs: LoggedData, s: int) -> LoggedData:
    return jax.tree.map(lambda leaf: leaf[s], logs)


def run_search_cell(task: str, data, config: TrainConfig, seeds: int, search: Search) -> dict:
    """The ``search`` learner: per seed, :func:`towerjax.training.train_search` on that seed's
    logs (as a user runs it: 60% train, 20% select, 20% report), the chosen policy's true value
    on the test contexts, whether the report interval covers it, and the best true value any
    single candidate reached (the search's own ceiling)."""
    train, test = data
    if test.expected_reward is None:
        raise ValueError(f"{task}: the search cell needs true values (expected_reward) on the test logs")
    per_seed, scores = [], []
    start = time.perf_counter()
    for s in range(seeds):
        result = train_search(search, config, _seed_slice(train, s), seed=s, test_data=_seed_slice(test, s))
        if task in RANKED_TASKS:
            scores.append(
                np.asarray(
                    result.chosen.config.model.scores(
                        result.params, _seed_slice(test, s).context, _seed_slice(test, s).action_context
                    )
                )
            )
        q = np.asarray(test.expected_reward[s], np.float64)
        logging = float(np.mean(np.sum(np.asarray(test.pi_b[s]) * q, -1)))
        best = float(np.mean(q.max(-1)))
        chosen_true = float(result.run.selected_value)
        estimate = result.report[search.criterion]
        finite = [c for c in result.candidates if c["finite"]]
        per_seed.append(
            {
                "logging": logging,
                "best": best,
                "chosen": chosen_true,
                "chosen_label": result.chosen.label,
                "chosen_epoch": int(result.run.selected_epoch),
                "reported": estimate["value"],
                "reported_low": estimate["wald_low"],
                "reported_high": estimate["wald_high"],
                "covered": bool(estimate["wald_low"] <= chosen_true <= estimate["wald_high"]),
                "difference": result.report["difference"],
                "verdict": result.verdict,
                "ess": result.report["ess"],
                "best_candidate": max(c["true_value"] for c in finite),
                "best_candidate_label": max(finite, key=lambda c: c["true_value"])["label"],
                "top_share": float(np.asarray(result.run.top_share)[int(result.run.selected_epoch) - 1])
                if int(result.run.selected_epoch) > 0
                else float("nan"),
                "best_policy_top_share": float(
                    np.bincount(q.argmax(-1), minlength=q.shape[-1]).max() / q.shape[0]
                ),
                "seconds": result.seconds,
                "timings": result.timings,
                "candidates": [
                    {
                        k: c[k]
                        for k in ("label", "lower", "true_value", "epoch", "finite", "select_ess", "eligible")
                    }
                    for c in result.candidates
                ],
            }
        )
    seconds = time.perf_counter() - start

    def column(key):
        return np.array([p[key] for p in per_seed], np.float64)

    logging, best = column("logging"), column("best")

    def gap(values):
        return (values - logging) / (best - logging)

    chosen = column("chosen")
    return {
        "task": task,
        "learner": "search",
        "seeds": seeds,
        "config": config.to_dict(),
        "search": {
            "objectives": [o.name for o in search.objectives],
            "learning_rate": search.learning_rate,
            "entropy": search.entropy,
            "criterion": search.criterion,
        },
        "logging_value": _mean_se(logging),
        "best_value": _mean_se(best),
        "final_value": _mean_se(chosen),
        "selected_value": _mean_se(chosen),
        "final_gap": _mean_se(gap(chosen)),
        "selected_gap": _mean_se(gap(chosen)),
        "best_candidate_gap": _mean_se(gap(column("best_candidate"))),
        "selected_minus_best_epoch": (float("nan"), float("nan")),
        "top_share": _mean_se(column("top_share")),
        "best_policy_top_share": _mean_se(column("best_policy_top_share")),
        "coverage": float(np.mean(column("covered"))),
        "verdicts": [p["verdict"] for p in per_seed],
        "nonfinite_runs": int(sum(not c["finite"] for p in per_seed for c in p["candidates"])),
        "per_seed_final": chosen.tolist(),
        "per_seed_selected": chosen.tolist(),
        "per_seed": per_seed,
        "selected_epoch": [p["chosen_epoch"] for p in per_seed],
        "seconds": seconds,
        **({"ranking": ranking(task, 0, scores, train, test)} if task in RANKED_TASKS else {}),
    }


def table(rows: list[dict]) -> str:
    """Markdown: one line per (task, learner); "n/a" where a value is not known (obd's best)."""

    def number(value, digits):
        return "n/a" if value is None or value != value else f"{value:.{digits}f}"

    def pair(row, key, digits=3):
        mean, se = row[key]
        return f"{number(mean, digits)} ± {number(se, digits)}" if number(mean, digits) != "n/a" else "n/a"

    lines = [
        "| task | learner | final value | selected value | gap closed (final) | gap closed (selected) "
        "| selected − best epoch | top-item share (best policy) | NaN runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['learner']} | {pair(r, 'final_value')} | {pair(r, 'selected_value')} "
            f"| {pair(r, 'final_gap', 2)} | {pair(r, 'selected_gap', 2)} | {pair(r, 'selected_minus_best_epoch')} "
            f"| {number(r['top_share'][0], 2)} ({number(r['best_policy_top_share'][0], 2)}) | {r['nonfinite_runs']} |"
        )
    return "\n".join(lines)


def search_table(rows: list[dict], learner: str = "search") -> str:
    """Markdown: per task, the search against the baselines and the learners at their defaults,
    with issue 22's checks: the search against the best of naive, regression and IPS-weighted
    regression paired by seed (difference ± s.e.), the best single configuration's gap, the
    report interval's coverage of the chosen policy's true value, the verdicts, and the
    top-item shares."""
    by_task: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_task.setdefault(row["task"], {})[row["learner"]] = row
    lines = [
        "| task | search gap | best candidate gap | search − best baseline (paired) | naive | regression "
        "| ips-regression | ips | snips | dr | coverage | verdicts | top share (best) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def gap(row):
        if row is None:
            return "—"
        mean, se = row["selected_gap"]
        return "n/a" if mean != mean else f"{mean:.2f} ± {se:.2f}"

    for task, cells in by_task.items():
        search = cells.get(learner)
        if search is None:
            continue
        chosen = np.array(search["per_seed_selected"])
        baselines = [cells[n] for n in ("naive", "regression", "ips-regression") if n in cells]
        paired = "—"
        if baselines:
            best = np.max([np.array(b["per_seed_selected"]) for b in baselines], axis=0)
            mean, se = _mean_se(chosen - best)
            paired = f"{mean:+.3f} ± {se:.3f}"
        verdicts = ", ".join(f"{v} {search['verdicts'].count(v)}" for v in sorted(set(search["verdicts"])))
        lines.append(
            f"| {task} | {gap(search)} | {search['best_candidate_gap'][0]:.2f} | {paired} "
            + " ".join(
                f"| {gap(cells.get(n))}"
                for n in ("naive", "regression", "ips-regression", "ips", "snips", "dr")
            )
            + f" | {search['coverage']:.2f} | {verdicts} | {search['top_share'][0]:.2f} "
            f"({search['best_policy_top_share'][0]:.2f}) |"
        )
    return "\n".join(lines)


def search_checks(rows: list[dict], learner: str = "search") -> dict:
    """Issue 22's honesty checks over every search cell with true values: how often the
    report interval covers the chosen policy's true value, how often the search says "better"
    although the chosen policy is truly no better than logging (a false claim), and how often it
    says "not better" although the chosen policy is truly better."""
    seeds = [p for row in rows if row["learner"] == learner for p in row["per_seed"]]
    covered = [p["covered"] for p in seeds]
    truly_better = [p["chosen"] > p["logging"] for p in seeds]
    said_better = [p["verdict"] == "better" for p in seeds]
    return {
        "runs": len(seeds),
        "coverage": float(np.mean(covered)) if seeds else float("nan"),
        "false_better": int(sum(s and not t for s, t in zip(said_better, truly_better, strict=True))),
        "missed_better": int(sum(t and not s for s, t in zip(said_better, truly_better, strict=True))),
        "said_not_better": int(sum(not s for s in said_better)),
        "truly_not_better": int(sum(not t for t in truly_better)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("defaults", "seed-study"), default="defaults")
    parser.add_argument("--tasks", default=",".join(t for t in TASKS if t != "obp-peer"))
    parser.add_argument("--learners", default=",".join(LEARNERS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    tasks, learners = args.tasks.split(","), args.learners.split(",")
    for name in tasks:
        if name not in TASKS:
            parser.error(f"--tasks: expected some of {tuple(TASKS)}, got {name!r}")
    for name in learners:
        if name not in LEARNERS and name not in SEARCHES:
            parser.error(f"--learners: expected some of {tuple(LEARNERS)}, got {name!r}")
    out = args.out or RESULTS / f"learning-{args.preset}.jsonl"
    # Seeds of one cell compile the same programs (same shapes): JAX's persistent cache
    # compiles each once.
    jax.config.update("jax_compilation_cache_dir", str(RESULTS / "jax-cache"))
    out.parent.mkdir(parents=True, exist_ok=True)
    config = base_config(args.preset, args.epochs)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of an interrupted run
            if row.get("config", {}).get("epochs") == config.epochs and row.get("seeds") == args.seeds:
                done[(row["task"], row["learner"])] = row
    rows = []
    for task in tasks:
        data = None
        for learner in learners:
            if (task, learner) in done:
                rows.append(done[(task, learner)])
                continue
            if data is None:
                data = TASKS[task](args.seeds, args.seed)
            if learner in SEARCHES:
                row = run_search_cell(task, data, config, args.seeds, SEARCHES[learner])
                row["learner"] = learner
            else:
                row = run_cell(task, learner, data, config, args.seeds, args.preset)
            rows.append(row)
            with out.open("a") as handle:
                handle.write(jsonio.dumps(row) + "\n")
            print(
                jsonio.dumps(
                    {
                        k: row[k]
                        for k in ("task", "learner", "final_gap", "selected_gap", "top_share", "seconds")
                    }
                ),
                flush=True,
            )
    print(table(rows))
    for learner in SEARCHES:
        if any(row["learner"] == learner for row in rows):
            print(f"\n{learner}:")
            print(search_table(rows, learner))
            print(jsonio.dumps({"search_checks": search_checks(rows, learner), "learner": learner}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
