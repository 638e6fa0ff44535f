"""Command line: ``towerjax run`` (the main job), ``train``, ``evaluate``, ``recommend``, ``export``,
``study NAME`` and ``data``.

This module only parses flags and calls the library (your own logs: :mod:`towerjax.own_logs`). The objectives' flags come from their
fields (:mod:`towerjax.objectives`); each study declares its own subcommand
(:mod:`towerjax.studies`). Bad flags or values exit with status 2 and one line naming the
flag, never a traceback: the library raises :class:`towerjax.checks.InputError` naming the
field, and :func:`towerjax.arguments.flag` maps it back to the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import types
import typing
from pathlib import Path

from towerjax import arguments, jsonio
from towerjax.adapter import CONTEXT_MIN_COUNT, NUMERIC_STRINGS
from towerjax.arguments import Parser, add_seed_arguments, check_out_dir, subcommand
from towerjax.checks import InputError
from towerjax.distributed import initialize_from_environment
from towerjax.objectives import OBJECTIVES
from towerjax.studies import STUDIES, headline
from towerjax.towers import EMBEDDING_MODES
from towerjax.train import OPTIMIZERS, PROPOSALS, SELECTIONS, NonFiniteError, TrainConfig, expose_cpu_cores

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
    "validation_fraction": dict(
        type=arguments.fraction,
        help="share of the logs held out to validate each epoch by off-policy evaluation",
    ),
    "select": dict(
        choices=(*SELECTIONS, "none"),
        help="return the epoch with the best validation estimate (or its lower 95%% bound); none: the last",
    ),
    "patience": dict(type=arguments.positive_int, help="stop after this many epochs without improvement"),
    "hidden_sizes": dict(
        type=arguments.positive_int_list, help="hidden layer sizes of each tower, comma-separated"
    ),
    "embedding_size": dict(type=arguments.positive_int, help="embedding size D of both towers"),
    "embedding_weight_decay": dict(
        type=arguments.nonnegative_float,
        help="L2 / decoupled decay of the id embedding tables (none: --weight-decay)",
    ),
    "embedding_mode": dict(
        choices=EMBEDDING_MODES,
        help="id tables concatenated with the dense columns, or as wide as the first layer and added to it",
    ),
    "sampled_softmax": dict(
        type=arguments.positive_int,
        help="train on a sampled softmax of this many items per step (log-Q corrected; large catalogues)",
    ),
    "proposal": dict(
        choices=PROPOSALS, help="item proposal of --sampled-softmax: uniform, or logged-item popularity"
    ),
    "data_parallel": dict(
        type=arguments.positive_int,
        help="devices each run's minibatches are spread over (divides --batch-size)",
    ),
}
PRESETS = ("defaults", "seed-study")
# TrainConfig fields of the synthetic problem: not used with --logs.
_SYNTHETIC_FIELDS = ("behavior", "epsilon", "n_rounds", "n_test_rounds", "n_actions")
# ``towerjax train`` flags for your own logs, with their defaults (None: unset).
_OWN_LOG_DEFAULTS = {
    "items": None,
    "out": None,
    "item_column": "item_id",
    "reward_column": "reward",
    "pscore_column": "pscore",
    "context_columns": None,
    "position_column": None,
    "validation": None,
    "categorical": (),
    "min_count": CONTEXT_MIN_COUNT,
    "hash_buckets": None,
    "embedding_dims": None,
    "item_id_embedding": True,
    "numeric_strings": "error",
    "standardize": False,
    "overwrite": False,
}
_say = functools.partial(print, flush=True)


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
    return _default_text_value(field.default)


def _default_text_value(value) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _add_train(commands) -> None:
    train = subcommand(commands, "train", _train, help="train one configuration over several seeds")
    defaults, seed = TrainConfig(), TrainConfig.seed_study()
    train.add_argument(
        "--preset",
        choices=PRESETS,
        default="defaults",
        help="the library's defaults (chosen by benchmarks/learning.py) or the seed study's settings; "
        "flags below override it",
    )
    train.add_argument(
        "--objective", choices=tuple(OBJECTIVES), default=defaults.objective.name, help="learning objective"
    )
    for name, kwargs in _TRAIN_FIELDS.items():
        shown = (_default_text_value(getattr(defaults, name)), _default_text_value(getattr(seed, name)))
        text = shown[0] if shown[0] == shown[1] else f"{shown[0]}; seed-study: {shown[1]}"
        train.add_argument(
            "--" + name.replace("_", "-"),
            default=None,
            **{**kwargs, "help": f"{kwargs['help']} [default {text}]%(default).0s"},
        )
    train.add_argument(
        "--reward-folds",
        type=arguments.positive_int,
        default=None,
        help="cross-fitting folds of the reward model (dr, sndr, switch-dr, dr-os, two-stage); "
        f"1 fits and predicts on the same rows (in-sample: biased toward DM) [default {defaults.reward_model.folds}; "
        f"seed-study: {seed.reward_model.folds}]%(default).0s",
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
    _add_own_log_arguments(train)
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
    fields = {name: getattr(args, name) for name in _TRAIN_FIELDS if getattr(args, name) is not None}
    if fields.get("select") == "none":
        fields["select"] = None
    base = TrainConfig.seed_study(objective=args.objective) if args.preset == "seed-study" else TrainConfig()
    objective = (
        dataclasses.replace(base.objective, **options)
        if base.objective.name == args.objective
        else cls(**options)
    )
    reward_model = base.reward_model
    if args.reward_folds is not None:
        reward_model = dataclasses.replace(reward_model, folds=args.reward_folds)
    return dataclasses.replace(
        base,
        objective=objective,
        estimate_propensities=args.estimate_propensities,
        reward_model=reward_model,
        **fields,
    )


def _add_own_log_arguments(train: argparse.ArgumentParser) -> None:
    own = train.add_argument_group(
        "your own logs (--logs trains on a file instead of the synthetic problem; towerjax.own_logs.fit)"
    )
    own.add_argument(
        "--logs", type=Path, default=None, help="events, .csv or .parquet: one row per logged event"
    )
    own.add_argument(
        "--items",
        type=Path,
        default=None,
        help="item table, .csv or .parquet: the id column and feature columns [default: the distinct logged ids, "
        "each known by its embedded id]",
    )
    own.add_argument(
        "--out", type=Path, default=None, help="directory for the model, report.json and curves.png"
    )
    for name, text in (
        ("item_column", "the logged item's id (also the item table's id column)"),
        ("reward_column", "the observed reward"),
        ("pscore_column", "the logging propensity pi_0(a|x) in (0, 1]"),
    ):
        own.add_argument(
            "--" + name.replace("_", "-"),
            default=None,
            help=f"{text} [default {_OWN_LOG_DEFAULTS[name]}]%(default).0s",
        )
    own.add_argument(
        "--context-columns",
        type=arguments.name_list,
        default=None,
        help="comma-separated context columns [default: every other column of --logs]%(default).0s",
    )
    own.add_argument(
        "--position-column", default=None, help="slot of each row: left out of the contexts (rows pooled)"
    )
    own.add_argument(
        "--validation",
        type=Path,
        default=None,
        help="validation logs (same columns) instead of holding out --validation-fraction of --logs",
    )
    own.add_argument(
        "--numeric-strings",
        choices=NUMERIC_STRINGS,
        default=None,
        help="a text column that looks numeric: error, parse it as numbers, or embed its values as ids "
        "[default error]%(default).0s",
    )
    own.add_argument(
        "--categorical",
        type=arguments.name_list,
        default=None,
        metavar="COL[,COL]",
        help="columns of numbers to embed as ids (an integer user_id); text and category columns are "
        "embedded ids anyway [default none]%(default).0s",
    )
    own.add_argument(
        "--min-count",
        type=arguments.positive_int,
        default=None,
        help="the fewest training rows a context value needs for its own id; rarer, unseen and missing "
        "values share the out-of-vocabulary id 0, which rare values train for unseen ones "
        f"[default {CONTEXT_MIN_COUNT}]%(default).0s",
    )
    own.add_argument(
        "--hash",
        dest="hash_buckets",
        type=arguments.column_ints,
        action="append",
        default=None,
        metavar="COL=BUCKETS",
        help="hash a column's values (text or integer ids) into BUCKETS ids instead of a vocabulary, for "
        "unbounded ids (stable across processes); repeat or comma-separate for several",
    )
    own.add_argument(
        "--embedding-dim",
        dest="embedding_dims",
        type=arguments.column_ints,
        action="append",
        default=None,
        metavar="COL=DIM",
        help="embedding width of a categorical column, or of --item-column for the item id; repeat or "
        "comma-separate [default min(32, round(6 * size ** 0.25))]%(default).0s",
    )
    own.add_argument(
        "--no-item-id-embedding",
        dest="item_id_embedding",
        action="store_false",
        default=None,
        help="leave the item id out of the item tower (the --items table then needs feature columns)",
    )
    own.add_argument("--standardize", action="store_true", default=None, help="standardise numeric features")
    own.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="write into a non-empty --out that holds no model",
    )


def _train(args: argparse.Namespace) -> int:
    from towerjax.evaluation import mean_se
    from towerjax.train import train_seeds

    if args.logs is not None:
        return _train_own_logs(args)
    for name in _OWN_LOG_DEFAULTS:
        if getattr(args, name) is not None:
            raise InputError(name, "is for your own logs: pass --logs too")
    config = _train_config(args)
    if args.json is not None:
        check_out_dir(args.subparser, "--json", args.json.parent)
    print(f"training {config.objective.name} on {config.behavior} logs, {args.seeds} seed(s) ...", flush=True)
    result, timing = train_seeds(
        config, seeds=args.seeds, seed=args.seed, devices=args.devices, progress=sys.stderr.isatty()
    )
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
        "selected_value": result.selected_value.tolist(),
        "selected_epoch": result.selected_epoch.tolist(),
        "top_share": result.top_share[:, -1].tolist(),
        "validation_curves": {k: v.tolist() for k, v in result.validation.items()},
    }
    names = ["initial_value", "behavior_value", "test_value", "optimal_value"]
    if config.select is not None:
        names.insert(3, "selected_value")
    for name in names:
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


def _train_own_logs(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    for name in _SYNTHETIC_FIELDS:
        if getattr(args, name) is not None:
            raise InputError(name, "describes the synthetic problem, not used with --logs")
    if args.out is None:
        raise InputError("out", "expected a directory to save the model into (required with --logs)")
    if args.validation is not None and args.validation_fraction is not None:
        raise InputError("validation_fraction", "not used with --validation (the validation logs)")
    if args.json is not None:
        check_out_dir(args.subparser, "--json", args.json.parent)
    options = {
        name: default if getattr(args, name) is None else getattr(args, name)
        for name, default in _OWN_LOG_DEFAULTS.items()
    }
    for name in ("hash_buckets", "embedding_dims"):  # repeated COL=N flags, one mapping
        if options[name] is not None:
            options[name] = arguments.merge_column_ints(name, options[name])
    result = own_logs.fit(
        args.logs,
        options.pop("items"),
        config=_train_config(args),
        seeds=args.seeds,
        seed=args.seed,
        devices=args.devices,
        progress=_say,
        **options,
    )
    if args.json is not None:
        args.json.write_text(jsonio.dumps(result.report, indent=2))
        _say(f"wrote {args.json}")
    return 0


def _add_evaluate(commands) -> None:
    evaluate = subcommand(
        commands, "evaluate", _evaluate, help="off-policy estimates of saved models on logs, side by side"
    )
    evaluate.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        help="a model directory (towerjax train --out); repeat it to compare models (each minus the first)",
    )
    evaluate.add_argument("--logs", type=Path, required=True, help="evaluation logs, .csv or .parquet")
    evaluate.add_argument(
        "--items",
        type=Path,
        default=None,
        help="item table to evaluate over [default: the model's catalogue]",
    )
    _add_log_columns(evaluate)
    evaluate.add_argument(
        "--randomized",
        action="store_true",
        help="the logs come from a uniform logging policy: add the unbiased value (pscore 1/A if no column)",
    )
    evaluate.add_argument("--json", type=Path, default=None, help="write the estimates here")
    evaluate.add_argument(
        "--plot", type=Path, default=None, help="plot each estimator with its interval (.png, .pdf, .svg)"
    )
    evaluate.add_argument(
        "--seed", type=arguments.integer, default=0, help="key of the reward models and the bootstrap"
    )
    evaluate.add_argument(
        "--n-bootstrap", type=arguments.positive_int, default=1000, help="bootstrap resamples"
    )


def _add_log_columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--item-column", default="item_id", help="the logged item's id (and the item table's)"
    )
    parser.add_argument("--reward-column", default="reward", help="the observed reward")
    parser.add_argument("--pscore-column", default="pscore", help="the logging propensity")


def _evaluate(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    for name, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            check_out_dir(args.subparser, name, path.parent)
    if args.plot is not None:
        own_logs.check_image_path(args.plot, argument="plot")
    evaluation = own_logs.evaluate(
        args.model,
        args.logs,
        items=args.items,
        item_column=args.item_column,
        reward_column=args.reward_column,
        pscore_column=args.pscore_column,
        randomized=args.randomized,
        seed=args.seed,
        n_bootstrap=args.n_bootstrap,
        progress=_say,
    )
    _say(evaluation.table())
    if args.json is not None:
        args.json.write_text(jsonio.dumps(evaluation.to_dict(), indent=2))
        _say(f"wrote {args.json}")
    if args.plot is not None:
        evaluation.plot(args.plot)
        _say(f"wrote {args.plot}")
    return 0


def _add_recommend(commands) -> None:
    recommend = subcommand(
        commands, "recommend", _recommend, help="top-k items of a saved model for each context"
    )
    recommend.add_argument(
        "--model", type=Path, required=True, help="a model directory (towerjax train --out)"
    )
    recommend.add_argument("--contexts", type=Path, required=True, help="contexts, .csv or .parquet")
    recommend.add_argument("--k", type=arguments.positive_int, required=True, help="items per context")
    recommend.add_argument("--out", type=Path, required=True, help="output table, .csv or .parquet")
    recommend.add_argument("--explore", action="store_true", help="Boltzmann slates drawn from the policy")
    recommend.add_argument("--seed", type=arguments.integer, default=0, help="key of the --explore draws")
    recommend.add_argument(
        "--keep-columns", type=arguments.name_list, default=(), help="context columns to copy into --out"
    )


def _recommend(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    check_out_dir(args.subparser, "--out", args.out.parent)
    own_logs.recommend(
        args.model,
        args.contexts,
        k=args.k,
        explore=args.explore,
        seed=args.seed,
        keep_columns=args.keep_columns,
        out=args.out,
        progress=_say,
    )
    return 0


def _add_export(commands) -> None:
    export = subcommand(commands, "export", _export, help="write a saved model's serving files")
    export.add_argument("--model", type=Path, required=True, help="a model directory (towerjax train --out)")
    export.add_argument("--out", type=Path, required=True, help="directory for the serving files")
    export.add_argument("--overwrite", action="store_true", help="write into a non-empty directory")


def _export(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    path = own_logs.export(args.model, args.out, overwrite=args.overwrite)
    _say(f"wrote {path}")
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
    data.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="obd: also write bts.csv, random.csv, items.csv and README.txt here, "
        "for towerjax train / evaluate --logs",
    )


def _data(args: argparse.Namespace) -> int:
    from towerjax import datasets

    try:
        if args.name == "obd":
            path = datasets.fetch_obd(args.cache_dir)
            loaded = {}
            for policy in datasets.BEHAVIOR_POLICIES:
                logs = loaded[policy] = datasets.load_obd(policy, "all", wheel=path)
                print(
                    f"obd {policy}/all: {logs.n_rounds} rows, {logs.n_actions} items, "
                    f"{logs.n_positions} positions, click rate {logs.click.mean():.4f}"
                )
            if args.export is not None:
                from towerjax.datasets.obd_files import write_obd_files

                files = write_obd_files(args.export, loaded["bts"], loaded["random"])
                print(f"wrote {', '.join(str(p) for p in files.values())}")
        else:
            if args.export is not None:
                raise InputError("export", "is for obd only")
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
    _add_evaluate(commands)
    _add_recommend(commands)
    _add_export(commands)
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
    try:  # several processes: TOWERJAX_COORDINATOR, TOWERJAX_NUM_PROCESSES, TOWERJAX_PROCESS_ID
        initialize_from_environment()
    except InputError as err:
        print(f"{parser.prog}: error: {err.argument}: {err.message}", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except InputError as err:
        args.subparser.error(f"argument {arguments.flag(args.subparser, err.argument)}: {err.message}")
    except NonFiniteError as err:
        print(f"{args.subparser.prog}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
