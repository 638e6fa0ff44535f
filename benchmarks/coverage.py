"""Coverage of the off-policy intervals: how often each estimator's 95% interval holds the truth.

Every estimator of :func:`towerjax.off_policy_estimates` (``ipw``, ``snipw``, ``dm``, ``dr``,
``sndr``, ``switch-dr``, ``dr-os``, ``ipw-subgauss``, ``ipw-ls``; ``mips`` needs item
categories and is left out) on many independent synthetic logs of one fixed problem with a
known true value ``V(pi)``; for each, the share of replications whose 95% Wald interval
(``value ± 1.96 stderr``) and 95% bootstrap percentile interval (``n_bootstrap`` row
resamples, key-driven) contain ``V(pi)``.

Problem (fixed, ``--seed`` picks it): :func:`towerjax.obp_problem` (Open Bandit Pipeline's
logistic reward, SPEC 5.2) with 10 actions (one-hot item features), 5 context dimensions,
contexts ``N(0, I)``, binary rewards ``r ~ Bernoulli(q(x, a))``.

Logging (``pi_0``): ``uniform`` (``1/10``) and ``skewed``, OBP's linear behaviour policy
``softmax(3 g(x, .))`` (``beta = 3``; propensities go down to about ``5e-4``).

Evaluated policies, functions of the true ``q(x, .)``: ``smooth`` ``softmax(q / 0.1)`` (mean
largest probability 0.41) and ``sharp`` ``softmax(q / 0.01)`` (near-argmax, mean largest
probability 0.93).

Truth: ``V(pi) = E_x sum_a pi(a|x) q(x, a)`` on ``--truth-contexts`` fresh contexts
(default 10^7, independent of every log; contexts are continuous, so this is a Monte Carlo
value and its standard error is reported, about 5e-5, negligible against every interval).

Cells (``main``): ``n in {200, 2000}`` x logging x policy; each replication draws fresh logs
(the two policies of an ``(n, logging)`` pair are evaluated on the same logs), fits a
cross-fitted reward model (``RewardModel.cross_fit``, 2 folds, a small MLP: hidden ``(32,)``,
10 epochs, batch 100, cheap and underfit; the replications' fits are ``jax.vmap`` ped in chunks), and computes every estimator with a bootstrap key of its own.

``special`` (the issue's cell): ``n = 400``, a flexible reward model (hidden ``(100, 100)``,
50 epochs, batch 20: it overfits), DR and the other model-based estimators with the
in-sample ``q_hat`` (``folds=1``) against the cross-fitted one (``folds=2``), in every
logging x policy pair.

``slate`` (issue 25): a minimal synthetic slate problem with an exact value (written here, independent
of the library's synthetic modules): ``C = 50`` equally likely contexts, ``A = 6`` items, lists of
``K = 3``; position-based clicks ``P(r_k = 1 | c, a_k = a) = theta_k rho(c, a)``, ``theta = (1, 0.6,
0.3)``, ``rho = sigmoid(1.5 z - 1)``, ``z ~ N(0, 1)``; logger Plackett-Luce on ``0.5 logit(rho) + 0.7 u``
(``u ~ N(0, 1)``, a noisy ranker), target Plackett-Luce on ``1.5 logit(rho)``; the truth
``V = mean_c sum_k theta_k sum_a P_pi(a at k | c) rho(c, a)`` from the exact position marginals (every
list enumerated). Each replication draws ``--slate-n`` (default 2,000) rows and calls
:func:`towerjax.evaluation.slate_estimates` with every propensity pair and, for ``cascade-dr``, a
reward model ``q_hat_k(c, b) = theta_k rho~(c, b)`` with ``rho~ = sigmoid(logit(rho) + 0.5 e)`` (a
fixed misspecified model, independent of the logs, as a cross-fitted one is). Under position-based
clicks SIPS, IIPS, RIPS and cascade-DR are all unbiased; coverage of each interval, goal 0.93-0.97.

``slope`` (issue 25): the choice of an IPS cap (:func:`towerjax.evaluation.choose_estimator`,
family ``ipw-cap``, ``mean(min(w, lambda) r)``, a fixed grid ``inf, 1024, 1024 / f, ..., 1`` (factor
``f = --slope-factor``, default ``sqrt 2``) so every replication chooses among the same caps) by each rule
of ``towerjax.evaluation.selection.RULES`` (``slope-mse``, the default, and plain ``slope``) on the main
cells' logs and policies, against the oracle-best cap: the one with the smallest mean squared error
against ``V(pi)`` over the replications. One line per cell and rule: both MSEs, their ratio (goal <= 1.1)
and how often each cap was chosen.
No reward model is fitted, so this section is cheap.

Each (cell, estimator) gives one JSON line on stdout (``"kind": "coverage"``): coverage of
both intervals with its Monte Carlo standard error ``sqrt(c (1 - c) / R)``, the share of
misses on each side, mean interval widths, bias, RMSE, the estimates' standard deviation and
the mean reported standard error. ``--json`` (default ``benchmarks/results/coverage.json``) is
rewritten after every cell, so a cut run keeps what it finished. Progress goes to stderr;
markdown tables are printed at the end.

Run: ``python benchmarks/coverage.py`` (sections main and special, 500 replications; the recorded run,
``--replications 1000``, took 16 minutes on 2 shared CPU cores); smoke test:
``python benchmarks/coverage.py --quick --json ''``. Issue 25's checks:
``python benchmarks/coverage.py --only slate,slope --truth-contexts 1000000 --json benchmarks/results/coverage_slate.json``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from harness import environment

LOGGING = {"uniform": 0.0, "skewed": 3.0}  # beta of the linear behaviour policy softmax(beta g)
POLICIES = {"smooth": 0.1, "sharp": 0.01}  # tau of the evaluated policy softmax(q / tau)
N_ACTIONS, DIM_CONTEXT = 10, 5
GOAL = (0.93, 0.97)
Q_HAT_ESTIMATORS = ("dm", "dr", "sndr", "switch-dr", "dr-os")
SECTIONS = ("main", "special", "slate", "slope")
SLATE = {"contexts": 50, "items": 6, "k": 3, "theta": (1.0, 0.6, 0.3)}


def slope_caps(factor: float) -> tuple[float, ...]:
    """The slope section's fixed grid: ``inf, 1024, 1024 / factor, ...`` down to 1."""
    return (math.inf, *(1024 / factor**j for j in range(round(math.log(1024, factor)) + 1)))


SLOPE_GOAL = 1.1  # SLOPE's MSE at most 10% above the oracle-best cap's


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=500, help="independent logs per cell")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 50 replications, 10^6 truth contexts"
    )
    parser.add_argument("--seed", type=int, default=0, help="fixes the problem and every replication")
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="bootstrap resamples per estimate")
    parser.add_argument("--sizes", type=str, default="200,2000", help="comma-separated n of the main cells")
    parser.add_argument("--special-n", type=int, default=400, help="n of the in-sample vs cross-fitted cell")
    parser.add_argument("--truth-contexts", type=int, default=10_000_000, help="contexts for V(pi)")
    parser.add_argument(
        "--only", type=str, default="main,special", help=f"sections to run: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--slate-n", type=int, default=2000, help="rows per log of the slate cell")
    parser.add_argument(
        "--slope-factor",
        type=float,
        default=math.sqrt(2),
        help="ratio of neighbouring caps in the slope grid",
    )
    parser.add_argument("--chunk", type=int, default=50, help="replications per vmapped reward-model fit")
    parser.add_argument(
        "--json", type=str, default="benchmarks/results/coverage.json", help="all records ('' to skip)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.replications = min(args.replications, 50)
        args.truth_contexts = min(args.truth_contexts, 1_000_000)
    if min(args.replications, args.n_bootstrap, args.chunk, args.truth_contexts) < 1 or args.replications < 2:
        parser.error("--replications (>= 2), --n-bootstrap, --chunk and --truth-contexts must be positive")
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.only = [s for s in args.only.split(",") if s]
    if not set(args.only) <= set(SECTIONS):
        parser.error(f"--only takes some of {', '.join(SECTIONS)}")
    return args


def _reward_models():
    """The small model of the main cells and the flexible one of the special cell."""
    from towerjax.reward_model import RewardModelConfig

    small = RewardModelConfig(hidden_sizes=(32,), epochs=10, batch_size=100, learning_rate=0.005, folds=2)
    flexible = RewardModelConfig(hidden_sizes=(100, 100), epochs=50, batch_size=20, learning_rate=0.005)
    return small, flexible


def _environment(args: argparse.Namespace) -> dict:
    import dataclasses

    import jax

    small, flexible = _reward_models()
    return {
        **environment(jax),
        "settings": {
            "replications": args.replications,
            "quick": args.quick,
            "seed": args.seed,
            "n_bootstrap": args.n_bootstrap,
            "sizes": args.sizes,
            "special_n": args.special_n,
            "slate_n": args.slate_n,
            "slate_problem": SLATE,
            "slope_caps": list(slope_caps(args.slope_factor)),
            "truth_contexts": args.truth_contexts,
            "sections": args.only,
            "problem": f"obp_problem(n_actions={N_ACTIONS}, dim_context={DIM_CONTEXT}), one-hot items",
            "logging_beta": LOGGING,
            "policy_tau": POLICIES,
            "reward_model_main": dataclasses.asdict(small),
            "reward_model_special": {
                **dataclasses.asdict(flexible),
                "folds": "1 (in-sample) and 2 (cross-fitted)",
            },
        },
    }


class _Writer:
    """Prints records as JSON lines and keeps ``--json`` up to date after every cell."""

    def __init__(self, path: str) -> None:
        self.path, self.records, self.start = path, [], time.perf_counter()

    def emit(self, record: dict) -> None:
        from towerjax import jsonio

        self.records.append(record)
        print(jsonio.dumps(record), flush=True)

    def flush(self, complete: bool = False) -> None:
        if not self.path:
            return
        from towerjax import jsonio

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        document = {
            "complete": complete,
            "seconds": round(time.perf_counter() - self.start, 1),
            "records": self.records,
        }
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as handle:
            handle.write(jsonio.dumps(document, indent=1))
            handle.write("\n")
        os.replace(tmp, self.path)


def _true_values(problem, n_contexts: int, key) -> dict[str, tuple[float, float]]:
    """``{policy: (V(pi), Monte Carlo standard error)}`` on ``n_contexts`` fresh contexts."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from towerjax.synthetic import expected_reward, sample_contexts

    taus = jnp.asarray(list(POLICIES.values()))

    @jax.jit
    def chunk_sums(k, size_mask):
        q = expected_reward(problem, sample_contexts(k, problem, size_mask.shape[0]))  # [c, A]
        values = jnp.sum(jax.nn.softmax(q[None] / taus[:, None, None], axis=-1) * q[None], axis=-1)  # [P, c]
        values = (values * size_mask[None]).reshape(len(POLICIES), 1000, -1)  # two-level float32 sums
        return jnp.sum(jnp.sum(values, -1), -1), jnp.sum(jnp.sum(values**2, -1), -1)

    chunk = 1000 * -(-min(n_contexts, 1_000_000) // 1000)
    total, total_sq, seen = np.zeros(len(POLICIES)), np.zeros(len(POLICIES)), 0
    for i in range(-(-n_contexts // chunk)):
        take = min(chunk, n_contexts - seen)
        mask = (jnp.arange(chunk) < take).astype(jnp.float32)
        s, s2 = jax.device_get(chunk_sums(jax.random.fold_in(key, i), mask))
        total += np.asarray(s, np.float64)
        total_sq += np.asarray(s2, np.float64)
        seen += take
    mean = total / seen
    var = np.maximum(total_sq / seen - mean**2, 0.0) * seen / (seen - 1)
    return {name: (float(mean[j]), float(math.sqrt(var[j] / seen))) for j, name in enumerate(POLICIES)}


def _sample_logs(problem, n: int, key, replications: int):
    """``replications`` logs of ``n`` rows as numpy arrays with a leading replication axis."""
    import jax
    import numpy as np

    from towerjax.synthetic import sample_logged_data

    sample = jax.jit(jax.vmap(lambda k: sample_logged_data(k, problem, n)))
    data = sample(jax.random.split(key, replications))
    return data, {
        name: np.asarray(getattr(data, name)) for name in ("action", "reward", "pscore", "expected_reward")
    }


def _fit(config, data, key, replications: int, chunk: int, label: str) -> object:
    """``[R, n, A]`` ``q_hat`` of every replication: ``vmap(cross_fit)`` over chunks of replications."""
    import jax
    import numpy as np
    from tqdm import tqdm

    from towerjax.reward_model import RewardModel

    chunk = min(chunk, replications)
    fit = jax.jit(jax.vmap(RewardModel(config).cross_fit))
    keys = jax.random.split(key, chunk * -(-replications // chunk))
    out = []
    with tqdm(total=replications, desc=f"fit {label}", file=sys.stderr, leave=False) as bar:
        for lo in range(0, replications, chunk):
            take = min(chunk, replications - lo)
            # the last chunk is padded with copies of its last log, so one compiled size serves all
            rows = np.minimum(np.arange(lo, lo + chunk), replications - 1)
            part = jax.tree_util.tree_map(lambda a, rows=rows: a[rows], data)
            out.append(np.asarray(fit(keys[lo : lo + chunk], part))[:take])
            bar.update(take)
    return np.concatenate(out)


def _estimate_all(logs: dict, pi, q_hat, key, n_bootstrap: int, label: str) -> dict:
    """Every estimator on every replication: ``{name: {field: [R]}}``."""
    import jax
    import numpy as np
    from tqdm import tqdm

    from towerjax.evaluation import ESTIMATORS, off_policy_estimates

    replications = pi.shape[0]
    fields = ("value", "stderr", "wald_low", "wald_high", "bootstrap_low", "bootstrap_high")
    out: dict = {}
    ess = np.empty(replications)
    for r in tqdm(range(replications), desc=f"estimate {label}", file=sys.stderr, leave=False):
        est = off_policy_estimates(
            pi[r],
            logs["action"][r],
            logs["reward"][r],
            logs["pscore"][r],
            None if q_hat is None else q_hat[r],
            key=jax.random.fold_in(key, r),
            n_bootstrap=n_bootstrap,
        )
        for name in ESTIMATORS:
            if name not in est:
                continue
            row = out.setdefault(name, {f: np.empty(replications) for f in fields})
            for f in fields:
                row[f][r] = getattr(est[name], f)
        ess[r] = est["ipw"].diagnostics.ess
    out["_ess"] = ess
    return out


def _summary(arrays: dict, truth: float) -> dict:
    """Coverage, its Monte Carlo standard error, misses by side, widths, bias, RMSE."""
    import numpy as np

    from towerjax.evaluation import mean_se

    value = arrays["value"]
    replications = value.size
    out: dict = {"replications": replications}
    for kind in ("wald", "bootstrap"):
        low, high = arrays[f"{kind}_low"], arrays[f"{kind}_high"]
        finite = np.isfinite(low) & np.isfinite(high)
        covered = finite & (low <= truth) & (truth <= high)
        c = float(covered.mean())
        out[f"coverage_{kind}"] = c
        out[f"coverage_{kind}_mcse"] = math.sqrt(c * (1 - c) / replications)
        out[f"{kind}_above_truth"] = float((finite & (low > truth)).mean())  # interval wholly above V
        out[f"{kind}_below_truth"] = float((finite & (high < truth)).mean())
        out[f"width_{kind}"] = (
            float(np.mean(high - low)) if finite.all() else float(np.mean((high - low)[finite]))
        )
        if not finite.all():
            out[f"{kind}_non_finite"] = int((~finite).sum())
    err = value - truth
    out["bias"], out["bias_mcse"] = mean_se(err)
    out["rmse"] = float(np.sqrt(np.mean(err**2)))
    out["sd"] = float(value.std(ddof=1))
    out["mean_stderr"] = float(np.mean(arrays["stderr"]))
    return out


def _policy(expected_reward, tau: float):
    import jax
    import numpy as np

    return np.asarray(jax.nn.softmax(expected_reward / tau, axis=-1), dtype=np.float64)


def _run_cells(args, writer: _Writer, truths: dict, problems: dict, key) -> None:
    """The main cells: ``n`` x logging x policy, cross-fitted small reward model."""
    import jax

    small, _ = _reward_models()
    for i, n in enumerate(args.sizes):
        for j, (logging, problem) in enumerate(problems.items()):
            cell_key = jax.random.fold_in(jax.random.fold_in(key, i), j)
            k_logs, k_fit, k_boot = jax.random.split(cell_key, 3)
            start = time.perf_counter()
            data, logs = _sample_logs(problem, n, k_logs, args.replications)
            q_hat = _fit(small, data, k_fit, args.replications, args.chunk, f"n={n} {logging}")
            fit_seconds = time.perf_counter() - start
            for p, (policy, tau) in enumerate(POLICIES.items()):
                start = time.perf_counter()
                pi = _policy(logs["expected_reward"], tau)
                label = f"n={n} {logging} {policy}"
                arrays = _estimate_all(
                    logs, pi, q_hat, jax.random.fold_in(k_boot, p), args.n_bootstrap, label
                )
                truth = truths[policy][0]
                ess = arrays.pop("_ess")
                for name, values in arrays.items():
                    writer.emit(
                        {
                            "kind": "coverage",
                            "section": "main",
                            "n": n,
                            "logging": logging,
                            "policy": policy,
                            "q_hat": "cross-fitted" if name in Q_HAT_ESTIMATORS else None,
                            "estimator": name,
                            "truth": truth,
                            "mean_ess": float(ess.mean()),
                            **_summary(values, truth),
                            "seconds": round(time.perf_counter() - start + fit_seconds / len(POLICIES), 1),
                        }
                    )
                writer.flush()
                print(f"done {label} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


def _run_special(args, writer: _Writer, truths: dict, problems: dict, key) -> None:
    """``n = special_n``, the flexible reward model: in-sample (folds=1) vs cross-fitted (folds=2)."""
    import dataclasses

    import jax

    _, flexible = _reward_models()
    n = args.special_n
    for j, (logging, problem) in enumerate(problems.items()):
        cell_key = jax.random.fold_in(key, j)
        k_logs, k_fit, k_boot = jax.random.split(cell_key, 3)
        data, logs = _sample_logs(problem, n, k_logs, args.replications)
        fits = {}
        for folds, label in ((1, "in-sample"), (2, "cross-fitted")):
            start = time.perf_counter()
            config = dataclasses.replace(flexible, folds=folds)
            q_hat = _fit(config, data, k_fit, args.replications, args.chunk, f"n={n} {logging} {label}")
            fits[label] = (q_hat, time.perf_counter() - start)
        for p, (policy, tau) in enumerate(POLICIES.items()):
            pi = _policy(logs["expected_reward"], tau)
            truth = truths[policy][0]
            for label, (q_hat, fit_seconds) in fits.items():
                start = time.perf_counter()
                name_label = f"n={n} {logging} {policy} {label}"
                arrays = _estimate_all(
                    logs, pi, q_hat, jax.random.fold_in(k_boot, p), args.n_bootstrap, name_label
                )
                ess = arrays.pop("_ess")
                for name, values in arrays.items():
                    if label == "in-sample" and name not in Q_HAT_ESTIMATORS:
                        continue  # the same as with the cross-fitted q_hat (same logs and bootstrap keys)
                    writer.emit(
                        {
                            "kind": "coverage",
                            "section": "special",
                            "n": n,
                            "logging": logging,
                            "policy": policy,
                            "q_hat": label if name in Q_HAT_ESTIMATORS else None,
                            "estimator": name,
                            "truth": truth,
                            "mean_ess": float(ess.mean()),
                            **_summary(values, truth),
                            "seconds": round(time.perf_counter() - start + fit_seconds / len(POLICIES), 1),
                        }
                    )
                writer.flush()
                print(f"done {name_label} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)


def _slate_problem(key):
    """The slate cell's problem: ``rho [C, A]``, logger and target scores ``[C, A]``, the truth ``V``."""
    import jax
    import jax.numpy as jnp

    from towerjax.list_policy import exact_position_marginals

    k_rho, k_noise = jax.random.split(key)
    shape = (SLATE["contexts"], SLATE["items"])
    logit = 1.5 * jax.random.normal(k_rho, shape) - 1.0
    logger = 0.5 * logit + 0.7 * jax.random.normal(k_noise, shape)
    target = 1.5 * logit
    rho = jax.nn.sigmoid(logit)
    theta = jnp.asarray(SLATE["theta"])
    marginals = exact_position_marginals(target, SLATE["k"])  # [C, K, A]
    truth = float(jnp.mean(jnp.einsum("cka,ca,k->c", marginals, rho, theta)))
    return {"rho": rho, "logit": logit, "logger": logger, "target": target, "truth": truth, "theta": theta}


def _slate_logs(problem, n: int, key) -> dict:
    """One log of ``n`` rows with every propensity :func:`slate_estimates` takes (numpy arrays)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from towerjax.list_policy import (
        exact_position_marginals,
        next_item_log_probs,
        prefix_log_probs,
        sample_lists,
    )

    k_ctx, k_list, k_click, k_model = jax.random.split(key, 4)
    c = jax.random.randint(k_ctx, (n,), 0, SLATE["contexts"])
    lists = sample_lists(k_list, problem["logger"][c], SLATE["k"])  # [n, K]
    rho = jnp.take_along_axis(problem["rho"][c], lists, axis=1)
    reward = jax.random.bernoulli(k_click, problem["theta"] * rho).astype(jnp.float32)
    rows = jnp.arange(n)[:, None]
    positions = jnp.arange(SLATE["k"])[None, :]
    m0 = exact_position_marginals(problem["logger"], SLATE["k"])[c]  # [n, K, A]
    m1 = exact_position_marginals(problem["target"], SLATE["k"])[c]
    cascade0 = jnp.exp(prefix_log_probs(problem["logger"][c], lists))
    cascade1 = jnp.exp(prefix_log_probs(problem["target"][c], lists))
    rho_model = jax.nn.sigmoid(problem["logit"] + 0.5 * jax.random.normal(k_model, problem["logit"].shape))
    q_hat = problem["theta"][None, :, None] * rho_model[c][:, None, :]  # [n, K, A]
    out = {
        "lists": lists,
        "reward": reward,
        "pscore": cascade0[:, -1],
        "pscore_item_position": m0[rows, positions, lists],
        "pscore_cascade": cascade0,
        "evaluation_policy_pscore": cascade1[:, -1],
        "evaluation_policy_pscore_item_position": m1[rows, positions, lists],
        "evaluation_policy_pscore_cascade": cascade1,
        "q_hat": q_hat,
        "evaluation_policy_action_dist": jnp.exp(next_item_log_probs(problem["target"][c], lists)),
    }
    return {name: np.asarray(value) for name, value in out.items()}


def _run_slate(args, writer: _Writer, key) -> None:
    """The slate cell: bootstrap and Wald coverage of every slate estimator at ``n = --slate-n``."""
    import jax
    import numpy as np
    from tqdm import tqdm

    from towerjax.evaluation import slate_estimates

    k_problem, k_logs, k_boot = jax.random.split(key, 3)
    problem = _slate_problem(k_problem)
    truth = problem["truth"]
    writer.emit({"kind": "truth", "section": "slate", "value": truth, "mcse": 0.0, "problem": SLATE})
    fields = ("value", "stderr", "wald_low", "wald_high", "bootstrap_low", "bootstrap_high")
    out: dict = {}
    ess = np.empty(args.replications)
    start = time.perf_counter()
    for r in tqdm(range(args.replications), desc=f"slate n={args.slate_n}", file=sys.stderr, leave=False):
        logs = _slate_logs(problem, args.slate_n, jax.random.fold_in(k_logs, r))
        est = slate_estimates(**logs, key=jax.random.fold_in(k_boot, r), n_bootstrap=args.n_bootstrap)
        for name, e in est.items():
            row = out.setdefault(name, {f: np.empty(args.replications) for f in fields})
            for f in fields:
                row[f][r] = getattr(e, f)
        ess[r] = est["sips"].diagnostics.ess
    seconds = time.perf_counter() - start
    for name, values in out.items():
        writer.emit(
            {
                "kind": "coverage",
                "section": "slate",
                "n": args.slate_n,
                "logging": "plackett-luce (noisy)",
                "policy": "plackett-luce (sharper)",
                "q_hat": "fixed, misspecified" if name == "cascade-dr" else None,
                "estimator": name,
                "truth": truth,
                "mean_ess": float(ess.mean()),
                **_summary(values, truth),
                "seconds": round(seconds, 1),
            }
        )
    writer.flush()
    print(f"done slate ({seconds:.0f} s)", file=sys.stderr, flush=True)


def _run_slope(args, writer: _Writer, truths: dict, problems: dict, key) -> None:
    """Each rule of :data:`towerjax.evaluation.selection.RULES` (SLOPE-MSE, plain SLOPE) choosing a cap vs
    the oracle-best cap (MSE against ``V(pi)``) on the main cells' logs and policies."""
    import jax
    import numpy as np

    from towerjax.evaluation import choose_estimator
    from towerjax.evaluation.selection import RULES, family_terms

    caps = slope_caps(args.slope_factor)
    for i, n in enumerate(args.sizes):
        for j, (logging, problem) in enumerate(problems.items()):
            k_logs = jax.random.fold_in(jax.random.fold_in(key, i), j)
            _, logs = _sample_logs(problem, n, k_logs, args.replications)
            for policy, tau in POLICIES.items():
                start = time.perf_counter()
                pi = _policy(logs["expected_reward"], tau)
                truth = truths[policy][0]
                rows = np.arange(n)
                member = np.empty((args.replications, len(caps)))
                chosen_value = {rule: np.empty(args.replications) for rule in RULES}
                chosen_cap = {rule: np.empty(args.replications) for rule in RULES}
                for r in range(args.replications):
                    w = pi[r][rows, logs["action"][r]] / logs["pscore"][r]
                    member[r] = family_terms("ipw-cap", w, logs["reward"][r], caps).mean(axis=1)
                    for rule in RULES:
                        choice = choose_estimator(
                            w, logs["reward"][r], family="ipw-cap", lambdas=caps, rule=rule
                        )
                        chosen_value[rule][r], chosen_cap[rule][r] = choice.estimate.value, choice.lambda_
                mse = np.mean((member - truth) ** 2, axis=0)
                best = int(np.argmin(mse))
                for rule in RULES:
                    mse_rule = float(np.mean((chosen_value[rule] - truth) ** 2))
                    picked, counts = np.unique(chosen_cap[rule], return_counts=True)
                    writer.emit(
                        {
                            "kind": "slope",
                            "section": "slope",
                            "rule": rule,
                            "n": n,
                            "logging": logging,
                            "policy": policy,
                            "truth": truth,
                            "replications": args.replications,
                            "mse_chosen": mse_rule,
                            "mse_oracle": float(mse[best]),
                            "oracle_cap": caps[best],
                            "mse_ipw": float(mse[0]),
                            "ratio": mse_rule / float(mse[best]),
                            "goal": SLOPE_GOAL,
                            "chosen_caps": {f"{c:.4g}": int(k) for c, k in zip(picked, counts, strict=True)},
                            "seconds": round(time.perf_counter() - start, 1),
                        }
                    )
                writer.flush()
                print(f"done slope n={n} {logging} {policy}", file=sys.stderr, flush=True)


def slate_tables(records: list[dict]) -> str:
    """Markdown tables of the slate coverage and SLOPE records."""
    out = []
    slate = [r for r in records if r.get("kind") == "coverage" and r["section"] == "slate"]
    if slate:
        out.append(f"\nslate: coverage at n={slate[0]['n']} (* outside [{GOAL[0]}, {GOAL[1]}])\n")
        out.append("| estimator | bootstrap | Wald | bias | RMSE | mean ESS |")
        out.append("|---|---|---|---|---|---|")
        for r in slate:
            out.append(
                f"| {r['estimator']} | {_cell(r['coverage_bootstrap'], r['coverage_bootstrap_mcse'])} | "
                f"{_cell(r['coverage_wald'], r['coverage_wald_mcse'])} | {r['bias']:+.4f} | {r['rmse']:.4f} | "
                f"{r['mean_ess']:.0f} |"
            )
    slope = [r for r in records if r.get("kind") == "slope"]
    if slope:
        out.append(
            f"\nslope: the chosen cap vs the oracle-best cap, MSE against V (goal ratio <= {SLOPE_GOAL})\n"
        )
        out.append("| cell | rule | MSE chosen | MSE oracle (cap) | MSE ipw | ratio |")
        out.append("|---|---|---|---|---|---|")
        for r in slope:
            mark = "" if r["ratio"] <= SLOPE_GOAL else "*"
            out.append(
                f"| n={r['n']} {r['logging']} {r['policy']} | {r['rule']} | {r['mse_chosen']:.3g} | "
                f"{r['mse_oracle']:.3g} ({r['oracle_cap']:.4g}) | {r['mse_ipw']:.3g} | {r['ratio']:.3f}{mark} |"
            )
    return "\n".join(out)


def _cell(c: float, se: float) -> str:
    mark = "" if GOAL[0] <= c <= GOAL[1] else "*"
    return f"{c:.3f}±{se:.3f}{mark}"


def _row_names(chosen: list[dict], column) -> list[tuple[str, str]]:
    """``(estimator, q_hat label)`` rows in the library's estimator order, in-sample before cross-fitted."""
    from towerjax.evaluation import ESTIMATORS

    names = dict.fromkeys((r["estimator"], column(r)[1]) for r in chosen)
    return sorted(names, key=lambda nq: (ESTIMATORS.index(nq[0]), nq[1] != " in-sample"))


def tables(records: list[dict]) -> str:
    """Markdown tables of the coverage records: one per section, estimators as rows."""
    rows = [r for r in records if r.get("kind") == "coverage"]
    out = []
    for section in ("main", "special"):
        chosen = [r for r in rows if r["section"] == section]
        if not chosen:
            continue

        def column(r, section=section):
            q = "" if section == "main" or r["q_hat"] is None else f" {r['q_hat']}"
            return (r["n"], r["logging"], r["policy"]), q

        cells = list(dict.fromkeys(column(r)[0] for r in chosen))
        for kind in ("wald", "bootstrap"):
            head = [f"n={n} {lg} {pol}" for n, lg, pol in cells]
            out.append(
                f"\n{section}: coverage of the 95% {kind} interval (* outside [{GOAL[0]}, {GOAL[1]}])\n"
            )
            out.append("| estimator | " + " | ".join(head) + " |")
            out.append("|---" * (len(head) + 1) + "|")
            names = _row_names(chosen, column)
            for name, q in names:
                entries = []
                for cell in cells:
                    hit = [r for r in chosen if column(r) == (cell, q) and r["estimator"] == name]
                    entries.append(
                        _cell(hit[0][f"coverage_{kind}"], hit[0][f"coverage_{kind}_mcse"]) if hit else "–"
                    )
                out.append(f"| {name}{q} | " + " | ".join(entries) + " |")
        out.append(f"\n{section}: bias / RMSE / sd of the estimate / mean reported stderr\n")
        head = [f"n={n} {lg} {pol}" for n, lg, pol in cells]
        out.append("| estimator | " + " | ".join(head) + " |")
        out.append("|---" * (len(head) + 1) + "|")
        for name, q in _row_names(chosen, column):
            entries = []
            for cell in cells:
                hit = [r for r in chosen if column(r) == (cell, q) and r["estimator"] == name]
                h = hit[0] if hit else None
                entries.append(
                    f"{h['bias']:+.4f} / {h['rmse']:.4f} / {h['sd']:.4f} / {h['mean_stderr']:.4f}"
                    if h
                    else "–"
                )
            out.append(f"| {name}{q} | " + " | ".join(entries) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import dataclasses

    import jax
    import jax.numpy as jnp

    from towerjax.synthetic import obp_problem

    writer = _Writer(args.json)
    writer.emit(_environment(args))
    key = jax.random.key(args.seed)
    k_problem, k_truth, k_main, k_special = jax.random.split(key, 4)
    k_slate, k_slope = jax.random.split(jax.random.fold_in(key, 25))
    base = obp_problem(k_problem, n_actions=N_ACTIONS, dim_context=DIM_CONTEXT, beta=1.0)
    problems = {name: dataclasses.replace(base, beta=jnp.float32(beta)) for name, beta in LOGGING.items()}
    if not set(args.only) & {"main", "special", "slope"}:
        truths = {}
    else:
        truths = _true_values(base, args.truth_contexts, k_truth)
    for policy, (value, se) in truths.items():
        writer.emit(
            {
                "kind": "truth",
                "policy": policy,
                "tau": POLICIES[policy],
                "value": value,
                "mcse": se,
                "contexts": args.truth_contexts,
            }
        )
    writer.flush()
    if "main" in args.only:
        _run_cells(args, writer, truths, problems, k_main)
    if "special" in args.only:
        _run_special(args, writer, truths, problems, k_special)
    if "slate" in args.only:
        _run_slate(args, writer, k_slate)
    if "slope" in args.only:
        _run_slope(args, writer, truths, problems, k_slope)
    writer.flush(complete=True)
    print(tables(writer.records))
    print(slate_tables(writer.records))
    print(f"\ntotal {time.perf_counter() - writer.start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
