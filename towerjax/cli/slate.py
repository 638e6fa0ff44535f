"""``towerjax train --logs slate.csv --slate``: a list policy from your own slate logs.

The flags of :func:`towerjax.workflow.train_slate.fit_slate` on ``train`` (``--slate``,
``--positions``, ``--marginal-pscore-column``, ``--iips-samples``), the automatic choice of that path
for logs with ``item_id_1`` and no ``item_id`` (one printed line says so), and the mapping of
``train``'s other flags: those list training uses (:data:`LIST_FLAGS`), and a one-line error for
each one it does not (sampled softmax, the reward model's folds, the search, ...), never silently
ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from towerjax import jsonio
from towerjax.checks import InputError
from towerjax.cli import flags
from towerjax.cli.arguments import check_output_flag, positive_int
from towerjax.list_objectives import LIST_OBJECTIVES
from towerjax.list_training import ListTrainConfig
from towerjax.objectives import OBJECTIVES
from towerjax.outputs import write_file

__all__ = ["LIST_FLAGS", "add_slate_flags", "slate_note", "train_slate", "wants_slate"]

LIST_FLAGS = (
    "batch_size",
    "epochs",
    "learning_rate",
    "weight_decay",
    "temperature",
    "hidden_sizes",
    "embedding_size",
)
"""``train``'s flags that set :class:`~towerjax.list_training.ListTrainConfig` fields of the same name."""

# Flags of train --logs that list training has no use for, and why (each is an error with --slate).
_NOT_FOR_SLATE = {
    "position_column": "a slate log has one row per list, with per-position columns",
    "select": "the last epoch is kept (each seed's held-out estimate chooses the seed)",
    "patience": "the last epoch is kept",
    "sampled_softmax": "the list policy's softmax runs over the whole catalogue",
    "proposal": "the list policy's softmax runs over the whole catalogue",
    "reward_folds": "only --objective cascade-dr fits a reward model",
    "validation_dr": "the list objectives use no reward model",
    "estimate_propensities": "the slate log's pscore_k columns are the propensities",
    "optimizer": "list training uses Adam with coupled L2 decay",
    "embedding_weight_decay": "list training decays every parameter at --weight-decay",
    "sparse_embeddings": "list training updates the id tables densely",
    "embedding_optimizer": "list training uses Adam for every parameter",
    "embedding_mode": "list training concatenates the id tables with the dense columns",
    "data_parallel": "list training runs each seed's batches on one device",
    "devices": "the seeds are vmapped on one device",
    "search_criterion": "--slate trains one configuration (no search yet)",
    "search_budget": "--slate trains one configuration (no search yet)",
    "search_objectives": "--slate trains one configuration (no search yet)",
}


def add_slate_flags(parser: argparse.ArgumentParser) -> None:
    """``train``'s slate flags (:func:`towerjax.workflow.train_slate.fit_slate`)."""
    default = ListTrainConfig()
    group = parser.add_argument_group(
        "slate logs (--logs with --slate, or automatic when item_id_1 is a column and item_id is not; "
        "towerjax.own_logs.fit_slate)",
        "one row per shown list: the context columns and, per position k = 1..K, item_id_k, reward_k and "
        "pscore_k (the logger's probability of the item at k given those above), optionally "
        "marginal_pscore_k "
        "(its probability of that item at k). It trains one configuration of a Plackett-Luce list policy "
        f"(--objective one of {', '.join(LIST_OBJECTIVES)}; default sniips with marginal columns, else "
        f"snrips) for --seeds seeds, keeps the seed with the best lower 95% bound of that estimate on "
        "held-out lists (--validation-fraction or --validation) and reports it beside the logging policy. "
        f"List-training defaults: temperature {default.temperature:g}, "
        f"learning rate {default.learning_rate:g}, "
        f"{default.epochs} epochs, batch {default.batch_size}, hidden sizes "
        f"{','.join(map(str, default.hidden_sizes))}, embedding size {default.embedding_size}.",
    )
    group.add_argument("--slate", action="store_true", help="the logs are slate logs (see above)")
    group.add_argument(
        "--positions", type=positive_int, default=None, help="K [default every item_id_k present]"
    )
    group.add_argument(
        "--marginal-pscore-column",
        default=None,
        help="the stem of the logger's position-marginal columns [default marginal_pscore]",
    )
    group.add_argument(
        "--iips-samples",
        type=positive_int,
        default=None,
        help="iips/sniips: sampled lists a row for the policy's position marginals [default exact when "
        "A!/(A-K)! is at most 5,000 lists, else 16]",
    )


def wants_slate(args: argparse.Namespace) -> bool:
    """``--slate``, or ``--logs`` that look like slate logs
    (:func:`~towerjax.workflow.train_slate.is_slate_log`)."""
    if args.slate:
        return True
    from towerjax.workflow.train_slate import is_slate_log

    return is_slate_log(args.logs, args.item_column or "item_id")


def slate_note(args: argparse.Namespace) -> str | None:
    """The one line printed when the slate path was chosen without ``--slate``."""
    if args.slate:
        return None
    stem = args.item_column or "item_id"
    return (
        f"{args.logs} has {stem}_1 and no {stem} column: training a list policy from slate logs "
        "(as --slate does)"
    )


def _check_flags(args: argparse.Namespace) -> None:
    """InputError naming the first flag given that list training does not use."""
    for name in flags.PROBLEM_FLAGS:
        if getattr(args, name) is not None:
            raise InputError(name, "describes the synthetic problem, not used with --logs")
    for name, why in _NOT_FOR_SLATE.items():
        if name == "reward_folds" and args.objective == "cascade-dr":
            continue
        if getattr(args, name, None) not in (None, False):
            raise InputError(name, f"not used with --slate: {why}")
    if args.search == "default":
        raise InputError("search", "--slate trains one configuration (no search over list objectives yet)")
    if args.preset != "defaults":
        raise InputError("preset", "is for single-action training; --slate uses ListTrainConfig's defaults")
    options = flags.given(args, _single_action_options())
    if options:
        raise InputError(
            next(iter(options)), "is an option of a single-action objective, not used with --slate"
        )
    if args.out is None:
        raise InputError("out", "expected a directory to save the model into (required with --logs)")
    if args.validation is not None and args.validation_fraction is not None:
        raise InputError("validation_fraction", "not used with --validation (the validation logs)")


def _single_action_options() -> list[str]:
    """The single-action objectives' option fields (flags of ``train``)."""
    return sorted({f.name for cls in OBJECTIVES.values() for f in dataclasses.fields(cls)})


def list_config(args: argparse.Namespace) -> ListTrainConfig | None:
    """The :class:`~towerjax.list_training.ListTrainConfig` of the flags given (its objective is
    ``--objective``, passed on its own), or ``None`` when none is."""
    fields = flags.given(args, LIST_FLAGS)
    if "hidden_sizes" in fields:
        fields["hidden_sizes"] = tuple(fields["hidden_sizes"])
    if args.iips_samples is not None:
        fields["iips_samples"] = args.iips_samples
    if args.reward_folds is not None:  # cascade-dr's reward model (_check_flags refuses it otherwise)
        fields["reward_model"] = dataclasses.replace(ListTrainConfig().reward_model, folds=args.reward_folds)
    return ListTrainConfig(**fields) if fields else None


def train_slate(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """``towerjax train --logs ... --slate``: :func:`~towerjax.workflow.train_slate.fit_slate` of
    the flags."""
    from towerjax.workflow.train_slate import fit_slate

    note = slate_note(args)
    if note is not None:
        say(f"note: {note}")
    _check_flags(args)
    if args.json is not None:
        check_output_flag(args.subparser, "--json", args.json, folder=False)
    config = list_config(args)
    columns = {
        name: getattr(args, name)
        for name in ("item_column", "reward_column", "pscore_column", "marginal_pscore_column")
        if getattr(args, name) is not None
    }
    result = fit_slate(
        args.logs,
        args.items,
        **columns,
        context_columns=args.context_columns,
        positions=args.positions,
        validation=args.validation,
        validation_fraction=0.2 if args.validation_fraction is None else args.validation_fraction,
        objective=args.objective,
        config=config,
        seeds=args.seeds,
        seed=args.seed,
        options=flags.encoding_options(args),
        out=args.out,
        overwrite=bool(args.overwrite),
        progress=say,
    )
    if args.json is not None:
        write_file(args.json, jsonio.dumps(result.report, indent=2), argument="json")
        say(f"wrote {args.json}")
    return 0
