"""Command line: ``towerjax run`` (the main job), ``train``, ``study NAME`` and ``data``.

This module only parses flags and calls the library. The objectives' flags come from their
fields (:mod:`towerjax.objectives`); each study declares its own subcommand
(:mod:`towerjax.studies`). Bad flags or values exit with status 2 and one line naming the
flag, never a traceback: the library raises :class:`towerjax.checks.InputError` naming the
field, and :func:`towerjax.arguments.flag` maps it back to the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

from towerjax import arguments, jsonio
from towerjax.arguments import Parser, add_seed_arguments, check_out_dir, subcommand
from towerjax.checks import InputError
from towerjax.objectives import OBJECTIVES
from towerjax.studies import STUDIES, headline
from towerjax.train import OPTIMIZERS, NonFiniteError, TrainConfig, expose_cpu_cores

# TrainConfig fields that ``towerjax train`` exposes, with their argument types.
_TRAIN_FIELDS = {
    "behavior": dict(choices=("uniform", "epsilon-greedy"), help="logging policy of the synthetic problem"),
    "epsilon": dict(type=arguments.probability, help="exploration rate of epsilon-greedy logging"),
    "n_rounds": dict(type=arguments.positive_int, help="logged training events"),
    "n_test_rounds": dict(type=arguments.positive_int, help="held-out test events"),
    "n_actions": dict(type=arguments.positive_int, help="items"),
    "batch_size": dict(type=arguments.positive_int, help="events per update step"),
    "epochs": dict(type=arguments.positive_int, help="passes over the logs"),
    "optimizer": dict(choices=OPTIMIZERS, help="adam: L2 decay coupled (PyTorch Adam); adamw: decoupled"),
    "learning_rate": dict(type=arguments.positive_float, help="optimiser step size"),
    "weight_decay": dict(type=arguments.nonnegative_float, help="L2 / decoupled weight decay"),
    "temperature": dict(type=arguments.positive_float, help="softmax temperature tau of the policy"),
}


def _objective_options() -> dict[str, dataclasses.Field]:
    """Every objective's fields by name (the first declaration of a shared name wins)."""
    options: dict[str, dataclasses.Field] = {}
    for cls in OBJECTIVES.values():
        for field in dataclasses.fields(cls):
            options.setdefault(field.name, field)
    return options


def _option_type(field: dataclasses.Field) -> dict:
    """argparse keywords for an objective field, from its annotation."""
    kind = typing.get_type_hints(next(c for c in OBJECTIVES.values() if field in dataclasses.fields(c)))[
        field.name
    ]
    args = set(typing.get_args(kind)) - {type(None)} if isinstance(kind, types.UnionType) else {kind}
    if bool in args:
        return dict(action=argparse.BooleanOptionalAction)
    if int in args:
        return dict(type=arguments.positive_int)
    if str in args:
        return dict(type=str)  # e.g. a number or a name; the objective checks it
    if float in args:
        return dict(type=arguments.nonnegative_float)
    return dict(type=arguments.optional_pair)


def _default_text(field: dataclasses.Field) -> str:
    value = field.default
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _add_train(commands) -> None:
    train = subcommand(commands, "train", _train, help="train one configuration over several seeds")
    defaults = TrainConfig()
    train.add_argument(
        "--objective", choices=tuple(OBJECTIVES), default=defaults.objective.name, help="learning objective"
    )
    for name, kwargs in _TRAIN_FIELDS.items():
        train.add_argument("--" + name.replace("_", "-"), default=getattr(defaults, name), **kwargs)
    train.add_argument(
        "--reward-folds",
        type=arguments.positive_int,
        default=defaults.reward_model.folds,
        help="cross-fitting folds of the reward model (dr, sndr, switch-dr, dr-os, two-stage); "
        "1 fits and predicts on the same rows (in-sample: biased toward DM)",
    )
    train.add_argument(
        "--estimate-propensities",
        action="store_true",
        help="ignore logged propensities; learn a behaviour head and use its probabilities",
    )
    group = train.add_argument_group("objective options (each lists its objectives and their defaults)")
    for name, field in _objective_options().items():
        users = ", ".join(
            f"{n}: {_default_text(f)}"
            for n, c in OBJECTIVES.items()
            for f in dataclasses.fields(c)
            if f.name == name
        )
        group.add_argument(
            "--" + name.replace("_", "-"),
            default=None,
            help=f"{field.metadata.get('help', '')} [default {users}]%(default).0s",
            **_option_type(field),
        )
    train.add_argument("--json", type=Path, default=None, help="write the results here")
    add_seed_arguments(train, seeds=1)
    train.set_defaults(flags={"reward_model.folds": "--reward-folds"})


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of ``towerjax train``'s flags; InputError names a rejected field."""
    cls = OBJECTIVES[args.objective]
    own = {f.name for f in dataclasses.fields(cls)}
    options = {}
    for name in _objective_options():
        value = getattr(args, name)
        if value is None:
            continue
        if name not in own:
            raise InputError(name, f"not an option of the {args.objective} objective")
        options[name] = None if value == "none" else value
    fields = {name: getattr(args, name) for name in _TRAIN_FIELDS}
    reward_model = dataclasses.replace(TrainConfig().reward_model, folds=args.reward_folds)
    return TrainConfig(
        objective=cls(**options),
        estimate_propensities=args.estimate_propensities,
        reward_model=reward_model,
        **fields,
    )


def _train(args: argparse.Namespace) -> int:
    from towerjax.evaluation import mean_se
    from towerjax.train import train_seeds

    config = _train_config(args)
    if args.json is not None:
        check_out_dir(args.subparser, "--json", args.json.parent)
    print(f"training {config.objective.name} on {config.behavior} logs, {args.seeds} seed(s) ...", flush=True)
    result, timing = train_seeds(config, seeds=args.seeds, seed=args.seed, devices=args.devices)
    payload = {
        "config": config.to_dict(),
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
        print(
            f"  {name:>15}: {mean:.4f}" + (f" ± {se:.4f}" if se == se else " (one seed: no standard error)")
        )
    print(
        f"  compile {timing['seconds_compile']:.1f}s, train {timing['seconds_train']:.1f}s "
        f"({timing['seed_steps'] / timing['seconds_train']:.0f} seed-steps/s on {timing['devices']} device(s))"
    )
    if args.json is not None:
        args.json.write_text(jsonio.dumps(payload, indent=2))
        print(f"  wrote {args.json}")
    return 0


def _add_data(commands) -> None:
    data = subcommand(commands, "data", _data, help="fetch a public dataset into the cache")
    data.add_argument(
        "name",
        choices=("obd", "movielens"),
        help="obd: Open Bandit Dataset sample (obp 0.4.1 wheel); movielens: MovieLens-100K (recbole 1.2.1 wheel)",
    )
    data.add_argument(
        "--cache-dir", type=Path, default=None, help="default: $TOWERJAX_CACHE or ~/.cache/towerjax"
    )


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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="towerjax", description="Off-policy learning of two-tower policies in JAX.")
    commands = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    headline.add_parser(commands)
    _add_train(commands)
    study = commands.add_parser("study", help="reproduce a published study")
    studies = study.add_subparsers(dest="study", parser_class=Parser, required=True, metavar="STUDY")
    for module in STUDIES:
        module.add_parser(studies)
    _add_data(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    expose_cpu_cores()  # before any JAX computation starts the backend
    try:
        return args.handler(args)
    except InputError as err:
        args.subparser.error(f"argument {arguments.flag(args.subparser, err.argument)}: {err.message}")
    except NonFiniteError as err:
        print(f"{args.subparser.prog}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
