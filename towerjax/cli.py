"""Command line: ``towerjax run`` (the main job), ``train`` (one configuration), ``study`` and ``data``.

Bad flags or values exit with status 2 and one line naming the flag, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from towerjax.train import OBJECTIVES, TrainConfig, expose_cpu_cores

BEHAVIORS = ("uniform", "epsilon-greedy")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def _add_common(parser: argparse.ArgumentParser, *, seeds: int) -> None:
    parser.add_argument("--seeds", type=_positive_int, default=seeds, help="independent runs, vmapped")
    parser.add_argument("--seed", type=_int, default=0, help="root random seed")
    parser.add_argument(
        "--devices",
        type=_positive_int,
        default=None,
        help="local devices to shard the seeds over (default: all; on CPU one per core)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="towerjax", description="Off-policy learning of two-tower policies in JAX.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)

    run = commands.add_parser("run", help="main job: IPS, DR and regression under two logging policies")
    run.add_argument("--out", type=Path, default=Path("towerjax-results"), help="output folder")
    run.add_argument("--epochs", type=_positive_int, default=10)
    run.add_argument("--n-rounds", type=_positive_int, default=15000)
    _add_common(run, seeds=8)
    run.set_defaults(subparser=run)

    study = commands.add_parser("study", help="reproduce a published study")
    studies = study.add_subparsers(dest="study", parser_class=_Parser, required=True)
    chen = studies.add_parser("chen", help="Chen et al. 2019 stateless simulations")
    chen.add_argument("--json", type=Path, default=None, help="write the results here")
    chen.add_argument("--seed", type=_int, default=0, help="root random seed")
    chen.add_argument("--steps", type=_positive_int, default=4000, help="optimiser steps per learner")
    chen.set_defaults(subparser=chen)

    obd = studies.add_parser(
        "obd", help="Open Bandit Dataset: learn from the bts logs, evaluate on the random logs"
    )
    obd.add_argument("--campaign", choices=("all", "men", "women"), default="all")
    obd.add_argument("--seeds", type=_positive_int, default=10, help="training seeds per learner")
    obd.add_argument("--seed", type=_int, default=0, help="root random seed")
    obd.add_argument("--epochs", type=_positive_int, default=10)
    obd.add_argument(
        "--learners",
        type=_name_list,
        default=None,
        help="comma-separated subset of ips,dr,snips,regression,naive",
    )
    obd.add_argument(
        "--positions",
        choices=("pooled", "separate"),
        default="pooled",
        help="one policy with a slot feature, or one per slot",
    )
    obd.add_argument(
        "--cap", type=_positive_float, default=10.0, help="importance-weight cap of ips, dr, snips"
    )
    obd.add_argument("--no-cap", action="store_true", help="no cap")
    obd.add_argument("--json", type=Path, default=None, help="write the results here")
    obd.set_defaults(subparser=obd)

    movielens = studies.add_parser(
        "movielens", help="MovieLens-100K two-stage study (Ma et al. 2020): CE, 1-IPS, 2-IPS generators"
    )
    movielens.add_argument("--seeds", type=_positive_int, default=10, help="seeds per method, vmapped")
    movielens.add_argument("--seed", type=_int, default=0, help="root random seed (fixes the environment)")
    movielens.add_argument("--quick", action="store_true", help="miniature sizes: a smoke test")
    movielens.add_argument("--json", type=Path, default=None, help="write the results here")
    movielens.set_defaults(subparser=movielens)

    blog = studies.add_parser(
        "blog", help="the seed study's four figures, many seeds per cell, resumable (same --out)"
    )
    blog.add_argument("--figure", choices=("1", "2", "3", "4", "all"), default="all")
    blog.add_argument("--seeds", type=_positive_int, default=12, help="independent runs per cell, vmapped")
    blog.add_argument("--seed", type=_int, default=0, help="root random seed")
    blog.add_argument("--epochs", type=_positive_int, default=None, help="default 100 (3 with --quick)")
    blog.add_argument("--out", type=Path, default=Path("towerjax-blog"), help="output folder (resumes)")
    blog.add_argument(
        "--quick", action="store_true", help="tiny grids and models: a smoke test of the pipeline"
    )
    blog.add_argument(
        "--values", type=_positive_int_list, default=None, help="comma-separated x values (one figure only)"
    )
    blog.add_argument("--no-progress", action="store_true", help="no progress bar")
    blog.set_defaults(subparser=blog)

    data = commands.add_parser(
        "data", help="fetch a public dataset into the cache (from the package registry)"
    )
    data.add_argument(
        "name",
        choices=("obd", "movielens"),
        help="obd: Open Bandit Dataset sample (obp 0.4.1 wheel); movielens: MovieLens-100K (recbole 1.2.1 wheel)",
    )
    data.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $TOWERJAX_CACHE or ~/.cache/towerjax"
    )
    data.set_defaults(subparser=data)

    train = commands.add_parser("train", help="train one configuration over several seeds")
    defaults = TrainConfig()
    train.add_argument("--objective", choices=OBJECTIVES, default=defaults.objective)
    train.add_argument("--behavior", choices=BEHAVIORS, default=defaults.behavior)
    train.add_argument("--epsilon", type=_probability, default=defaults.epsilon)
    train.add_argument("--n-rounds", type=_positive_int, default=defaults.n_rounds)
    train.add_argument("--n-test-rounds", type=_positive_int, default=defaults.n_test_rounds)
    train.add_argument("--n-actions", type=_positive_int, default=defaults.n_actions)
    train.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    train.add_argument("--epochs", type=_positive_int, default=defaults.epochs)
    train.add_argument("--learning-rate", type=_positive_float, default=defaults.learning_rate)
    train.add_argument("--temperature", type=_positive_float, default=defaults.temperature)
    train.add_argument(
        "--cap", type=_positive_float, default=None, help="cap min(w, C) on importance weights"
    )
    train.add_argument("--clip-min", type=_nonnegative_float, default=None, help="lower clip of the weights")
    train.add_argument("--clip-max", type=_positive_float, default=None, help="upper clip of the weights")
    train.add_argument(
        "--no-clip", action="store_true", help="no clipping, not even two-stage's default (0.01, 10)"
    )
    train.add_argument(
        "--self-normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="self-normalise the weights (default: yes for snips and two-stage, no otherwise)",
    )
    train.add_argument("--variance-penalty", type=_nonnegative_float, default=0.0, help="POEM lambda")
    train.add_argument(
        "--k", type=_positive_int, default=defaults.topk, help="slate size of --objective topk"
    )
    train.add_argument(
        "--candidates", type=_positive_int, default=defaults.candidates, help="two-stage: set size"
    )
    train.add_argument(
        "--num-samples", type=_positive_int, default=defaults.num_samples, help="two-stage: sets per event"
    )
    train.add_argument(
        "--alpha", type=_nonnegative_float, default=defaults.alpha, help="two-stage: other candidates' weight"
    )
    train.add_argument(
        "--estimate-propensities",
        action="store_true",
        help="ignore logged propensities; learn a behaviour head and use its probabilities",
    )
    train.add_argument("--json", type=Path, default=None, help="write the results here")
    _add_common(train, seeds=1)
    train.set_defaults(subparser=train)
    return parser


_FIELD_FLAGS = {"clip": "--clip-min/--clip-max", "topk": "--k", "self_normalize": "--no-self-normalize"}


def _flag(field: str) -> str:
    return _FIELD_FLAGS.get(field, "--" + field.replace("_", "-"))


def _config(parser: argparse.ArgumentParser, **fields) -> TrainConfig:
    """Builds the config, reporting a rejected value as an error on its flag."""
    try:
        return TrainConfig(**fields)
    except ValueError as err:
        field, _, reason = str(err).partition(": ")
        parser.error(f"argument {_flag(field)}: {reason}")


def _check_out_dir(parser: argparse.ArgumentParser, flag: str, path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".towerjax-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        parser.error(f"argument {flag}: cannot write to {str(path)!r} ({err.strerror or err})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = args.subparser  # errors in values are reported against the subcommand's flags
    expose_cpu_cores()  # before any JAX computation starts the backend

    if args.command == "data":
        return _data(args)

    if args.command == "study" and args.study == "obd":
        return _obd(sub, args)

    if args.command == "study" and args.study == "movielens":
        return _movielens(sub, args)

    if args.command == "study" and args.study == "blog":
        return _blog(sub, args)

    if args.command == "study":
        if args.json is not None:
            _check_out_dir(sub, "--json", args.json.parent)
        return _study(args)

    if args.command == "train":
        if (args.clip_min is None) != (args.clip_max is None):
            sub.error("argument --clip-min/--clip-max: give both bounds, or neither")
        clip = None if args.clip_min is None else (args.clip_min, args.clip_max)
        if args.no_clip:
            if clip is not None:
                sub.error("argument --no-clip: not allowed with --clip-min/--clip-max")
            clip = False
        config = _config(
            sub,
            objective=args.objective,
            behavior=args.behavior,
            epsilon=args.epsilon,
            n_rounds=args.n_rounds,
            n_test_rounds=args.n_test_rounds,
            n_actions=args.n_actions,
            batch_size=args.batch_size,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            temperature=args.temperature,
            cap=args.cap,
            clip=clip,
            self_normalize=args.self_normalize,
            variance_penalty=args.variance_penalty,
            topk=args.k,
            candidates=args.candidates,
            num_samples=args.num_samples,
            alpha=args.alpha,
            estimate_propensities=args.estimate_propensities,
        )
        if args.json is not None:
            _check_out_dir(sub, "--json", args.json.parent)
        return _train(config, args)

    config = _config(sub, n_rounds=args.n_rounds, epochs=args.epochs)
    _check_out_dir(sub, "--out", args.out)
    return _run(config, args)


def _train(config: TrainConfig, args: argparse.Namespace) -> int:
    from towerjax.headline import mean_se
    from towerjax.train import train_seeds

    print(f"training {config.objective} on {config.behavior} logs, {args.seeds} seed(s) ...", flush=True)
    result, timing = train_seeds(config, seeds=args.seeds, seed=args.seed, devices=args.devices)
    payload = {
        "config": config.to_dict(),
        "weight_options": config.weight_options(),
        "seeds": args.seeds,
        "seed": args.seed,
        **timing,
        "initial_value": result.initial_value.tolist(),
        "test_value": result.test_value[:, -1].tolist(),
        "train_value": result.train_value[:, -1].tolist(),
        "behavior_value": result.behavior_value.tolist(),
        "optimal_value": result.optimal_value.tolist(),
        "test_curve": result.test_value.tolist(),
        "loss_curve": result.loss.tolist(),
    }
    for name in ("initial_value", "behavior_value", "test_value", "optimal_value"):
        mean, se = mean_se(payload[name])
        print(f"  {name:>15}: {mean:.4f} ± {se:.4f}")
    print(
        f"  compile {timing['seconds_compile']:.1f}s, train {timing['seconds_train']:.1f}s "
        f"({timing['seed_steps'] / timing['seconds_train']:.0f} seed-steps/s on {timing['devices']} device(s))"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"  wrote {args.json}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from towerjax import datasets

    try:
        if args.name == "obd":
            path = datasets.fetch_obd(args.cache_dir)
            for policy in datasets.BEHAVIOR_POLICIES:
                logs = datasets.load_obd(policy, "all", wheel=path)
                print(
                    f"obd {policy}/all: {logs.n_rounds} rows, {logs.n_actions} items, "
                    f"{logs.n_positions} positions, click rate {logs.click.mean():.4f}"
                )
        else:
            path = datasets.fetch_movielens(args.cache_dir)
            ml = datasets.load_movielens_100k(wheel=path)
            print(f"movielens-100k: {ml.n_users} users, {ml.n_items} items, {ml.n_ratings} ratings")
    except (datasets.FetchError, datasets.DatasetFileError) as err:
        print(f"towerjax data {args.name}: error: {err}", file=sys.stderr)
        return 1
    print(f"cached at {path}")
    return 0


def _real_data_study(sub: argparse.ArgumentParser, args: argparse.Namespace, run, render, flags=None) -> int:
    """Runs a study on fetched data: bad options as one-line flag errors (exit 2), a missing
    or unreadable dataset as one line (exit 1), then the printed table and ``--json``."""
    from towerjax import datasets

    if args.json is not None:
        _check_out_dir(sub, "--json", args.json.parent)
    try:
        result = run(log=lambda line: print(line, flush=True))
    except (datasets.FetchError, datasets.DatasetFileError) as err:
        print(f"towerjax study {args.study}: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        field, _, reason = str(err).partition(": ")
        sub.error(f"argument {(flags or {}).get(field, '--' + field.replace('_', '-'))}: {reason}")
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def _obd(sub: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from towerjax.obd_study import OBD_LEARNERS, format_obd, run_obd_study

    def run(log):
        return run_obd_study(
            campaign=args.campaign,
            seeds=args.seeds,
            seed=args.seed,
            epochs=args.epochs,
            learners=OBD_LEARNERS if args.learners is None else tuple(args.learners),
            position_handling=args.positions,
            cap=None if args.no_cap else args.cap,
            log=log,
        )

    return _real_data_study(sub, args, run, format_obd, {"position_handling": "--positions"})


def _movielens(sub: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from towerjax.movielens_study import format_movielens, run_movielens_study

    def run(log):
        return run_movielens_study(seeds=args.seeds, seed=args.seed, miniature=args.quick, log=log)

    return _real_data_study(sub, args, run, format_movielens)


def _blog(sub: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from towerjax.blog_study import FIGURES, StudyOptions, run_blog_study

    figures = tuple(FIGURES) if args.figure == "all" else (int(args.figure),)
    try:
        options = StudyOptions(
            figures=figures,
            seeds=args.seeds,
            seed=args.seed,
            epochs=args.epochs,
            quick=args.quick,
            values=None if args.values is None else tuple(args.values),
        )
        options.cells()
    except ValueError as err:
        field, _, reason = str(err).partition(": ")
        sub.error(f"argument --{field}: {reason}")
    _check_out_dir(sub, "--out", args.out)
    try:
        run_blog_study(options, args.out, progress=not args.no_progress)
    except ValueError as err:  # a folder holding another study's rows
        field, _, reason = str(err).partition(": ")
        sub.error(f"argument --{field}: {reason}")
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cells are in {args.out / 'rows.csv'}; run the same command to resume")
        return 130
    names = ", ".join(f"figure{n}.png/.md" for n in figures)
    print(f"wrote {args.out / 'rows.csv'} and {names} in {args.out}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from towerjax.chen import format_chen, run_chen_study

    print("Chen et al. (2019) stateless simulations: softmax over free logits, logged by beta", flush=True)
    rows = run_chen_study(seed=args.seed, steps=args.steps)
    print(format_chen(rows))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"study": "chen", "seed": args.seed, "steps": args.steps, "rows": rows}, indent=2)
        )
        print(f"wrote {args.json}")
    return 0


def _run(config: TrainConfig, args: argparse.Namespace) -> int:
    from towerjax.headline import format_table, run_headline

    print(
        f"towerjax run: IPS, DR and regression learners x uniform and epsilon-greedy logging, "
        f"{args.seeds} seeds, {config.n_rounds} rounds, {config.epochs} epochs, batch {config.batch_size}",
        flush=True,
    )
    cells = run_headline(
        config, seeds=args.seeds, seed=args.seed, out=args.out, log=lambda s: print(s, flush=True)
    )
    print()
    print(format_table(cells))
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'results.csv'}, {args.out / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
