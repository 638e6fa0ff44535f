"""Command line: ``towerjax run`` (the main job), ``train``, ``evaluate``, ``recommend``, ``export``,
``study NAME`` and ``data``.

This package only parses flags and calls the library (your own logs: :mod:`towerjax.own_logs`).
``train``'s flags are built from the fields of the values they set (:mod:`towerjax.cli.flags`);
each study declares its own subcommand (:mod:`towerjax.studies`). Bad flags or values exit with
status 2 and one line naming the flag, never a traceback: the library raises
:class:`towerjax.checks.InputError` naming the field, and :func:`towerjax.cli.arguments.flag`
maps it back to the flag. Ctrl-C is one line saying where it stopped and what was kept, exit
status 130.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

from towerjax import jsonio
from towerjax.checks import InputError
from towerjax.cli import flags, slate
from towerjax.cli.arguments import Parser, check_output_flag, flag_text, input_error_text, subcommand
from towerjax.outputs import write_file
from towerjax.training import NonFiniteError, TrainingInterrupted, expose_cpu_cores, train_seeds
from towerjax.training.memory import check_run_memory
from towerjax.training.parallel import initialize_from_environment
from towerjax.training.seeds import SEEDS_PER_DEVICE_GROUP
from towerjax.training.summary import seeds_record, seeds_summary

__all__ = ["build_parser", "main"]

_say = functools.partial(print, flush=True)


def _train(args: argparse.Namespace) -> int:
    if args.logs is not None:
        if slate.wants_slate(args):
            return slate.train_slate(args, functools.partial(_progress_line, args.subparser))
        return _train_own_logs(args)
    for name in ("slate", "positions", "marginal_pscore_column", "iips_samples"):
        if getattr(args, name) not in (None, False):
            raise InputError(name, "is for slate logs: pass --logs too")
    problem = flags.synthetic_problem(args)
    config = flags.train_config(args)
    problem.check_batch_size(config.batch_size)
    check_run_memory(config, problem, runs=_runs_at_once(args))
    if args.json is not None:
        check_output_flag(args.subparser, "--json", args.json, folder=False)
    _say(f"training {config.objective.name} on {problem.behavior} logs, {args.seeds} seed(s) ...")
    result, timing = train_seeds(
        config,
        seeds=args.seeds,
        seed=args.seed,
        devices=args.devices,
        problem=problem,
        progress=True,
    )
    record = seeds_record(config, problem, result, timing, seeds=args.seeds, seed=args.seed)
    print(seeds_summary(record))
    if args.json is not None:
        write_file(args.json, jsonio.dumps(record, indent=2), argument="json")
        print(f"  wrote {args.json}")
    return 0


def _runs_at_once(args: argparse.Namespace) -> int:
    """At most how many of the seeds' runs hold their arrays at once: each device runs up to
    :data:`~towerjax.training.seeds.SEEDS_PER_DEVICE_GROUP` of them side by side."""
    import jax

    devices = args.devices or len(jax.local_devices())
    return min(args.seeds, SEEDS_PER_DEVICE_GROUP * devices)


def _train_own_logs(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    fit_arguments = flags.fit_arguments(args)
    if args.json is not None:
        check_output_flag(args.subparser, "--json", args.json, folder=False)
    note = flags.search_note(args)
    if note is not None:
        _say(f"note: {note}")
    result = own_logs.fit(
        args.logs,
        seeds=args.seeds,
        seed=args.seed,
        devices=args.devices,
        progress=functools.partial(_progress_line, args.subparser),
        **fit_arguments,
    )
    if args.json is not None:
        write_file(args.json, jsonio.dumps(result.report, indent=2), argument="json")
        _say(f"wrote {args.json}")
    return 0


def _progress_line(parser: argparse.ArgumentParser, line: str) -> None:
    """Prints a line of :func:`towerjax.own_logs.fit`'s progress; a note's settings, named as in
    Python (``categorical=['user_id']``), are shown as the flags (``--categorical user_id``).
    Other lines are data (file names, a search's candidate labels such as ``entropy=0.05``)
    and print as they are."""
    _say(flag_text(parser, line) if line.lstrip().startswith("note:") else line)


def _evaluate(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    for name, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            check_output_flag(args.subparser, name, path, folder=False)
    if args.plot is not None:
        own_logs.check_image_path(args.plot, argument="plot")
    if args.slate:
        return _evaluate_slate(args)
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
    return _write_evaluation(evaluation, args)


def _write_evaluation(evaluation, args: argparse.Namespace) -> int:
    """Prints an evaluation's table and writes its ``--json`` and ``--plot`` files; exit code 0."""
    _say(evaluation.table())
    if args.json is not None:
        write_file(args.json, jsonio.dumps(evaluation.to_dict(), indent=2), argument="json")
        _say(f"wrote {args.json}")
    if args.plot is not None:
        evaluation.plot(args.plot)
        _say(f"wrote {args.plot}")
    return 0


def _evaluate_slate(args: argparse.Namespace) -> int:
    """``towerjax evaluate --slate``: :func:`towerjax.workflow.evaluate_slate.evaluate_slate` of one model."""
    from towerjax.workflow.evaluate_slate import evaluate_slate

    if len(args.model) != 1 or args.items is not None or args.randomized:
        args.subparser.error("--slate takes one --model, and neither --items nor --randomized")
    evaluation = evaluate_slate(
        args.model[0],
        args.logs,
        item_column=args.item_column,
        reward_column=args.reward_column,
        pscore_column=args.pscore_column,
        marginal_pscore_column=args.marginal_pscore_column,
        positions=args.positions,
        seed=args.seed,
        n_bootstrap=args.n_bootstrap,
        progress=_say,
    )
    return _write_evaluation(evaluation, args)


def _recommend(args: argparse.Namespace) -> int:
    from towerjax import own_logs

    check_output_flag(args.subparser, "--out", args.out, folder=False)
    own_logs.recommend(
        args.model,
        args.contexts,
        k=args.k,
        explore=args.explore,
        seed=args.seed,
        keep_columns=args.keep_columns,
        probabilities=args.probabilities,
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
    train = subcommand(
        commands,
        "train",
        _train,
        help="train one configuration over several seeds; on --logs, search for the best policy they "
        "support (--search none: one configuration); on slate logs (--slate), a list policy",
    )
    flags.add_train_flags(train)
    slate.add_slate_flags(train)
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


def _interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The one line of a Ctrl-C: where training stopped and what was kept."""
    line = f"{args.subparser.prog}: {err if isinstance(err, TrainingInterrupted) else 'interrupted'}"
    out = getattr(args, "out", None)
    if isinstance(err, TrainingInterrupted) and args.command == "train":
        kept = out is not None and out.is_dir() and any(out.iterdir())
        line += f"; nothing saved ({out} keeps its previous model)" if kept else "; nothing saved"
    return line


def main(argv: list[str] | None = None) -> int:
    """Runs the ``towerjax`` command with ``argv`` (default ``sys.argv[1:]``); returns its exit status.

    Called as the command (``argv`` None), Ctrl-C ends the process at once after its line,
    with status 130: a compile Ctrl-C cut short may still be running in XLA's threads, and
    the interpreter's normal exit would wait for it (and can crash beside it).
    """
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
        status = args.handler(args)
    except InputError as err:
        args.subparser.error(input_error_text(args.subparser, err.argument, err.message))
    except NonFiniteError as err:
        print(f"{args.subparser.prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(_interrupted(args, err), file=sys.stderr)
        status = 130
    if status == 130 and argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return status
