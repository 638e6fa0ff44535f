"""Scaling benchmarks: many items, exact top-k over a million items, many seeds, FLOP/s,
end-to-end training on a million-item catalogue, data-parallel training.

Six sections; the first four run by default (``--only items,scoring`` picks some,
``--only train,dataparallel`` the last two, which would take the default run past its 15
minutes):

``items``
    One training step against the number of items ``A``: (a) the full softmax (the item
    tower over all ``A`` items, ``[B, A]`` scores, ``log_softmax``, :func:`towerjax.ips_loss`,
    an optax Adam update) and (b) the sampled softmax (the item tower only on the ``B``
    logged and ``M`` sampled items' features, :func:`towerjax.sample_items` from a uniform
    or a popularity (Zipf counts) proposal, :func:`towerjax.sampled_log_prob_from_ids`,
    :func:`towerjax.logged_column`, ``ips_loss`` with the logged propensity). Memory is
    XLA's buffer-assignment peak of the compiled step (deterministic, see below); at the
    largest ``A`` also the peak RSS (``VmHWM``) of a fresh process that builds the data,
    compiles the step and runs it twice (``rss_*_bytes``, high-water marks after each
    stage; they include JAX, the compilers and the data; ``--no-rss`` skips them).
``scoring``
    Exact chunked :func:`towerjax.top_k_items` of 10,000 contexts against 1,000,000 items,
    and :func:`towerjax.approx_top_k_items` against the exact search on a smaller problem.
``seeds``
    Training throughput against the number of ``vmap``ped seeds (what
    :func:`towerjax.train_seeds` runs).
``flops``
    Achieved FLOP/s of the seed study's training step at batch 1000, as a fraction of a
    jitted float32 matmul's FLOP/s measured in the same run.
``train``
    End-to-end training (:func:`towerjax.compile_seeds`, one seed: what ``train_seeds``
    runs) with ``TrainConfig(sampled_softmax=1024)`` at 1,000 and 1,000,000 items, on a
    synthetic catalogue with 32 dense item features and planted rewards
    (:class:`_TrainProblem`: epsilon-uniform exploration over a softmax of a fixed
    candidate set, so propensities are exact and cheap). Per catalogue: two compiled runs
    on 10,240 and 81,920 logged events (same epochs, validation and test sets), whose
    time difference over the difference in steps is the steady-state step time, and the
    rest (initialisation and the per-epoch exact-softmax evaluation on the validation and
    test rows, over all items) is reported apart; the update step alone
    (``make_update_step`` on one batch) as a cross-check; compile times; XLA's plan of the
    whole run; the peak RSS of a fresh process running it (``--no-rss`` skips); and the
    learned policy's exact value on 200 test contexts next to the logging policy's, the
    uniform one's and the best item's (``sum_a pi(a|x) q(x, a)`` over every item, in
    chunks), for the timed objective (IPS) and, one run each, for
    ``train_other_objectives``. ``--write-logs DIR`` writes the largest catalogue's logs as
    Parquet for ``towerjax train --logs``.
``dataparallel``
    The step time of one training run (:func:`towerjax.compile_seeds`, one seed, the seed
    study's towers on the built-in problem) with ``TrainConfig(data_parallel=k)``,
    ``k = 1, 2, 4``, at batches 1,024 and 4,096: the run's time over its steps (the run
    also draws the problem and scores 100 test contexts each epoch, under 1% of it). Runs
    in a child process with 4 XLA CPU devices unless this one has them (``--devices 4``).

Records, timing and memory as every benchmark (``benchmarks/harness.py``): configurations
timed in interleaved rounds (each round times every configuration once), medians over
rounds, ratios taken per round and their median quoted; one JSON object per line on stdout,
progress on stderr, ``--json PATH`` for all records as one JSON list.

Records (``"kind"``): ``environment`` (devices, versions, flags, settings); ``items`` (one
per variant and ``A``), ``items_target`` (sampled softmax at the largest ``A`` against the
targets), ``items_full_over_sampled``; ``scoring_exact``, ``scoring_approx``; ``seeds`` (one
per ``S``), ``seeds_summary``; ``matmul`` (one per size), ``flops``; ``train`` (one per
catalogue size), ``train_target``; ``dataparallel`` (one per batch and device count).
``cpu_seconds_per_wall_second`` is the process's CPU time over wall time during the timed
calls (about 2 when one call keeps both cores of a 2-core machine busy).

Memory: ``xla_peak_bytes`` is XLA's buffer-assignment plan of one call
(``harness.xla_memory``: arguments, outputs and the temporary arena, donated arguments that
alias outputs counted once; not the generated code or the Python process). It is computed
without running the step, so sizes over ``--memory-limit-gb`` are compiled, reported and
not run.

Run (about 10-15 minutes on 2 CPU cores): ``python benchmarks/scale.py --json scale.json``;
``python benchmarks/scale.py --only train`` (about 8 minutes) and ``--only dataparallel``
(about 5); smoke test: ``python benchmarks/scale.py --quick`` (``--quick --only
train,dataparallel`` for the last two).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings

from harness import (
    GB,
    calls_per_block,
    child_json,
    emit,
    environment,
    log,
    max_rss_bytes,
    median,
    seconds_per_call,
    sig,
    timed,
    write_records,
    xla_cost,
    xla_memory,
)

SECTIONS = ("items", "scoring", "seeds", "flops", "train", "dataparallel")
DEFAULT_SECTIONS = ("items", "scoring", "seeds", "flops")  # train and dataparallel: with --only
VARIANTS = ("full", "sampled-uniform", "sampled-popularity")


# --------------------------------------------------------------------------- settings


def _settings(quick: bool) -> dict:
    """Sizes of every section; ``quick`` shrinks them all for a smoke test."""
    if quick:
        return {
            "items_sizes": [10, 1000, 10_000],
            "items_rounds": 3,
            "rss_variants": ["sampled-uniform"],
            "block_seconds": 0.05,
            "scoring_contexts": 200,
            "scoring_items": 20_000,
            "scoring_chunk": 4096,
            "scoring_context_chunk": 100,
            "scoring_repeats": 2,
            "approx_contexts": 100,
            "approx_items": 5000,
            "approx_rounds": 2,
            "seed_counts": [1, 2],
            "seed_rounds": 2,
            "seed_problem": {"n_rounds": 200, "n_test_rounds": 100},
            "seed_config": {
                "epochs": 1,
                "hidden_sizes": (32,),
                "embedding_size": 16,
            },
            "flops_batch": 1000,
            "matmul_sizes": [256, 512],
            "flops_rounds": 3,
            **_train_settings(quick=True),
        }
    return {
        "items_sizes": [10, 100, 1000, 10_000, 100_000, 1_000_000],
        "items_rounds": 7,
        "rss_variants": list(VARIANTS),
        "block_seconds": 0.25,
        "scoring_contexts": 10_000,
        "scoring_items": 1_000_000,
        "scoring_chunk": 16_384,
        "scoring_context_chunk": 1000,
        "scoring_repeats": 3,
        "approx_contexts": 1000,
        "approx_items": 100_000,
        "approx_rounds": 5,
        "seed_counts": [1, 2, 4, 8, 16, 32, 64],
        "seed_rounds": 3,
        "seed_problem": {"n_rounds": 2000, "n_test_rounds": 1000},
        "seed_config": {"epochs": 2},
        "flops_batch": 1000,
        "matmul_sizes": [1024, 2048, 4096],
        "flops_rounds": 5,
        **_train_settings(quick=False),
    }


def _train_settings(quick: bool) -> dict:
    """Sizes of the ``train`` and ``dataparallel`` sections."""
    common = {
        "train_num_samples": 1024,
        "train_proposal": "uniform",
        "train_batch": 256,
        "train_learning_rate": 3e-3,
        "train_features": 32,
        "train_latent": 8,
        "train_epsilon": 0.2,
        # Learned values only (one untimed run each on the larger logs): IPS's weights reach
        # A / epsilon on the uniformly explored rows, so a cap and a naive learner are shown too.
        "train_other_objectives": [{"name": "ips", "cap": 100.0}, {"name": "naive"}],
        "train_id_embedding_dim": 32,  # default_embedding_dim of a million ids
    }
    if quick:
        return {
            **common,
            "train_items": [100, 20_000],
            "train_rows": [1024, 2048],
            "train_epochs": 1,
            "train_candidates": 20,
            "train_validation_rows": 200,
            "train_test_contexts": 50,
            "train_run_test_contexts": 20,
            "train_rounds": 2,
            "train_other_objectives": [{"name": "naive"}],
            "dp_counts": [1, 2],
            "dp_batches": [256],
            "dp_steps": 4,
            "dp_epochs": 2,
            "dp_rounds": 2,
        }
    return {
        **common,
        "train_items": [1000, 1_000_000],
        "train_rows": [10_240, 81_920],
        "train_epochs": 2,
        "train_candidates": 100,
        # Each epoch scores every validation row against every item (exact softmax): at a
        # million items 1,000 rows cost about 9 s an epoch here, 200 rows about 2 s.
        "train_validation_rows": 200,
        "train_test_contexts": 200,
        "train_run_test_contexts": 50,
        "train_rounds": 5,
        "dp_counts": [1, 2, 4],
        "dp_batches": [1024, 4096],
        "dp_steps": 16,
        "dp_epochs": 4,
        "dp_rounds": 5,
    }


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        type=str,
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated sections to run, of {', '.join(SECTIONS)} "
        f"(default: {','.join(DEFAULT_SECTIONS)})",
    )
    parser.add_argument("--json", type=str, default=None, help="also write all records here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of a minute or two")
    parser.add_argument("--devices", type=int, default=None, help="XLA CPU devices (default: one per core)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds of every section")
    parser.add_argument("--batch", type=int, default=256, help="items: logged events per step (B)")
    parser.add_argument("--embedding-size", type=int, default=64, help="items: tower output size (D)")
    parser.add_argument("--num-samples", type=int, default=1024, help="items: sampled items per step (M)")
    parser.add_argument(
        "--memory-limit-gb", type=float, default=8.0, help="items: do not run steps above this XLA peak"
    )
    parser.add_argument(
        "--time-limit-s", type=float, default=5.0, help="items: stop timing steps slower than this"
    )
    parser.add_argument("--no-rss", action="store_true", help="items, train: skip the RSS subprocesses")
    parser.add_argument(
        "--write-logs",
        type=str,
        default=None,
        metavar="DIR",
        help="train: write the largest catalogue's logs as Parquet files here (logs, validation, items)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="override one of the section settings (printed in the environment record), "
        "e.g. --set scoring_contexts=1000 --set 'seed_counts=[1,8]'",
    )
    parser.add_argument("--rss-child", type=str, default=None, help=argparse.SUPPRESS)  # "VARIANT:A"
    parser.add_argument("--train-child", type=str, default=None, help=argparse.SUPPRESS)  # "A"
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--only: expected names among {', '.join(SECTIONS)}, got {args.only!r}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be positive")
    if min(args.batch, args.embedding_size, args.num_samples) < 1:
        parser.error("--batch, --embedding-size and --num-samples must be positive")
    return args


# --------------------------------------------------------------------------- items


class _ItemsCase:
    """One compiled training step (a variant at ``A`` items) and its state between calls."""

    def __init__(self, jax, variant: str, num_items: int, data: dict, args, optimizer):
        import jax.numpy as jnp
        import optax

        import towerjax

        self.variant, self.num_items = variant, num_items
        self.skipped: str | None = None
        self.seconds: list[float] = []
        self.steps_per_block = 1
        model = towerjax.TwoTower(hidden_sizes=(128,), embedding_size=args.embedding_size)
        num_samples = args.num_samples
        keys = ("context", "item_features", "action", "reward", "pscore")
        if variant == "full":

            def loss_fn(params, key, d):
                del key
                scores = model.scores(params, d["context"], d["item_features"])  # [B, A]
                log_pi = towerjax.log_policy(scores)
                return towerjax.ips_loss(log_pi, d["action"], d["reward"], d["pscore"])

        else:
            keys += ("log_q",)

            def loss_fn(params, key, d):
                batch = d["action"].shape[0]
                ids, log_q_ids = towerjax.sample_items(key, d["log_q"], num_samples)
                rows = d["item_features"][jnp.concatenate([d["action"], ids])]  # [B + M, d_a]
                items = model.embed_actions(params, rows)
                ctx = model.embed_context(params, d["context"])
                log_pi_a = towerjax.sampled_log_prob_from_ids(
                    ctx, d["action"], items[:batch], ids, items[batch:], log_q_ids
                )
                log_pi, column = towerjax.logged_column(log_pi_a)
                return towerjax.ips_loss(log_pi, column, d["reward"], d["pscore"])

        def step(params, opt_state, key, d):
            key, sub = jax.random.split(key)
            loss, grads = jax.value_and_grad(loss_fn)(params, sub, d)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, loss

        proposal = {"sampled-uniform": "log_q_uniform", "sampled-popularity": "log_q_popularity"}
        self.data = {k: data[proposal[variant] if k == "log_q" else k] for k in keys}
        params = model.init(jax.random.key(1), data["context"].shape[1], data["item_features"].shape[1])
        self.state = (params, optimizer.init(params), jax.random.key(2))
        start = time.perf_counter()
        self.compiled = jax.jit(step, donate_argnums=(0, 1)).lower(*self.state, self.data).compile()
        self.compile_seconds = time.perf_counter() - start
        self.memory = xla_memory(self.compiled)

    def run(self, jax, steps: int) -> float:
        start = time.perf_counter()
        params, opt_state, key = self.state
        loss = None
        for _ in range(steps):
            params, opt_state, key, loss = self.compiled(params, opt_state, key, self.data)
        jax.block_until_ready((params, loss))
        self.state = (params, opt_state, key)
        return (time.perf_counter() - start) / steps


def _items_data(jax, num_items: int, batch: int, features: int = 50) -> dict:
    """Uniform ``[0, 1)`` features; logs drawn from a Zipf popularity behaviour policy."""
    import jax.numpy as jnp

    import towerjax

    k_items, k_ctx, k_action, k_reward = jax.random.split(jax.random.key(0), 4)
    counts = jnp.floor(1e6 / jnp.arange(1, num_items + 1, dtype=jnp.float32))  # Zipf(1) counts
    log_q_popularity = towerjax.popularity_log_q(counts)  # (count + 1) smoothing
    action, log_p = towerjax.sample_items(k_action, log_q_popularity, batch)
    data = {
        "item_features": jax.random.uniform(k_items, (num_items, features)),
        "context": jax.random.uniform(k_ctx, (batch, features)),
        "action": action,
        "reward": jax.random.bernoulli(k_reward, 0.5, (batch,)).astype(jnp.float32),
        "pscore": jnp.exp(log_p),  # the logged propensity of the popularity behaviour policy
        # prepared once (two-level CDF), so a step's draws cost O(M log A), not O(A)
        "log_q_uniform": towerjax.item_proposal(towerjax.uniform_log_q(num_items)),
        "log_q_popularity": towerjax.item_proposal(log_q_popularity),
    }
    return jax.block_until_ready(data)


def _rss_child(args) -> int:
    """``--rss-child VARIANT:A``: build, compile and run two steps in a fresh process; print RSS."""
    import jax

    from towerjax.training import TrainConfig, make_optimizer

    variant, num_items = args.rss_child.split(":")
    num_items = int(num_items)
    jax.block_until_ready(jax.numpy.zeros(1))
    rss_start = max_rss_bytes()
    data = _items_data(jax, num_items, args.batch)
    rss_data = max_rss_bytes()
    case = _ItemsCase(jax, variant, num_items, data, args, make_optimizer(TrainConfig.seed_study()))
    rss_compiled = max_rss_bytes()
    case.run(jax, 2)
    print(
        json.dumps(
            {
                "rss_after_jax_start_bytes": rss_start,
                "rss_after_data_bytes": rss_data,
                "rss_after_compile_bytes": rss_compiled,
                "rss_peak_bytes": max_rss_bytes(),
            }
        ),
        flush=True,
    )
    return 0


def _rss_of(variant: str, num_items: int, args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--rss-child", f"{variant}:{num_items}"]
    command += ["--batch", str(args.batch), "--embedding-size", str(args.embedding_size)]
    command += ["--num-samples", str(args.num_samples)]
    if args.devices is not None:
        command += ["--devices", str(args.devices)]
    try:
        return child_json(command, timeout=600, quiet=True)[-1]
    except (subprocess.SubprocessError, ValueError, IndexError) as error:
        return {"rss_error": repr(error)[:300]}


def run_items(jax, args, settings: dict, records: list[dict]) -> None:
    from towerjax.training import TrainConfig, make_optimizer

    optimizer = make_optimizer(TrainConfig.seed_study())  # Adam 0.005 with L2 1e-6, as the trainer
    memory_limit = args.memory_limit_gb * GB
    rounds = args.rounds or settings["items_rounds"]
    sizes = settings["items_sizes"]
    cases: list[_ItemsCase] = []
    last_time: dict[str, tuple[int, float]] = {}  # variant -> (A, seconds of one step)
    for num_items in sizes:
        data = _items_data(jax, num_items, args.batch)
        for variant in VARIANTS:
            case = _ItemsCase(jax, variant, num_items, data, args, optimizer)
            cases.append(case)
            peak = case.memory.get("xla_peak_bytes")
            log(
                f"items: {variant} A={num_items}: compiled in {case.compile_seconds:.1f}s, "
                f"XLA peak {peak / GB if peak else float('nan'):.3f} GB"
            )
            if peak is not None and peak > memory_limit:
                case.skipped = f"XLA peak {peak / GB:.2f} GB > {args.memory_limit_gb} GB: not run"
                continue
            if variant in last_time:
                prev_items, prev_seconds = last_time[variant]
                predicted = prev_seconds * num_items / prev_items
                if predicted > 2 * args.time_limit_s:
                    case.skipped = (
                        f"predicted step {predicted:.1f}s (linear in A from A={prev_items}) "
                        f"> 2 x {args.time_limit_s}s: not run"
                    )
                    continue
            case.run(jax, 1)  # warm-up
            one = case.run(jax, 1)
            last_time[variant] = (num_items, one)
            if one > args.time_limit_s:
                case.skipped = f"step {one:.1f}s > {args.time_limit_s}s: not timed further"
                case.single_step_seconds = one
                continue
            case.steps_per_block = calls_per_block(one, settings["block_seconds"])
        del data

    live = [c for c in cases if c.skipped is None]
    for round_index in range(rounds):
        for case in live:
            case.seconds.append(case.run(jax, case.steps_per_block))
        log(f"items: round {round_index + 1}/{rounds} done")

    rss = {}
    if not args.no_rss:
        for case in cases:  # the largest size only: below it the RSS is mostly JAX and compilers
            if (
                case.skipped is None
                and case.num_items == max(sizes)
                and case.variant in settings["rss_variants"]
            ):
                rss[(case.variant, case.num_items)] = _rss_of(case.variant, case.num_items, args)
                log(f"items: RSS of {case.variant} A={case.num_items} measured")

    for case in cases:
        record = {
            "kind": "items",
            "variant": case.variant,
            "num_items": case.num_items,
            "batch": args.batch,
            "embedding_size": args.embedding_size,
            "hidden_sizes": [128],
            "num_samples": None if case.variant == "full" else args.num_samples,
            "compile_seconds": round(case.compile_seconds, 2),
            "seconds_per_step_median": sig(median(case.seconds)),
            "seconds_per_step_rounds": [sig(s) for s in case.seconds],
            "steps_per_round": case.steps_per_block if case.seconds else 0,
            "skipped": case.skipped,
            **case.memory,
            **rss.get((case.variant, case.num_items), {}),
        }
        if getattr(case, "single_step_seconds", None) is not None:
            record["single_step_seconds"] = sig(case.single_step_seconds)
        emit(record, records)

    by_key = {(c.variant, c.num_items): c for c in cases}
    largest = max(sizes)
    reference = 1000 if 1000 in sizes else min(sizes)
    for variant in VARIANTS[1:]:
        big, ref = by_key[(variant, largest)], by_key[(variant, reference)]
        per_round = [b / r for b, r in zip(big.seconds, ref.seconds, strict=False)]
        ratio = median(per_round)
        peak = big.memory.get("xla_peak_bytes")
        emit(
            {
                "kind": "items_target",
                "variant": variant,
                "num_items": largest,
                "reference_num_items": reference,
                "step_time_ratio_median": sig(ratio),
                "step_time_ratio_rounds": [sig(r) for r in per_round],
                "step_time_target_ratio": 2.0,
                "step_time_target_met": None if ratio is None else bool(ratio <= 2.0),
                "xla_peak_bytes": peak,
                "peak_target_bytes": int(4 * GB),
                "peak_target_met": None if peak is None else bool(peak < 4 * GB),
                "rss_peak_bytes": rss.get((variant, largest), {}).get("rss_peak_bytes"),
            },
            records,
        )
    full_over_sampled = {}
    for num_items in sizes:
        full, sampled = by_key[("full", num_items)], by_key[("sampled-uniform", num_items)]
        if full.seconds and sampled.seconds:
            per_round = [f / s for f, s in zip(full.seconds, sampled.seconds, strict=False)]
            full_over_sampled[str(num_items)] = sig(median(per_round))
    emit(
        {
            "kind": "items_full_over_sampled",
            "full_over_sampled_uniform_step_time_median": full_over_sampled,
            "full_largest_timed_num_items": max(
                (c.num_items for c in cases if c.variant == "full" and c.seconds), default=None
            ),
        },
        records,
    )


# --------------------------------------------------------------------------- scoring


def run_scoring(jax, args, settings: dict, records: list[dict]) -> None:
    import numpy as np

    import towerjax

    k, dim = 10, 64
    n_ctx, n_items = settings["scoring_contexts"], settings["scoring_items"]
    chunk, context_chunk = settings["scoring_chunk"], settings["scoring_context_chunk"]
    k_ctx, k_items = jax.random.split(jax.random.key(3))
    ctx = jax.random.normal(k_ctx, (n_ctx, dim))
    items = jax.block_until_ready(jax.random.normal(k_items, (n_items, dim)))

    def exact_chunked(c, e):
        return towerjax.top_k_items(c, e, k, chunk_size=chunk, context_chunk_size=context_chunk)

    start = time.perf_counter()
    compiled = jax.jit(exact_chunked).lower(ctx, items).compile()
    compile_seconds = time.perf_counter() - start
    memory = xla_memory(compiled)
    # The unchunked search is only compiled: its plan shows what it would need.
    unchunked = jax.jit(lambda c, e: towerjax.top_k_items(c, e, k)).lower(ctx, items).compile()
    unchunked_peak = xla_memory(unchunked).get("xla_peak_bytes")
    log(
        f"scoring: compiled {n_ctx} x {n_items} top-{k} in {compile_seconds:.1f}s; "
        f"XLA peak {(memory.get('xla_peak_bytes') or 0) / GB:.3f} GB (unchunked would plan "
        f"{(unchunked_peak or 0) / GB:.3f} GB)"
    )
    del unchunked
    repeats = args.rounds or settings["scoring_repeats"]
    seconds, cpu, ids = [], [], None
    for repeat in range(repeats):
        (scores, ids), wall, cpu_call = timed(lambda: jax.block_until_ready(compiled(ctx, items)))
        seconds.append(wall)
        cpu.append(cpu_call / wall)
        log(f"scoring: exact chunked call {repeat + 1}/{repeats}: {seconds[-1]:.1f}s")
    # Spot check against the plain top_k on a few rows.
    rows = min(16, n_ctx)
    check_scores, check_ids = jax.jit(lambda c, e: towerjax.top_k_items(c, e, k))(ctx[:rows], items)
    matches = bool(np.array_equal(np.asarray(ids[:rows]), np.asarray(check_ids)))
    emit(
        {
            "kind": "scoring_exact",
            "method": "top_k_items(chunk_size, context_chunk_size)",
            "contexts": n_ctx,
            "items": n_items,
            "embedding_size": dim,
            "k": k,
            "chunk_size": chunk,
            "context_chunk_size": context_chunk,
            "compile_seconds": round(compile_seconds, 2),
            "seconds_median": sig(median(seconds)),
            "seconds_repeats": [sig(s) for s in seconds],
            "pairs_per_second": sig(n_ctx * n_items / median(seconds)),
            **memory,
            "unchunked_xla_peak_bytes_compiled_not_run": unchunked_peak,
            "cpu_seconds_per_wall_second": [round(c, 2) for c in cpu],
            "process_max_rss_bytes": max_rss_bytes(),
            "ids_match_unchunked_on_first_rows": rows,
            "ids_match": matches,
        },
        records,
    )
    del ctx, items, scores, ids, check_scores, check_ids, compiled

    # Approximate against exact, side by side on a smaller problem.
    n_ctx, n_items = settings["approx_contexts"], settings["approx_items"]
    k_ctx, k_items = jax.random.split(jax.random.key(4))
    ctx = jax.random.normal(k_ctx, (n_ctx, dim))
    items = jax.block_until_ready(jax.random.normal(k_items, (n_items, dim)))
    small_chunk = min(chunk, n_items)
    methods = {
        "top_k_items (exact, unchunked)": lambda c, e: towerjax.top_k_items(c, e, k),
        "top_k_items (exact, chunked)": lambda c, e: towerjax.top_k_items(
            c, e, k, chunk_size=small_chunk, context_chunk_size=min(context_chunk, n_ctx)
        ),
        "approx_top_k_items (recall_target 0.95)": lambda c, e: towerjax.approx_top_k_items(c, e, k),
    }
    compiled, memory, results, timings = {}, {}, {}, {}
    for name, fn in methods.items():
        compiled[name] = jax.jit(fn).lower(ctx, items).compile()
        memory[name] = xla_memory(compiled[name])
        results[name] = jax.block_until_ready(compiled[name](ctx, items))  # warm-up
        timings[name] = []
    exact_ids = results["top_k_items (exact, unchunked)"][1]
    rounds = args.rounds or settings["approx_rounds"]
    for round_index in range(rounds):
        for name in methods:
            start = time.perf_counter()
            jax.block_until_ready(compiled[name](ctx, items))
            timings[name].append(time.perf_counter() - start)
        log(f"scoring: approx vs exact round {round_index + 1}/{rounds} done")
    exact_seconds = timings["top_k_items (exact, unchunked)"]
    for name in methods:
        per_round = [s / e for s, e in zip(timings[name], exact_seconds, strict=True)]
        emit(
            {
                "kind": "scoring_approx",
                "method": name,
                "contexts": n_ctx,
                "items": n_items,
                "k": k,
                "seconds_median": sig(median(timings[name])),
                "seconds_rounds": [sig(s) for s in timings[name]],
                "time_over_exact_unchunked_median": sig(median(per_round)),
                "recall_vs_exact": round(float(towerjax.recall_at_k(results[name][1], exact_ids)), 4),
                "xla_peak_bytes": memory[name].get("xla_peak_bytes"),
            },
            records,
        )


# --------------------------------------------------------------------------- seeds


def run_seeds(jax, args, settings: dict, records: list[dict]) -> None:
    from towerjax.batching import num_batches
    from towerjax.synthetic import SyntheticProblem
    from towerjax.training import TrainConfig, compile_seeds

    problem = SyntheticProblem(**settings["seed_problem"])
    config = TrainConfig.seed_study(batch_size=10, evaluate_train=False, **settings["seed_config"])
    steps_per_seed = config.epochs * num_batches(problem.n_rounds, config.batch_size)
    runners, first_run = {}, {}
    for seeds in settings["seed_counts"]:
        # train_seeds(config, seeds=S) is compile_seeds(...) then one timed runner.run(); the
        # two pieces are called here so the compiled runner can be re-run in later rounds.
        runner = compile_seeds(config, seeds=seeds, devices=args.devices, problem=problem)
        start = time.perf_counter()
        jax.block_until_ready(runner.run())
        first_run[seeds] = time.perf_counter() - start
        runners[seeds] = runner
        log(f"seeds: S={seeds} compiled in {runner.seconds_compile:.1f}s, first run {first_run[seeds]:.2f}s")
    rounds = args.rounds or settings["seed_rounds"]
    seconds = {s: [] for s in runners}
    for round_index in range(rounds):
        for seeds, runner in runners.items():
            start = time.perf_counter()
            jax.block_until_ready(runner.run())
            seconds[seeds].append(time.perf_counter() - start)
        log(f"seeds: round {round_index + 1}/{rounds} done")

    def throughput(seeds: int, seconds_train: float) -> float:
        return seeds * steps_per_seed / seconds_train

    for seeds, runner in runners.items():
        seconds_median = median(seconds[seeds])
        rate = throughput(seeds, seconds_median)
        emit(
            {
                "kind": "seeds",
                "seeds": seeds,
                "devices": runner.devices,
                "groups_per_device": runner.groups,
                "seeds_at_once_per_device": seeds // runner.devices // runner.groups,
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
                if seeds == min(runners)
                else "as above",
                "problem": dataclasses.asdict(problem) if seeds == min(runners) else "as above",
                "steps_per_seed": steps_per_seed,
                "compile_seconds": round(runner.seconds_compile, 2),
                "first_run_seconds": sig(first_run[seeds]),
                "seconds_train_median": sig(seconds_median),
                "seconds_train_rounds": [sig(s) for s in seconds[seeds]],
                "seed_steps_per_second": sig(rate),
                "seconds_per_seed_step": sig(1.0 / rate),
                "steps_per_second_each_seed": sig(rate / seeds),
            },
            records,
        )
    counts = list(runners)
    largest, smallest = max(counts), min(counts)
    rates = {s: throughput(s, median(seconds[s])) for s in counts}
    best = max(rates, key=rates.get)
    per_round = [
        throughput(largest, big) / throughput(smallest, small)
        for big, small in zip(seconds[largest], seconds[smallest], strict=True)
    ]
    emit(
        {
            "kind": "seeds_summary",
            "largest_seeds": largest,
            "smallest_seeds": smallest,
            "best_seeds": best,
            "throughput_largest_over_smallest_median": sig(median(per_round)),
            "throughput_largest_over_smallest_rounds": [sig(r) for r in per_round],
            "throughput_largest_over_best": sig(rates[largest] / rates[best]),
            "throughput_best_over_smallest": sig(rates[best] / rates[smallest]),
        },
        records,
    )


# --------------------------------------------------------------------------- flops


def run_flops(jax, args, settings: dict, records: list[dict]) -> None:
    import jax.numpy as jnp

    from towerjax.synthetic import SyntheticProblem, blog_problem, sample_logged_data
    from towerjax.training import Batch, TrainConfig, make_optimizer, make_update_step

    config, shape = TrainConfig.seed_study(), SyntheticProblem()  # the seed study's 10 actions, 50 dims
    batch_size = settings["flops_batch"]
    problem = blog_problem(jax.random.key(5), n_actions=shape.n_actions, dim=shape.dim)
    data = sample_logged_data(jax.random.key(6), problem, batch_size)
    batch = Batch(data=dataclasses.replace(data, pi_b=None, expected_reward=None), mask=jnp.ones(batch_size))
    params = config.model.init(jax.random.key(7), shape.dim, shape.dim)
    state = [params, make_optimizer(config).init(params)]
    key = jax.random.key(8)
    step = make_update_step(config)
    start = time.perf_counter()
    compiled_step = jax.jit(step, donate_argnums=(0, 1)).lower(*state, batch, key).compile()
    step_compile = time.perf_counter() - start
    step_cost = xla_cost(compiled_step)
    step_flops = step_cost.get("flops")

    def train_call():
        state[0], state[1], metrics = compiled_step(state[0], state[1], batch, key)
        return state[0], metrics

    matmuls = {}
    for n in settings["matmul_sizes"]:
        a = jax.random.normal(jax.random.key(n), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(n + 1), (n, n), jnp.float32)
        compiled = jax.jit(jnp.matmul).lower(a, b).compile()
        matmuls[n] = (compiled, a, b, xla_cost(compiled).get("flops"))

    def matmul_call(n):
        compiled, a, b, _ = matmuls[n]
        return lambda: compiled(a, b)

    calls = {"train_step": train_call, **{n: matmul_call(n) for n in matmuls}}
    steps = {}
    for name, fn in calls.items():
        seconds_per_call(jax, fn, 1)  # warm-up
        steps[name] = calls_per_block(seconds_per_call(jax, fn, 1), settings["block_seconds"])
    rounds = args.rounds or settings["flops_rounds"]
    seconds = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for round_index in range(rounds):
        for name, fn in calls.items():
            per_call, _, cpu_block = timed(lambda fn=fn, name=name: seconds_per_call(jax, fn, steps[name]))
            seconds[name].append(per_call)
            cpu[name].append(cpu_block / (per_call * steps[name]))
        log(f"flops: round {round_index + 1}/{rounds} done")

    peak_rounds = [max(2.0 * n**3 / seconds[n][r] for n in matmuls) for r in range(rounds)]
    for n, (_, _, _, xla_flops) in matmuls.items():
        seconds_median = median(seconds[n])
        emit(
            {
                "kind": "matmul",
                "n": n,
                "flops": 2 * n**3,
                "xla_cost_analysis_flops": xla_flops,
                "seconds_median": sig(seconds_median),
                "seconds_rounds": [sig(s) for s in seconds[n]],
                "calls_per_round": steps[n],
                "flops_per_second": sig(2.0 * n**3 / seconds_median),
                "cpu_seconds_per_wall_second_median": sig(median(cpu[n]), 3),
            },
            records,
        )
    step_median = median(seconds["train_step"])
    fraction_rounds = (
        [step_flops / s / p for s, p in zip(seconds["train_step"], peak_rounds, strict=True)]
        if step_flops
        else []
    )
    best_n = max(matmuls, key=lambda n: 2.0 * n**3 / median(seconds[n]))
    emit(
        {
            "kind": "flops",
            "model": "TrainConfig.seed_study(): ips, 10 actions, 50-dim features, (100, 100, 100) elu, D = 100",
            "batch": batch_size,
            "compile_seconds": round(step_compile, 2),
            "flops_per_step": step_flops,
            "transcendentals_per_step": step_cost.get("transcendentals"),
            "bytes_accessed_per_step": step_cost.get("bytes accessed"),
            "seconds_per_step_median": sig(step_median),
            "seconds_per_step_rounds": [sig(s) for s in seconds["train_step"]],
            "steps_per_round": steps["train_step"],
            "cpu_seconds_per_wall_second_median": sig(median(cpu["train_step"]), 3),
            "achieved_flops_per_second": sig(step_flops / step_median) if step_flops else None,
            "matmul_peak_flops_per_second": sig(median(peak_rounds)),
            "matmul_peak_n": best_n,
            "fraction_of_matmul_peak_median": sig(median(fraction_rounds)),
            "fraction_of_matmul_peak_rounds": [sig(f) for f in fraction_rounds],
        },
        records,
    )


# --------------------------------------------------------------------------- train


class _TrainProblem:
    """A synthetic catalogue with planted rewards and a logging policy with exact propensities.

    ``A`` items with ``[A, d]`` standard normal features ``e_a``, contexts ``x ~ N(0, I_d)``;
    latent vectors ``u_x = x W_x``, ``v_a = e_a W_a`` (``[d, k]`` Gaussian maps) and the
    planted score ``s(x, a) = scale <u_x, v_a> / sqrt(k) + bias``; rewards are
    ``Bernoulli(q(x, a))`` with ``q = sigmoid(s)``. The logging policy explores uniformly
    with probability ``epsilon`` and otherwise draws from a softmax of ``beta s(x, a)`` over
    a fixed candidate set (items ``0 .. K - 1``, as a retrieval stage's popular items):

    .. math::

        \\pi_0(a \\mid x) = \\frac{\\epsilon}{A} + (1 - \\epsilon)\\, 1[a < K]\\,
        \\mathrm{softmax}_{b < K}(\\beta s(x, b))_a,

    so the logged propensity costs ``O(K)`` per row whatever ``A`` is. Every value on the test
    contexts (logging, uniform, best item, a learned softmax policy) is
    ``mean_x sum_a pi(a|x) q(x, a)``, computed exactly in chunks of contexts.
    """

    SCALE, BIAS, BETA = 2.0, -1.0, 1.0

    def __init__(self, jax, num_items: int, settings: dict):
        self.num_items = num_items
        self.dim, self.latent = settings["train_features"], settings["train_latent"]
        self.candidates = min(settings["train_candidates"], num_items)
        self.epsilon = settings["train_epsilon"]
        keys = jax.random.split(jax.random.key(11), 4)
        self.item_features = jax.random.normal(keys[0], (num_items, self.dim))
        self.w_context = jax.random.normal(keys[1], (self.dim, self.latent)) / self.dim**0.5
        w_item = jax.random.normal(keys[2], (self.dim, self.latent)) / self.dim**0.5
        self.item_latent = self.item_features @ w_item  # [A, k]
        self.key = keys[3]
        jax.block_until_ready((self.item_features, self.item_latent))

    def arrays(self) -> dict:
        """The planted model's arrays (arguments of the jitted value, never constants)."""
        return {
            "item_features": self.item_features,
            "item_latent": self.item_latent,
            "w_context": self.w_context,
        }

    def logs(self, jax, n: int, stream: int):
        """``n`` logged events of the logging policy (``stream`` picks independent draws)."""
        import jax.numpy as jnp

        from towerjax import LoggedData

        k_ctx, k_explore, k_uniform, k_candidate, k_reward = jax.random.split(
            jax.random.fold_in(self.key, stream), 5
        )
        context = jax.random.normal(k_ctx, (n, self.dim))
        u = context @ self.w_context
        logits = self.BETA * _planted(u, self.item_latent[: self.candidates])  # [n, K]
        explore = jax.random.bernoulli(k_explore, self.epsilon, (n,))
        uniform = jax.random.randint(k_uniform, (n,), 0, self.num_items)
        candidate = jax.random.categorical(k_candidate, logits)
        action = jnp.where(explore, uniform, candidate).astype(jnp.int32)
        in_set = action < self.candidates
        softmax = jax.nn.softmax(logits, axis=-1)
        chosen = jnp.take_along_axis(softmax, jnp.where(in_set, action, 0)[:, None], axis=1)[:, 0]
        pscore = self.epsilon / self.num_items + (1.0 - self.epsilon) * jnp.where(in_set, chosen, 0.0)
        q = jax.nn.sigmoid(_planted(u[:, None, :], self.item_latent[action][:, None, :])[:, 0, 0])
        reward = jax.random.bernoulli(k_reward, q).astype(jnp.float32)
        data = LoggedData(
            context=context, action_context=self.item_features, action=action, reward=reward, pscore=pscore
        )
        return jax.block_until_ready(data)

    def test_logs(self, jax, n: int):
        """``n`` test contexts (actions, rewards and propensities are placeholders: a run reads
        only the contexts, for its top-item share; no ``expected_reward``, which is ``[n, A]``)."""
        import jax.numpy as jnp

        from towerjax import LoggedData

        context = jax.random.normal(jax.random.fold_in(self.key, 99), (n, self.dim))
        zeros = jnp.zeros(n)
        return LoggedData(
            context=context,
            action_context=self.item_features,
            action=zeros.astype(jnp.int32),
            reward=zeros,
            pscore=jnp.ones(n),
        )

    def values(self, jax, context, model=None, params=None, temperature: float = 1.0) -> dict:
        """Exact test values ``mean_x sum_a pi(a|x) q(x, a)`` of the logging, uniform and
        best-item policies, and of ``model``'s softmax policy with ``params`` when given."""
        fn = jax.jit(_test_values, static_argnames=("model", "temperature", "candidates", "epsilon"))
        out = fn(
            params,
            context,
            self.arrays(),
            model=model,
            temperature=temperature,
            candidates=self.candidates,
            epsilon=self.epsilon,
        )
        return {name: float(value) for name, value in jax.device_get(out).items()}

    def write_parquet(self, directory: str, data, validation) -> dict:
        """The inputs of ``towerjax train --logs --items --validation``: ``logs.parquet`` and
        ``validation.parquet`` (``x0..``, ``item_id``, ``reward``, ``pscore``), ``items.parquet``
        (``item_id``, ``f0..``) and ``problem.json`` (the planted model's settings)."""
        import numpy as np
        import pandas as pd

        os.makedirs(directory, exist_ok=True)

        def events(logs):
            frame = pd.DataFrame(
                np.asarray(logs.context, np.float32), columns=[f"x{i}" for i in range(self.dim)]
            )
            frame["item_id"] = np.asarray(logs.action, np.int64)
            frame["reward"] = np.asarray(logs.reward, np.float32)
            frame["pscore"] = np.asarray(logs.pscore, np.float64)
            return frame

        items = pd.DataFrame(
            np.asarray(self.item_features, np.float32), columns=[f"f{i}" for i in range(self.dim)]
        )
        items.insert(0, "item_id", np.arange(self.num_items, dtype=np.int64))
        frames = {"logs": events(data), "validation": events(validation), "items": items}
        files = {}
        for name, frame in frames.items():
            path = os.path.join(directory, f"{name}.parquet")
            frame.to_parquet(path, index=False)
            files[name] = {"path": path, "rows": len(frame), "bytes": os.path.getsize(path)}
        with open(os.path.join(directory, "problem.json"), "w") as handle:
            json.dump(
                {
                    "generator": "benchmarks/scale.py _TrainProblem (key 11)",
                    "num_items": self.num_items,
                    "features": self.dim,
                    "latent": self.latent,
                    "candidates": self.candidates,
                    "epsilon": self.epsilon,
                    "scale": self.SCALE,
                    "bias": self.BIAS,
                    "beta": self.BETA,
                },
                handle,
                indent=2,
            )
        return files


def _planted(u, item_latent):
    """``[..., n, k], [..., m, k] -> [..., n, m]``: planted scores ``scale <u, v> / sqrt(k) + bias``."""
    import jax.numpy as jnp

    scale, bias = _TrainProblem.SCALE, _TrainProblem.BIAS
    return scale * (u @ jnp.swapaxes(item_latent, -1, -2)) / u.shape[-1] ** 0.5 + bias


def _test_values(params, context, arrays, *, model, temperature, candidates, epsilon):
    """The jitted body of :meth:`_TrainProblem.values`, in chunks of contexts."""
    import jax
    import jax.numpy as jnp

    from towerjax import log_policy
    from towerjax.batching import map_row_chunks, row_chunk

    num_items = arrays["item_latent"].shape[0]
    items = None if params is None else model.embed_actions(params, arrays["item_features"])

    def per_row(x):
        s = _planted(x @ arrays["w_context"], arrays["item_latent"])  # [c, A]
        q = jax.nn.sigmoid(s)
        logging = jax.nn.softmax(_TrainProblem.BETA * s[:, :candidates], axis=-1)
        out = {
            "uniform": jnp.mean(q, axis=-1),
            "logging": epsilon * jnp.mean(q, axis=-1)
            + (1.0 - epsilon) * jnp.sum(logging * q[:, :candidates], axis=-1),
            "best_item": jnp.max(q, axis=-1),
        }
        if items is not None:
            pi = jnp.exp(log_policy(model.embed_context(params, x) @ items.T, temperature))
            out["learned"] = jnp.sum(pi * q, axis=-1)
        return out

    out = map_row_chunks(per_row, context, row_chunk(context.shape[0], num_items))
    return {name: jnp.mean(value) for name, value in out.items()}


def _train_config(settings: dict):
    """The run the ``train`` section times: the library's defaults, a sampled softmax."""
    from towerjax.training import TrainConfig

    return TrainConfig(
        sampled_softmax=settings["train_num_samples"],
        proposal=settings["train_proposal"],
        batch_size=settings["train_batch"],
        epochs=settings["train_epochs"],
        learning_rate=settings["train_learning_rate"],
        evaluate_train=False,
        validation_fraction=0.0,  # validation logs of their own are passed
        # SNIPS only: DR's reward model would score every (validation row, item) pair each
        # epoch below VALIDATION_DR_PAIRS, i.e. at the small catalogue and not the large one.
        validation_dr=False,
    )


class _TrainSize:
    """One catalogue size: its problem, a compiled run per number of training rows, and the
    update step alone (``make_update_step`` on one batch), with their timings."""

    def __init__(self, jax, num_items: int, settings: dict, args):
        import jax.numpy as jnp

        from towerjax import Features, Table, item_proposal, popularity_log_q, uniform_log_q
        from towerjax.objectives import objective_from_name
        from towerjax.training import Batch, compile_seeds

        self.num_items = num_items
        self.config = config = _train_config(settings)
        self.problem = problem = _TrainProblem(jax, num_items, settings)
        rows = settings["train_rows"]
        everything = problem.logs(jax, max(rows), stream=0)
        self.validation = problem.logs(jax, settings["train_validation_rows"], stream=1)
        self.test = problem.test_logs(jax, settings["train_test_contexts"])
        # The run scores its test contexts against every item each epoch (for the top-item
        # share); the exact values are computed after it on all of them.
        run_test = self.test.take_rows(jnp.arange(settings["train_run_test_contexts"]))
        if args.write_logs and num_items == max(settings["train_items"]):
            self.files = problem.write_parquet(args.write_logs, everything, self.validation)
            log(f"train: wrote {self.files}")
        self.runners, self.first_run, self.seconds, self.cpu = {}, {}, {}, {}
        for n in rows:
            data = everything.take_rows(jnp.arange(n))
            runner = compile_seeds(config, seeds=1, data=data, test_data=run_test, validation=self.validation)
            start = time.perf_counter()
            self.result = jax.block_until_ready(runner.run())  # every run of it returns the same
            self.first_run[n] = time.perf_counter() - start
            self.runners[n], self.seconds[n], self.cpu[n] = runner, [], []
            log(
                f"train: A={num_items} n={n}: compiled in {runner.seconds_compile:.1f}s, "
                f"first run {self.first_run[n]:.1f}s"
            )
        self.memory = xla_memory(self.runners[max(rows)].compiled)
        # Other objectives on the larger logs: one run each, for the learned policy's value.
        self.others = []
        for options in settings["train_other_objectives"]:
            options = dict(options)
            other = dataclasses.replace(config, objective=objective_from_name(options.pop("name"), **options))
            runner = compile_seeds(
                other, seeds=1, data=everything, test_data=run_test, validation=self.validation
            )
            start = time.perf_counter()
            result = jax.block_until_ready(runner.run())
            self.others.append(
                {
                    "objective": other.objective.to_dict(),
                    "compile_seconds": round(runner.seconds_compile, 2),
                    "run_seconds": sig(time.perf_counter() - start),
                    "params": jax.tree.map(lambda a: a[0], result.params),
                    "selected_epoch": int(result.selected_epoch[0]),
                    "validation_snips": [round(float(v), 4) for v in result.validation["snips"][0]],
                }
            )
            log(f"train: A={num_items} {other.objective.name} {options}: trained")
            del runner
        # The update step alone, on the first batch of the logs: with the dense item
        # features, and with an item-id embedding table next to them (what towerjax train's
        # own-logs path builds by default; a dense Adam update touches all A rows every step).
        if config.proposal == "popularity":  # as make_train builds it
            log_q = popularity_log_q(jnp.bincount(everything.action, length=num_items))
        else:
            log_q = uniform_log_q(num_items)
        first = everything.take_rows(jnp.arange(config.batch_size))
        with_ids = dataclasses.replace(
            first,
            action_context=Features(
                dense=problem.item_features,
                ids={"item_id": jnp.arange(num_items, dtype=jnp.int32)},
                tables=(Table("item_id", num_items, settings["train_id_embedding_dim"]),),
            ),
        )
        mask, proposal = jnp.ones(config.batch_size), item_proposal(log_q)
        self.steps = {
            name: _StepAlone(jax, config, Batch(data=data, mask=mask, proposal=proposal), settings)
            for name, data in (("features", first), ("features_and_id_table", with_ids))
        }

    def run(self, jax, n: int) -> None:
        _, wall, cpu = timed(lambda: jax.block_until_ready(self.runners[n].run()))
        self.seconds[n].append(wall)
        self.cpu[n].append(cpu / wall)


class _StepAlone:
    """``make_update_step(config)`` compiled on one batch, timed in blocks of calls."""

    def __init__(self, jax, config, batch, settings: dict):
        from towerjax.features import feature_spec
        from towerjax.training import make_optimizer, make_update_step

        data = batch.data
        params = config.model.init(
            jax.random.key(1), feature_spec(data.context), feature_spec(data.action_context)
        )
        self.state = [params, make_optimizer(config).init(params)]
        self.batch, self.key = batch, jax.random.key(2)
        start = time.perf_counter()
        step = jax.jit(make_update_step(config), donate_argnums=(0, 1))
        self.step = step.lower(*self.state, batch, self.key).compile()
        self.compile_seconds = time.perf_counter() - start
        self.memory = xla_memory(self.step)
        seconds_per_call(jax, self.call, 2)  # warm-up
        self.steps_per_block = calls_per_block(seconds_per_call(jax, self.call, 1), settings["block_seconds"])
        self.seconds: list[float] = []

    def call(self):
        # One key throughout: the draws differ from a run's, their cost does not.
        self.state[0], self.state[1], metrics = self.step(self.state[0], self.state[1], self.batch, self.key)
        return self.state[0], metrics

    def time(self, jax) -> None:
        self.seconds.append(seconds_per_call(jax, self.call, self.steps_per_block))


def _train_child(args, settings: dict) -> int:
    """``--train-child A``: the ``train`` section's larger run at ``A`` items in a fresh process
    (problem, compile, one run, the exact test values); prints the peak RSS after each stage."""
    import jax
    import jax.numpy as jnp

    from towerjax.training import compile_seeds

    num_items = int(args.train_child)
    jax.block_until_ready(jnp.zeros(1))
    rss = {"rss_after_jax_start_bytes": max_rss_bytes()}
    config = _train_config(settings)
    problem = _TrainProblem(jax, num_items, settings)
    data = problem.logs(jax, max(settings["train_rows"]), stream=0)
    validation = problem.logs(jax, settings["train_validation_rows"], stream=1)
    test = problem.test_logs(jax, settings["train_test_contexts"])
    run_test = test.take_rows(jnp.arange(settings["train_run_test_contexts"]))
    rss["rss_after_data_bytes"] = max_rss_bytes()
    runner = compile_seeds(config, seeds=1, data=data, test_data=run_test, validation=validation)
    rss["rss_after_compile_bytes"] = max_rss_bytes()
    result = jax.block_until_ready(runner.run())
    rss["rss_after_run_bytes"] = max_rss_bytes()
    params = jax.tree.map(lambda a: a[0], result.params)
    problem.values(jax, test.context, config.model, params, config.temperature)
    rss["rss_peak_bytes"] = max_rss_bytes()
    print(json.dumps(rss), flush=True)
    return 0


def _forwarded(args) -> list[str]:
    """The options a child process of this script needs to see the same settings."""
    out = ["--quick"] if args.quick else []
    if args.rounds is not None:
        out += ["--rounds", str(args.rounds)]
    for item in args.set:
        out += ["--set", item]
    return out


def run_train(jax, args, settings: dict, records: list[dict]) -> None:
    from towerjax.batching import num_batches

    sizes, rows = settings["train_items"], sorted(settings["train_rows"])
    if len(rows) != 2:
        raise SystemExit(f"train_rows: expected two numbers of training rows, got {rows}")
    epochs = settings["train_epochs"]
    cases = [_TrainSize(jax, num_items, settings, args) for num_items in sizes]
    config = cases[0].config
    steps = {n: num_batches(n, config.batch_size) for n in rows}
    rounds = settings["train_rounds"] if args.rounds is None else args.rounds
    for round_index in range(rounds):
        for case in cases:
            for n in rows:
                case.run(jax, n)
            for step in case.steps.values():
                step.time(jax)
        log(f"train: round {round_index + 1}/{rounds} done")

    rss = {}
    if not args.no_rss:
        for num_items in sizes:
            command = [sys.executable, os.path.abspath(__file__), "--train-child", str(num_items)]
            try:
                rss[num_items] = child_json(command + _forwarded(args), timeout=600)[-1]
            except (subprocess.SubprocessError, ValueError, IndexError) as error:
                rss[num_items] = {"rss_error": repr(error)[:300]}
            log(f"train: RSS of A={num_items} measured")

    small, large = rows
    per_step = {}  # A -> per-round seconds per step, from the difference of the two runs
    for case in cases:
        per_step[case.num_items] = [
            (t_large - t_small) / (epochs * (steps[large] - steps[small]))
            for t_small, t_large in zip(case.seconds[small], case.seconds[large], strict=True)
        ]
        step = median(per_step[case.num_items])
        outside = [
            t - epochs * steps[large] * s
            for t, s in zip(case.seconds[large], per_step[case.num_items], strict=True)
        ]
        result = jax.device_get(case.result)
        params = jax.tree.map(lambda a: a[0], case.result.params)
        start = time.perf_counter()
        values = case.problem.values(jax, case.test.context, config.model, params, config.temperature)
        value_seconds = time.perf_counter() - start
        emit(
            {
                "kind": "train",
                "num_items": case.num_items,
                "item_features": case.problem.dim,
                "item_feature_bytes": int(case.problem.item_features.nbytes),
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
                if case is cases[0]
                else "as above",
                "logging": {
                    "epsilon": case.problem.epsilon,
                    "candidates": case.problem.candidates,
                    "beta": case.problem.BETA,
                },
                "training_rows": rows,
                "validation_rows": settings["train_validation_rows"],
                "test_contexts": settings["train_test_contexts"],
                "run_test_contexts": settings["train_run_test_contexts"],
                "steps_per_epoch": {str(n): steps[n] for n in rows},
                "compile_seconds": {str(n): round(r.seconds_compile, 2) for n, r in case.runners.items()},
                "first_run_seconds": {str(n): sig(s) for n, s in case.first_run.items()},
                "run_seconds_median": {str(n): sig(median(case.seconds[n])) for n in rows},
                "run_seconds_rounds": {str(n): [sig(s) for s in case.seconds[n]] for n in rows},
                "cpu_seconds_per_wall_second": {str(n): sig(median(case.cpu[n]), 3) for n in rows},
                "seconds_per_step_median": sig(step),
                "seconds_per_step_rounds": [sig(s) for s in per_step[case.num_items]],
                "steps_per_second": sig(1.0 / step) if step and step > 0 else None,
                "seconds_outside_steps_median": sig(median(outside)),
                "evaluation_seconds_per_epoch_estimate": sig(median(outside) / (epochs + 1)),
                "step_alone": {
                    name: {
                        "compile_seconds": round(step.compile_seconds, 2),
                        "seconds_median": sig(median(step.seconds)),
                        "seconds_rounds": [sig(s) for s in step.seconds],
                        "xla_peak_bytes": step.memory.get("xla_peak_bytes"),
                    }
                    for name, step in case.steps.items()
                },
                **case.memory,
                **rss.get(case.num_items, {}),
                "values": {k: round(v, 4) for k, v in values.items()},
                "value_seconds": sig(value_seconds),
                "other_objectives": [
                    {
                        **{k: v for k, v in other.items() if k != "params"},
                        "learned_value": round(
                            case.problem.values(
                                jax, case.test.context, config.model, other["params"], config.temperature
                            )["learned"],
                            4,
                        ),
                    }
                    for other in case.others
                ],
                "selected_epoch": int(result.selected_epoch[0]),
                "validation_snips": [round(float(v), 4) for v in result.validation["snips"][0]],
                "validation_snips_se": [round(float(v), 4) for v in result.validation["snips_se"][0]],
                "top_share": [round(float(v), 4) for v in result.top_share[0]],
                "loss": [sig(float(v)) for v in result.loss[0]],
                **({"files": case.files} if getattr(case, "files", None) else {}),
            },
            records,
        )
    largest, smallest = max(sizes), min(sizes)
    by_items = {c.num_items: c for c in cases}
    ratio_rounds = [b / s for b, s in zip(per_step[largest], per_step[smallest], strict=True)]
    alone_rounds = {
        name: [
            b / s
            for b, s in zip(
                by_items[largest].steps[name].seconds, by_items[smallest].steps[name].seconds, strict=True
            )
        ]
        for name in by_items[largest].steps
    }
    ratio = median(ratio_rounds)
    peak = rss.get(largest, {}).get("rss_peak_bytes")
    xla_peak = by_items[largest].memory.get("xla_peak_bytes")
    emit(
        {
            "kind": "train_target",
            "num_items": largest,
            "reference_num_items": smallest,
            "step_time_ratio_median": sig(ratio),
            "step_time_ratio_rounds": [sig(r) for r in ratio_rounds],
            "step_alone_time_ratio_median": {name: sig(median(r)) for name, r in alone_rounds.items()},
            "step_alone_time_ratio_rounds": {name: [sig(x) for x in r] for name, r in alone_rounds.items()},
            "step_time_target_ratio": 2.0,
            "step_time_target_met": None if ratio is None else bool(ratio <= 2.0),
            "rss_peak_bytes": peak,
            "xla_peak_bytes": xla_peak,
            "peak_target_bytes": int(4 * GB),
            "peak_target_met": None if peak is None else bool(peak < 4 * GB),
        },
        records,
    )


# --------------------------------------------------------------------------- dataparallel


def run_dataparallel(jax, args, settings: dict, records: list[dict]) -> None:
    from towerjax.synthetic import SyntheticProblem
    from towerjax.training import TrainConfig, compile_seeds

    counts = settings["dp_counts"]
    if jax.device_count() < max(counts) and args.devices is not None:
        raise SystemExit(f"dataparallel: needs {max(counts)} devices, --devices {args.devices} gives fewer")
    if jax.device_count() < max(counts):  # a fresh process with enough XLA CPU devices
        command = [sys.executable, os.path.abspath(__file__), "--only", "dataparallel"]
        command += ["--devices", str(max(counts)), *_forwarded(args)]
        # This process's device count is in XLA_FLAGS, which expose_cpu_cores never overrides.
        flags = os.environ.get("XLA_FLAGS", "").split()
        kept = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
        env = {**os.environ, "XLA_FLAGS": " ".join(kept)}
        log(f"dataparallel: {jax.device_count()} devices here; running in a child with {max(counts)}")
        for record in child_json(command, env=env):
            if record["kind"].startswith("dataparallel"):
                emit(record, records)
        return
    epochs, steps = settings["dp_epochs"], settings["dp_steps"]
    runners = {}  # (batch, k) -> compiled run
    for batch in settings["dp_batches"]:
        for k in counts:
            config = TrainConfig.seed_study(
                batch_size=batch, epochs=epochs, evaluate_train=False, data_parallel=k
            )
            problem = SyntheticProblem(n_rounds=batch * steps, n_test_rounds=100)
            runners[(batch, k)] = runner = compile_seeds(config, seeds=1, problem=problem)
            jax.block_until_ready(runner.run())  # warm-up
            log(f"dataparallel: batch {batch}, {k} device(s): compiled in {runner.seconds_compile:.1f}s")
    rounds = settings["dp_rounds"] if args.rounds is None else args.rounds
    seconds = {key: [] for key in runners}
    cpu = {key: [] for key in runners}
    for round_index in range(rounds):
        for key, runner in runners.items():
            _, elapsed, cpu_run = timed(lambda runner=runner: jax.block_until_ready(runner.run()))
            cpu[key].append(cpu_run / elapsed)
            seconds[key].append(elapsed / (epochs * steps))
        log(f"dataparallel: round {round_index + 1}/{rounds} done")
    for (batch, k), per_round in seconds.items():
        one = seconds[(batch, min(counts))]
        ratio = [s / o for s, o in zip(per_round, one, strict=True)]
        emit(
            {
                "kind": "dataparallel",
                "batch": batch,
                "data_parallel": k,
                "devices_in_process": jax.device_count(),
                "cpu_cores_available": len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else os.cpu_count(),
                "model": "TrainConfig.seed_study(): ips, 10 actions, 50-dim features, (100, 100, 100) elu, D = 100",
                "epochs": epochs,
                "steps_per_epoch": steps,
                "compile_seconds": round(runners[(batch, k)].seconds_compile, 2),
                "seconds_per_step_median": sig(median(per_round)),
                "seconds_per_step_rounds": [sig(s) for s in per_round],
                "events_per_second": sig(batch / median(per_round)),
                "step_time_over_one_device_median": sig(median(ratio)),
                "step_time_over_one_device_rounds": [sig(r) for r in ratio],
                "cpu_seconds_per_wall_second_median": sig(median(cpu[(batch, k)]), 3),
            },
            records,
        )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from towerjax.training import expose_cpu_cores

    expose_cpu_cores(args.devices)  # as the CLI does, before JAX starts its backend
    warnings.filterwarnings("ignore", message=".*donated buffers were not usable.*")
    if args.rss_child:
        return _rss_child(args)
    import jax

    settings = _settings(args.quick)
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in settings:
            raise SystemExit(f"--set: unknown setting {name!r}; known: {', '.join(settings)}")
        settings[name] = json.loads(value)
    if args.train_child:
        return _train_child(args, settings)
    records: list[dict] = []
    record = environment(jax)
    record.update({"quick": args.quick, "sections": args.sections, "settings": settings})
    emit(record, records)
    runners = {
        "items": run_items,
        "scoring": run_scoring,
        "seeds": run_seeds,
        "flops": run_flops,
        "train": run_train,
        "dataparallel": run_dataparallel,
    }
    for section in SECTIONS:
        if section in args.sections:
            log(f"{section}: start")
            start = time.perf_counter()
            runners[section](jax, args, settings, records)
            log(f"{section}: done in {time.perf_counter() - start:.0f}s")
    if args.json:
        write_records(args.json, records)
    log("all done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
