"""Learning list policies from slate logs: the share of the logging-to-best gap each objective closes.

On the synthetic position-based slate problem at its defaults (:func:`towerjax.slate_synthetic.slate_problem`,
``key(0)``), each seed draws its own logs and initialisation; a two-tower Plackett-Luce list policy
is trained with each list objective (and the naive baseline) at :class:`towerjax.ListTrainConfig`'s
defaults, the seeds in one ``jax.jit(jax.vmap(train))``. Its exact value on a fixed set of evaluation
contexts (:func:`towerjax.slate_synthetic.exact_list_value`) is compared with the logging policy's and
the best lists' on the same contexts: ``gap_closed = (V(pi) - V(pi_0)) / (V(best) - V(pi_0))``, mean and
standard error over seeds; the deterministic top-K lists of the learned scores are reported beside it.
``cascade-dr`` cross-fits its position-aware reward model (:class:`towerjax.SlateRewardModel`, the
default :class:`towerjax.RewardModelConfig`, 2 folds over lists) on each seed's logs before the epochs.

    python benchmarks/list_learning.py                     # defaults, about 3 minutes on 2 busy cores
    python benchmarks/list_learning.py --seeds 10 --objectives sniips,naive
    python benchmarks/list_learning.py --objectives cascade-dr,snrips --logging-beta 1.0
    python benchmarks/list_learning.py --logging-beta 1 --temperature 1 --iips-samples 16   # sensitivity

One JSON line per objective on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.list_objectives import LIST_OBJECTIVES
from towerjax.list_training import ListTrainConfig, list_model, make_list_train
from towerjax.slate_synthetic import (
    best_list_value,
    exact_list_value,
    logging_scores,
    sample_contexts,
    sample_slate_logs,
    slate_problem,
    top_k_list_value,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-logs", type=int, default=5000)
    parser.add_argument("--n-eval", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=ListTrainConfig.epochs)
    parser.add_argument("--objectives", default=",".join(LIST_OBJECTIVES))
    parser.add_argument("--temperature", type=float, default=ListTrainConfig.temperature)
    parser.add_argument("--iips-samples", type=int, default=None, help="sampled marginals for iips/sniips")
    parser.add_argument("--logging-beta", type=float, default=None, help="the logger's inverse temperature")
    parser.add_argument(
        "--reward-epochs", type=int, default=None, help="cascade-dr: its reward model's epochs [default 10]"
    )
    args = parser.parse_args()

    options = {} if args.logging_beta is None else {"logging_beta": args.logging_beta}
    problem = slate_problem(jax.random.key(0), **options)
    context = sample_contexts(jax.random.key(1), problem, args.n_eval)
    v_log = float(exact_list_value(problem, context, logging_scores(problem, context)))
    v_best = float(best_list_value(problem, context))
    seed_keys = jax.random.split(jax.random.key(2), args.seeds)
    logs = jax.vmap(lambda key: sample_slate_logs(key, problem, args.n_logs))(seed_keys)
    train_keys = jax.vmap(lambda key: jax.random.fold_in(key, 1))(seed_keys)
    print(f"logging value {v_log:.4f}, best {v_best:.4f}, {args.seeds} seeds", file=sys.stderr)

    for name in args.objectives.split(","):
        config = ListTrainConfig(
            objective=name, epochs=args.epochs, temperature=args.temperature, iips_samples=args.iips_samples
        )
        if args.reward_epochs is not None:
            reward_model = dataclasses.replace(config.reward_model, epochs=args.reward_epochs)
            config = dataclasses.replace(config, reward_model=reward_model)
        model = list_model(config)
        start = time.perf_counter()
        params = jax.block_until_ready(
            jax.jit(jax.vmap(make_list_train(config, problem.item_features)))(train_keys, logs)
        )
        train_s = time.perf_counter() - start

        def values(p, config=config, model=model):
            scores = model.scores(p, context, problem.item_features)
            return (
                exact_list_value(problem, context, scores, config.temperature),
                top_k_list_value(problem, context, scores),
            )

        v_pl, v_top = (np.asarray(v) for v in jax.jit(lambda p: jax.lax.map(values, p))(params))
        gap = (v_pl - v_log) / (v_best - v_log)
        gap_top = (v_top - v_log) / (v_best - v_log)
        se = np.sqrt(1.0 / args.seeds)
        row = {
            "objective": name,
            "seeds": args.seeds,
            "n_logs": args.n_logs,
            "epochs": args.epochs,
            "temperature": config.temperature,
            "logging_beta": problem.logging_beta,
            "iips_samples": args.iips_samples if name in ("iips", "sniips") else None,
            "reward_model": dataclasses.asdict(config.reward_model) if name == "cascade-dr" else None,
            "logging_value": round(v_log, 5),
            "best_value": round(v_best, 5),
            "value_mean": round(float(v_pl.mean()), 5),
            "gap_closed_mean": round(float(gap.mean()), 4),
            "gap_closed_se": round(float(gap.std(ddof=1) * se) if args.seeds > 1 else float("nan"), 4),
            "gap_closed_top_k_mean": round(float(gap_top.mean()), 4),
            "gap_closed_top_k_se": round(
                float(gap_top.std(ddof=1) * se) if args.seeds > 1 else float("nan"), 4
            ),
            "gap_closed_per_seed": [round(float(g), 3) for g in gap],
            "train_s_all_seeds": round(train_s, 1),
        }
        print(json.dumps(row), flush=True)
        print(
            f"{name}: {row['gap_closed_mean']:.3f} ± {row['gap_closed_se']:.3f} ({train_s:.0f} s)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    jnp.zeros(())  # start the backend before timing
    main()
