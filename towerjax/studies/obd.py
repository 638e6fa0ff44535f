"""The Open Bandit Dataset study: two-tower policies learned from ``bts`` logs, evaluated on ``random`` logs.

What it does. Each learner (``ips``, ``dr``, ``snips``, ``regression``, ``naive``; SPEC 3-4)
trains a two-tower softmax policy on the OBD small sample's Bernoulli-Thompson-sampling
(``bts``) log of one campaign, ``seeds`` times (one ``jit(vmap(train))`` call over the seed
keys, the logs shared). The context is the user features (one-hot) and the user-item
affinities; the item tower reads the item features. Each learned policy is then
evaluated off-policy on the ``random`` log of the same campaign (the uniform logging
policy, propensity ``1/A`` per slot: 1/80 for ``all``) with IPS and SNIPS, and compared with the random
policy's own click rate (the uniform policy's on-policy value) and with the ``bts``
policy's click rate on its own log.

Positions. An OBD impression fills 3 slots; each row is one (impression, slot) pair
and its propensity is the logging policy's probability of that item *in that slot*.
The study reads every slot as its own single-slot bandit and reports the plain mean
of the per-slot values (each slot counts 1/3, whatever its number of rows):

- ``position_handling="pooled"`` (default): one policy ``pi(a | x, k)`` per seed,
  trained on all ``bts`` rows with a one-hot of the slot ``k`` appended to the context;
  for slot ``k`` it is evaluated on the ``random`` rows shown in slot ``k`` (their
  context carries the same one-hot).
- ``position_handling="separate"``: one policy per slot and seed, trained only on the
  ``bts`` rows of that slot (no slot feature) and evaluated on that slot's ``random`` rows.

The uniform and ``bts`` click rates are slot averages over the same rows. Per-slot
numbers are reported too.

Seeds. The headline value of a learner is that of its *seed-averaged policy*
``pi_bar = (1/S) sum_s pi_s`` (the mixture: draw a seed, act with its policy). Its IPS
estimate equals the mean of the per-seed IPS estimates; its SNIPS estimate is SNIPS
with ``pi_bar``'s weights. The per-seed estimates, their mean and standard deviation
(the training-seed spread, on the same evaluation rows) are reported beside it.

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
from the ``random`` context, and counted); the two ``item_context.csv`` files list the
same items but hash their categorical item features differently, so the study uses the
``bts`` item table for both training and evaluation (it checks that the item ids agree
and reports whether the ``random`` table is the same up to relabelled categories).

Hyperparameters (chosen a priori for 10,000 rows and 80 items, not tuned on the
evaluation logs): towers with one hidden layer of 32 units, embedding size 16, elu,
temperature 1, Adam learning rate 1e-3 with weight decay 1e-6, batch 100, 10 epochs;
the DR reward model an MLP (32, 32) fitted by cross-entropy for 10 epochs. The
importance weights of ``ips``, ``dr`` and ``snips`` are capped at 10
(``TrainConfig(cap=10)``): ``bts`` propensities go down to 4.5e-5, so uncapped weights
reach the thousands, and for DR every unclicked low-propensity row (``w (0 - q_hat)``)
would dominate its batch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.datasets import CAMPAIGNS, OpenBanditData, load_obd
from towerjax.policy import log_policy
from towerjax.reward_model import RewardModelConfig
from towerjax.train import TrainConfig, make_train

__all__ = [
    "OBD_LEARNERS",
    "POSITION_HANDLINGS",
    "Z_95",
    "format_obd",
    "run_obd_study",
    "slot_estimates",
]

OBD_LEARNERS = ("ips", "dr", "snips", "regression", "naive")
POSITION_HANDLINGS = ("pooled", "separate")
WEIGHTED_LEARNERS = ("ips", "dr", "snips")  # the learners whose importance weights `cap` bounds
Z_95 = 1.959963984540054


def run_obd_study(
    *,
    campaign: str = "all",
    seeds: int = 10,
    seed: int = 0,
    epochs: int = 10,
    learners: Sequence[str] = OBD_LEARNERS,
    position_handling: str = "pooled",
    batch_size: int = 100,
    learning_rate: float = 1e-3,
    hidden_sizes: Sequence[int] = (32,),
    embedding_size: int = 16,
    cap: float | None = 10.0,
    permutations: int = 10000,
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
      position_handling: ``"pooled"`` or ``"separate"`` (module docstring).
      cap: the importance-weight cap of ``ips``, ``dr`` and ``snips``; ``None`` for none.
      permutations: draws of the permutation tests (0 skips them; their p-values are NaN).
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

    Raises:
      ValueError: naming the argument, for an unknown campaign, learner or position
        handling, or a non-positive ``seeds``, ``epochs`` or other setting (before any data
        is read or model trained).
    """
    start = time.perf_counter()
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign: expected one of {CAMPAIGNS}, got {campaign!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds: expected a positive integer, got {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    if isinstance(learners, str):
        learners = (learners,)
    learners = tuple(learners)
    unknown = [name for name in learners if name not in OBD_LEARNERS]
    if not learners or unknown:
        raise ValueError(f"learners: expected a non-empty subset of {OBD_LEARNERS}, got {learners!r}")
    if len(set(learners)) != len(learners):
        raise ValueError(f"learners: expected each learner once, got {learners!r}")
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)) or permutations < 0:
        raise ValueError(f"permutations: expected a non-negative integer, got {permutations!r}")
    if position_handling not in POSITION_HANDLINGS:
        raise ValueError(
            f"position_handling: expected one of {POSITION_HANDLINGS}, got {position_handling!r}"
        )
    # TrainConfig checks epochs, batch_size, learning_rate, sizes and cap, naming each.
    configs = {
        name: TrainConfig(
            objective=name,
            hidden_sizes=tuple(hidden_sizes),
            embedding_size=embedding_size,
            activation="elu",
            temperature=1.0,
            learning_rate=learning_rate,
            weight_decay=1e-6,
            batch_size=batch_size,
            epochs=epochs,
            reward_model=RewardModelConfig(hidden_sizes=(32, 32), batch_size=100, epochs=10),
            cap=cap if name in WEIGHTED_LEARNERS else None,
            evaluate_train=False,
        )
        for name in learners
    }

    train_log = load_obd("bts", campaign, wheel=wheel, cache_dir=cache_dir)
    eval_log = load_obd("random", campaign, wheel=wheel, cache_dir=cache_dir)
    if not np.array_equal(train_log.item_ids, eval_log.item_ids):
        raise ValueError(
            f"campaign: the bts and random item tables of {campaign!r} list different items "
            f"({train_log.n_actions} and {eval_log.n_actions})"
        )
    n_slots = max(train_log.n_positions, eval_log.n_positions)
    for name, logs in (("bts", train_log), ("random", eval_log)):
        missing = [k for k in range(n_slots) if not np.any(logs.position == k)]
        if missing:
            raise ValueError(f"campaign: the {name} log of {campaign!r} has no rows in slot(s) {missing}")
    items = jnp.asarray(train_log.item_features, jnp.float32)
    pooled = position_handling == "pooled"
    # Per slot: training data (pooled: one shared LoggedData) and evaluation contexts.
    if pooled:
        train_sets = [train_log.to_logged_data(None, position_feature=True)]
    else:
        train_sets = [train_log.to_logged_data(k) for k in range(n_slots)]
    eval_rows = [np.flatnonzero(eval_log.position == k) for k in range(n_slots)]
    eval_context, unseen = [], 0
    for k, rows in enumerate(eval_rows):
        layout = None if pooled else k  # the pooled layout carries the slot one-hot
        context, dropped = _aligned_context(eval_log, train_log, layout, rows, n_slots)
        eval_context.append(jnp.asarray(context, jnp.float32))
        unseen += dropped
    actions = [eval_log.action[rows] for rows in eval_rows]
    rewards = [eval_log.click[rows].astype(np.float64) for rows in eval_rows]
    pscores = [eval_log.propensity_score[rows] for rows in eval_rows]

    uniform = _slot_average([_mean_terms(r) for r in rewards])
    bts_slots = [
        _mean_terms(train_log.click[train_log.position == k].astype(np.float64)) for k in range(n_slots)
    ]
    bts = _slot_average(bts_slots)
    bts["difference"] = _with_ci(
        {
            "value": bts["value"] - uniform["value"],
            "stderr": math.hypot(bts["stderr"], uniform["stderr"]),
        },
        significance=True,
    )
    bts["difference"]["p_permutation"] = _two_sample_pvalue(
        [train_log.click[train_log.position == k] for k in range(n_slots)],
        [eval_log.click[rows] for rows in eval_rows],
        permutations,
        np.random.default_rng(seed),
    )
    result = {
        "campaign": campaign,
        "seeds": int(seeds),
        "seed": int(seed),
        "position_handling": position_handling,
        "permutations": int(permutations),
        "config": {name: config.to_dict() for name, config in configs.items()},
        "n_slots": n_slots,
        "n_actions": train_log.n_actions,
        "rows": {
            "bts": [int(np.sum(train_log.position == k)) for k in range(n_slots)],
            "random": [int(rows.size) for rows in eval_rows],
        },
        "clicks": {
            "bts": [int(train_log.click[train_log.position == k].sum()) for k in range(n_slots)],
            "random": [int(r.sum()) for r in rewards],
        },
        "alignment": {
            "random_rows_with_unseen_user_categories": int(unseen),
            "random_item_table_matches_up_to_relabelling": _same_up_to_relabelling(
                train_log.item_features, eval_log.item_features
            ),
        },
        "uniform": uniform,
        "bts": bts,
        "learners": {},
    }
    log(
        f"OBD {campaign}: bts {train_log.n_rounds} rows ({int(train_log.click.sum())} clicks), "
        f"random {eval_log.n_rounds} rows ({int(eval_log.click.sum())} clicks), {n_slots} slots, "
        f"{train_log.n_actions} items; uniform CTR {uniform['value']:.4%}, bts CTR {bts['value']:.4%}"
    )

    # Every learner shares the towers' shapes and temperature, so one compiled evaluation serves all.
    model, temperature = configs[learners[0]].model, configs[learners[0]].temperature

    @jax.jit
    def probabilities(params, context):
        scores = jax.vmap(lambda p: model.scores(p, context, items))(params)
        return jnp.exp(log_policy(scores, temperature))

    base_key = jax.random.key(seed)
    for index, name in enumerate(learners):
        cell_start = time.perf_counter()
        run = jax.jit(jax.vmap(make_train(configs[name]), in_axes=(0, None)))
        prob_logged, max_prob, losses = [], [], []
        trained = None
        for k in range(n_slots):
            if trained is None or not pooled:  # pooled: one training run serves every slot
                slot_key = base_key if pooled else jax.random.fold_in(base_key, k)
                trained = run(jax.random.split(slot_key, seeds), train_sets[0 if pooled else k])
                losses.append(np.asarray(trained.loss, np.float64))
            pi = np.asarray(probabilities(trained.params, eval_context[k]), np.float64)  # [S, n_k, A]
            prob_logged.append(pi[:, np.arange(pi.shape[1]), actions[k]])
            max_prob.append(float(pi.max(axis=-1).mean()))
        estimates = slot_estimates(prob_logged, rewards, pscores, permutations=permutations, seed=seed)
        estimates["max_prob"] = float(np.mean(max_prob))
        estimates["loss"] = np.mean(np.stack(losses), axis=(0, 1)).tolist()
        estimates["seconds"] = time.perf_counter() - cell_start
        result["learners"][name] = estimates
        ips, diff = estimates["ips"], estimates["difference"]["ips"]
        log(
            f"[{index + 1}/{len(learners)}] {name:>10}: IPS {ips['value']:.4%} "
            f"[{ips['ci'][0]:.4%}, {ips['ci'][1]:.4%}], minus uniform {diff['value']:+.4%} "
            f"[{diff['ci'][0]:+.4%}, {diff['ci'][1]:+.4%}], permutation p {diff['p_permutation']:.3f} "
            f"({estimates['seconds']:.1f}s)"
        )
    result["seconds"] = time.perf_counter() - start
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
        influence = w_bar * (r - snips["value"]) / w_bar.mean() - (r - r.mean())
        per["diff_snips"].append({"value": snips["value"] - r.mean(), "stderr": _se(influence)})
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


def _se(terms: np.ndarray) -> float:
    terms = np.asarray(terms, np.float64)
    return float(terms.std(ddof=1) / math.sqrt(terms.size)) if terms.size > 1 else float("nan")


def _mean_terms(terms: np.ndarray) -> dict:
    terms = np.asarray(terms, np.float64)
    return {"value": float(terms.mean()), "stderr": _se(terms)}


def _snips(w: np.ndarray, r: np.ndarray) -> dict:
    total = w.sum()
    if total <= 0:
        return {"value": float("nan"), "stderr": float("nan")}
    value = float(np.sum(w * r) / total)
    return {"value": value, "stderr": _se(w * (r - value) / w.mean())}


def _with_ci(entry: dict, significance: bool = False) -> dict:
    value, se = entry["value"], entry["stderr"]
    entry["ci"] = [value - Z_95 * se, value + Z_95 * se]
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


def _aligned_context(
    source: OpenBanditData, target: OpenBanditData, slot: int | None, rows: np.ndarray, n_slots: int
) -> tuple[np.ndarray, int]:
    """``source``'s context for ``rows`` in the column layout ``target.to_logged_data(slot)`` trains on.

    ``slot=None`` is the pooled layout (slot one-hot appended). Columns are matched by
    name; a ``target`` column absent from ``source`` is 0, and a ``source`` category
    the training log never saw is dropped. Returns the context and the number of rows
    that had such an unseen category.
    """
    names = list(source.user_feature_names) + [
        f"user-item_affinity_{j}" for j in range(source.user_item_affinity.shape[1])
    ]
    values = source.context()[rows]
    if slot is None:
        names += [f"position={k}" for k in range(n_slots)]
        values = np.concatenate([values, np.eye(n_slots)[source.position[rows]]], axis=1)
    column = {name: j for j, name in enumerate(names)}
    wanted = target.context_feature_names(slot)
    out = np.zeros((rows.size, len(wanted)))
    for j, name in enumerate(wanted):
        if name in column:
            out[:, j] = values[:, column[name]]
    extra = [column[name] for name in names if name not in set(wanted)]
    dropped = int(np.sum(np.any(values[:, extra] != 0, axis=1))) if extra else 0
    return out, dropped


def _same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two item tables have the same columns as vectors over the items, in any order."""
    if a.shape != b.shape:
        return False
    key = lambda m: sorted(tuple(np.round(col, 9)) for col in m.T)  # noqa: E731
    return key(a) == key(b)
