"""Command line: ``towerjax run`` (the main job), ``train``, ``evaluate``, ``recommend``, ``export``,
``study NAME`` and ``data``.

This package only parses flags and calls the library (your own logs: :mod:`towerjax.own_logs`).
``train``'s flags are built from the fields of the values they set (:mod:`towerjax.cli.flags`);
each study declares its own subcommand (:mod:`towerjax.studies`). Bad flags or values exit with
status 2 and one line naming the flag, never a traceback: the library raises
:class:`towerjax.checks.InputError` naming the field, and :func:`towerjax.cli.arguments.flag`
maps it back to the flag.
"""

from __future__ import annotations

import argparse
import functools
import sys

from towerjax import jsonio
from towerjax.checks import InputError
from towerjax.cli import flags
from towerjax.cli.arguments import Parser, check_out_dir, flag, subcommand
from towerjax.training import NonFiniteError, expose_cpu_cores, train_seeds
from towerjax.training.parallel import initialize_from_environment
from towerjax.training.summary import seeds_record, seeds_summary

__all__ = ["build_parser", "main"]

_say = functools.partial(print, flush=True)


def _train(args: argparse.Namespace) -> int:
    if args.logs is not None:
        return _train_own_logs(args)
    problem = flags.synthetic_problem(args)
    config = flags.train_config(args)
    problem.check_batch_size(config.batch_size)
    if args.json is not None:
        check_out_dir(args.subparser, "--json", args.json.parent)
    _say(f"training {config.objective.name} on {problem.behavior} logs, {args.seeds} seed(s) ...")
    result, timing = train_seeds(
        config,
        seeds=args.seeds,
        seed=args.seed,
        devices=args.devices,
        problem=problem,
        progress=sys.stderr.isatty(),
    )
    record = seeds_record(config, problem, result, timing, seeds=args.seeds, seed=args.seed)
    print(seeds_summary(record))
    if args.json is not None:
        args.json.write_text(jsonio.dumps(record, indent=2))
        print(f"  wrote {args.json}")
    return 0


def _train_own_logs(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    fit_arguments = flags.fit_arguments(args)
    if args.json is not None:
        check_out_dir(args.subparser, "--json", args.json.parent)
    result = own_logs.fit(
        args.logs, seeds=args.seeds, seed=args.seed, devices=args.devices, progress=_say, **fit_arguments
    )
    if args.json is not None:
        args.json.write_text(jsonio.dumps(result.report, indent=2))
        _say(f"wrote {args.json}")
    return 0


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


def _export(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    _say(f"wrote {own_logs.export(args.model, args.out, overwrite=args.overwrite)}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from towerjax import datasets
    from towerjax.datasets.obd_files import write_obd_files

    try:
        if args.name == "obd":
            path = datasets.fetch_obd(args.cache_dir)
            loaded = {}
            for policy in datasets.BEHAVIOR_POLICIES:
                loaded[policy] = datasets.load_obd(policy, "all", wheel=path)
                print(loaded[policy].summary())
            if args.export is not None:
                files = write_obd_files(args.export, loaded["bts"], loaded["random"])
                print(f"wrote {', '.join(str(p) for p in files.values())}")
        else:
            if args.export is not None:
                raise InputError("export", "is for obd only")
            path = datasets.fetch_movielens(args.cache_dir)
            print(datasets.load_movielens_100k(wheel=path).summary())
    except (datasets.FetchError, datasets.DatasetFileError) as err:
        print(f"towerjax data {args.name}: error: {err}", file=sys.stderr)
        return 1
    print(f"cached at {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``towerjax`` parser: each subcommand's flags (:mod:`towerjax.cli.flags`; the studies
    declare their own) and its handler."""
    from towerjax.studies import STUDIES, headline

    parser = Parser(prog="towerjax", description="Off-policy learning of two-tower policies in JAX.")
    commands = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    headline.add_parser(commands)
    flags.add_train_flags(
        subcommand(commands, "train", _train, help="train one configuration over several seeds")
    )
    flags.add_evaluate_flags(
        subcommand(
            commands, "evaluate", _evaluate, help="off-policy estimates of saved models on logs, side by side"
        )
    )
    flags.add_recommend_flags(
        subcommand(commands, "recommend", _recommend, help="top-k items of a saved model for each context")
    )
    flags.add_export_flags(
        subcommand(commands, "export", _export, help="write a saved model's serving files")
    )
    study = commands.add_parser("study", help="reproduce a published study")
    studies = study.add_subparsers(dest="study", parser_class=Parser, required=True, metavar="STUDY")
    for module in STUDIES:
        module.add_parser(studies)
    flags.add_data_flags(subcommand(commands, "data", _data, help="fetch a public dataset into the cache"))
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
        args.subparser.error(f"argument {flag(args.subparser, err.argument)}: {err.message}")
    except NonFiniteError as err:
        print(f"{args.subparser.prog}: error: {err}", file=sys.stderr)
        return 1
