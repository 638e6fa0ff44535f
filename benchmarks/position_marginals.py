"""Cost of the IIPS position-row gradient at OBD's size (A = 80 items, K = 3 slots): exact or sampled marginals.

``position_row_loss("iips", ...)``'s gradient on a batch of ``B`` position rows (a third per slot) with

- ``exact``: the exact position marginals summed over the ``A^(K-1)`` prefixes
  (:func:`towerjax.list_policy.prefix_position_marginals`, ``[B, A, A]``);
- ``sampled-S``: the Monte-Carlo marginals of :func:`towerjax.list_objectives.logged_position_marginals`
  from ``S`` Plackett-Luce lists a row;
- ``softmax``: the first slot's softmax only (the single-slot IPS gradient), for scale.

Enumerating every list (:func:`towerjax.list_policy.exact_position_marginals`) would need
``80 * 79 * 78 = 492,960`` lists a row and is not run. Each variant is jitted and compiled first
(compile time reported separately); then ``--rounds`` interleaved rounds time each once
(``block_until_ready``), and the medians and their ratio to ``exact`` are printed as JSON lines on
stdout (progress on stderr). Timings on a shared machine are noisy: compare ratios from one run.

    python benchmarks/position_marginals.py [--batch 100] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.position_rows import position_row_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--items", type=int, default=80)
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    b, a, k = args.batch, args.items, args.slots
    key = jax.random.key(0)
    scores = jax.random.normal(key, (b, a))
    item = jax.random.randint(jax.random.key(1), (b,), 0, a)
    slot = jnp.arange(b) % k
    reward = (jax.random.uniform(jax.random.key(2), (b,)) < 0.1).astype(jnp.float32)
    pscore = jnp.full(b, 1 / a)

    def iips(s, sample_key=None, n_samples=1):
        return position_row_loss(
            "iips", s, item, slot, reward, pscore, n_slots=k, key=sample_key, n_samples=n_samples
        )

    variants = {
        "exact": (jax.jit(jax.grad(iips)), (scores,)),
        "sampled-16": (jax.jit(jax.grad(lambda s, q: iips(s, q, 16))), (scores, key)),
        "sampled-64": (jax.jit(jax.grad(lambda s, q: iips(s, q, 64))), (scores, key)),
        "softmax": (
            jax.jit(
                jax.grad(lambda s: -jnp.mean(reward / pscore * jax.nn.log_softmax(s)[jnp.arange(b), item]))
            ),
            (scores,),
        ),
    }
    compile_s = {}
    for name, (fn, fn_args) in variants.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*fn_args))
        compile_s[name] = time.perf_counter() - start
        print(f"compiled {name} in {compile_s[name]:.2f}s", file=sys.stderr, flush=True)
    times = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (fn, fn_args) in variants.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*fn_args))
            times[name].append(time.perf_counter() - start)
        if (r + 1) % 10 == 0:
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    exact = float(np.median(times["exact"]))
    for name, values in times.items():
        median = float(np.median(values))
        print(
            json.dumps(
                {
                    "variant": name,
                    "batch": b,
                    "items": a,
                    "slots": k,
                    "compile_s": round(compile_s[name], 3),
                    "median_ms": round(1e3 * median, 3),
                    "ratio_to_exact": round(median / exact, 3),
                    "rounds": args.rounds,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
