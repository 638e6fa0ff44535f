"""The command line's flags: ``towerjax train``'s built from the fields of the values they set,
those values built back from the flags, and the flags of ``evaluate``, ``recommend``,
``export`` and ``data``.

``towerjax train --logs`` searches by default (:func:`search_mode`, :func:`search_value`):
``--search none`` trains one configuration, as do flags that set one configuration's own
settings (``--objective``, ``--learning-rate``, ``--entropy``, ...) given without ``--search``.

Each group of ``train``'s flags comes from one dataclass: the training settings
(:class:`~towerjax.training.TrainConfig`), the built-in synthetic problem
(:class:`~towerjax.synthetic.SyntheticProblem`), every objective's options
(:data:`~towerjax.objectives.OBJECTIVES`, help from each field's metadata) and the encoding of
your own logs (:class:`~towerjax.tables.EncodingOptions`, beside the arguments of
:func:`towerjax.own_logs.fit`). A field's flag is ``--`` and its name with dashes (a table below
may name another flag); its argument type follows the field's annotation (:func:`field_kwargs`)
unless the table narrows it, and its help shows the dataclass's default. Every such flag
defaults to ``None`` (unset): a value is built from the flags given, and the rest keep the
dataclass's defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

from towerjax.checks import InputError
from towerjax.cli.arguments import (
    add_seed_arguments,
    column_ints,
    default_text,
    fraction,
    integer,
    merge_column_ints,
    name_list,
    nonnegative_float,
    optional_pair,
    positive_float,
    positive_int,
    positive_int_list,
    probability,
)
from towerjax.evaluation import ESTIMATORS
from towerjax.list_objectives import LIST_OBJECTIVES
from towerjax.objectives import ALIASES, OBJECTIVES
from towerjax.synthetic import SyntheticProblem
from towerjax.tables import NUMERIC_STRINGS, EncodingOptions
from towerjax.towers import EMBEDDING_MODES
from towerjax.training import OPTIMIZERS, PROPOSALS, SELECTIONS, VALIDATION_DR_PAIRS, Search, TrainConfig
from towerjax.training.config import EMBEDDING_OPTIMIZERS
from towerjax.training.search import CRITERIA

__all__ = [
    "ENCODING_FLAGS",
    "FIT_FLAGS",
    "PRESETS",
    "PROBLEM_FLAGS",
    "TRAINING_FLAGS",
    "add_data_flags",
    "add_evaluate_flags",
    "add_export_flags",
    "add_field_flags",
    "add_recommend_flags",
    "add_train_flags",
    "encoding_options",
    "field_kwargs",
    "fit_arguments",
    "given",
    "objective_options",
    "search_mode",
    "search_note",
    "search_value",
    "synthetic_problem",
    "train_config",
]

PRESETS = ("defaults", "seed-study")
# TrainConfig fields that ``towerjax train`` sets: help, and choices or a narrower type.
TRAINING_FLAGS = {
    "batch_size": dict(help="events per update step"),
    "epochs": dict(help="passes over the logs"),
    "optimizer": dict(choices=OPTIMIZERS, help="adam: L2 decay coupled (PyTorch Adam); adamw: decoupled"),
    "learning_rate": dict(type=positive_float, help="optimiser step size"),
    "weight_decay": dict(help="L2 / decoupled weight decay"),
    "temperature": dict(type=positive_float, help="softmax temperature tau of the policy"),
    "validation_fraction": dict(
        type=fraction, help="share of the logs held out to validate each epoch by off-policy evaluation"
    ),
    "select": dict(
        choices=(*SELECTIONS, "none"),
        help="return the epoch with the best validation estimate (or its lower 95%% bound); none: the last",
    ),
    "patience": dict(help="stop after this many epochs without improvement"),
    "hidden_sizes": dict(help="hidden layer sizes of each tower, comma-separated"),
    "embedding_size": dict(help="embedding size D of both towers"),
    "embedding_weight_decay": dict(
        help="L2 / decoupled decay of the id embedding tables (none: --weight-decay)"
    ),
    "sparse_embeddings": dict(
        help="lazy updates of the id tables: a step moves only the rows its batch looks up and their "
        "optimiser moments (--no-sparse-embeddings: dense Adam on every row)"
    ),
    "embedding_optimizer": dict(
        choices=EMBEDDING_OPTIMIZERS,
        help="row-adagrad: one Adagrad accumulator per table row instead of Adam's two moments "
        "[default: the --optimizer of the other parameters]",
    ),
    "embedding_mode": dict(
        choices=EMBEDDING_MODES,
        help="id tables concatenated with the dense columns, or as wide as the first layer and added to it",
    ),
    "sampled_softmax": dict(
        help="train on a sampled softmax of this many items per step (log-Q corrected; large catalogues)"
    ),
    "proposal": dict(
        choices=PROPOSALS, help="item proposal of --sampled-softmax: uniform, or logged-item popularity"
    ),
    "data_parallel": dict(help="devices each run's minibatches are spread over (divides --batch-size)"),
    "validation_dr": dict(
        help="record the DR validation estimate every epoch (its reward model scores every validation row "
        "against every item) [default: when the validation rows x items are at most "
        f"{VALIDATION_DR_PAIRS:,}, or --select needs it]"
    ),
    "estimate_propensities": dict(
        action="store_true",
        help="ignore logged propensities; learn a behaviour head and use its probabilities",
    ),
}
# SyntheticProblem fields that ``towerjax train`` sets (without --logs).
PROBLEM_FLAGS = {
    "behavior": dict(choices=("uniform", "epsilon-greedy"), help="logging policy of the synthetic problem"),
    "epsilon": dict(type=probability, help="exploration rate of epsilon-greedy logging"),
    "n_rounds": dict(help="logged training events"),
    "n_test_rounds": dict(help="held-out test events"),
    "n_actions": dict(help="items"),
}
# EncodingOptions fields that ``towerjax train --logs`` sets.
ENCODING_FLAGS = {
    "numeric_strings": dict(
        choices=NUMERIC_STRINGS,
        help="a feature column of text that looks numeric: error, parse it as numbers, or embed its "
        "values as ids (reward and pscore are always read as numbers)",
    ),
    "categorical": dict(
        type=name_list,
        metavar="COL[,COL]",
        help="columns of numbers to embed as ids (an integer user_id); text and category columns are "
        "embedded ids anyway",
    ),
    "min_count": dict(
        help="the fewest training rows a context value needs for its own id; rarer, unseen and missing "
        "values share the out-of-vocabulary id 0, which rare values train for unseen ones"
    ),
    "hash_buckets": dict(
        flag="--hash",
        type=column_ints,
        action="append",
        metavar="COL=BUCKETS",
        help="hash a column's values (text or integer ids) into BUCKETS ids instead of a vocabulary, for "
        "unbounded ids (stable across processes); repeat or comma-separate for several",
    ),
    "embedding_dims": dict(
        flag="--embedding-dim",
        type=column_ints,
        action="append",
        metavar="COL=DIM",
        help="embedding width of a categorical column, or of --item-column for the item id; repeat or "
        "comma-separate [default min(32, round(6 * size ** 0.25))]",
    ),
    "item_id_embedding": dict(
        flag="--no-item-id-embedding",
        action="store_false",
        help="leave the item id out of the item tower (the --items table then needs feature columns)",
    ),
    "standardize": dict(action="store_true", help="standardise numeric features"),
}
# Arguments of towerjax.own_logs.fit that ``towerjax train --logs`` sets (unset: fit's defaults).
FIT_FLAGS = {
    "items": dict(
        type=Path,
        help="item table, .csv or .parquet: the id column and feature columns [default the distinct logged "
        "ids, each known by its embedded id]",
    ),
    "out": dict(type=Path, help="directory for the model, report.json and curves.png"),
    "item_column": dict(help="the logged item's id (also the item table's id column) [default item_id]"),
    "reward_column": dict(help="the observed reward [default reward]"),
    "pscore_column": dict(help="the logging propensity pi_0(a|x) in (0, 1] [default pscore]"),
    "context_columns": dict(
        type=name_list, help="comma-separated context columns [default every other column of --logs]"
    ),
    "position_column": dict(help="slot of each row: left out of the contexts (rows pooled)"),
    "validation": dict(
        type=Path,
        help="validation logs (same columns) instead of rows held out of --logs (--validation-fraction of "
        "them for one configuration); the search splits them in halves, its selection and report rows",
    ),
    "overwrite": dict(
        action="store_true", help="replace the model in a non-empty --out (other files there are kept)"
    ),
}
SEARCH_MODES = ("default", "none")
# The search's flags (towerjax.training.Search's fields), and the field each sets.
SEARCH_FLAGS = {
    "search_criterion": "criterion",
    "search_budget": "budget_seconds",
    "search_objectives": "objectives",
}
# How an InputError naming a Search field is reported (the field's own name is no flag of train).
SEARCH_FIELD_FLAGS = {
    "criterion": "--search-criterion",
    "budget_seconds": "--search-budget",
    "objectives": "--search-objectives",
}
# Settings of one configuration, and the search's grid each fixes (with --search default) or
# None where the search refuses it; --preset seed-study and the objective's options besides.
ONE_CONFIGURATION_FLAGS = {
    "objective": "objectives",
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "temperature": "temperature",
    "select": None,
    "patience": None,
    "validation_fraction": None,
}


_SWITCHES = ("store_true", "store_false", argparse.BooleanOptionalAction)


def field_kwargs(annotation: typing.Any) -> dict:
    """argparse keywords for a field of type ``annotation`` (``None`` in a union is ignored):
    ``bool`` ``--x/--no-x``, ``int`` a positive integer, ``str`` text (the value's own check
    judges it), ``float`` a number >= 0, ``tuple[int, ...]`` comma-separated positive integers,
    anything else ``'LO,HI'`` or ``none`` (:func:`~towerjax.cli.arguments.optional_pair`)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = set(typing.get_args(annotation)) - {type(None)} if union else {annotation}
    if bool in kinds:
        return dict(action=argparse.BooleanOptionalAction)
    if int in kinds:
        return dict(type=positive_int)
    if str in kinds:
        return dict(type=str)
    if float in kinds:
        return dict(type=nonnegative_float)
    if tuple[int, ...] in kinds:
        return dict(type=positive_int_list)
    return dict(type=optional_pair)


def add_field_flags(
    parser: typing.Any, cls: type, flags: dict[str, dict], defaults: dict[str, typing.Any]
) -> None:
    """Adds to ``parser`` (a parser or an argument group) a flag (default ``None``: unset) for
    each field of dataclass ``cls`` named in ``flags``.

    ``flags`` maps a field to argparse keywords: ``help``, and optionally ``flag`` (the flag's
    name), ``choices``, ``type`` or ``action`` (otherwise :func:`field_kwargs` of the field's
    annotation). ``defaults`` maps a label to a value of ``cls`` whose field the help shows as
    the default (``{"": cls()}``; ``"seed-study": ...`` adds that value where it differs).
    """
    hints = typing.get_type_hints(cls)
    for name, spec in flags.items():
        kwargs = {key: value for key, value in spec.items() if key != "flag"}
        if not {"choices", "type", "action"} & set(kwargs):
            kwargs.update(field_kwargs(hints[name]))
        if "[default" not in kwargs["help"] and kwargs.get("action") not in _SWITCHES:
            shown = {label: default_text(getattr(value, name)) for label, value in defaults.items()}
            first = next(iter(shown.values()))
            extra = "".join(f"; {label}: {text}" for label, text in shown.items() if label and text != first)
            kwargs["help"] += f" [default {first}{extra}]"
        parser.add_argument(
            spec.get("flag", "--" + name.replace("_", "-")), dest=name, default=None, **kwargs
        )


def _objective_fields() -> dict[str, tuple[dataclasses.Field, type]]:
    """Every objective's fields by name, with the first objective that declares it."""
    fields: dict[str, tuple[dataclasses.Field, type]] = {}
    for cls in OBJECTIVES.values():
        for field in dataclasses.fields(cls):
            fields.setdefault(field.name, (field, cls))
    return fields


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """``towerjax train``'s flags of the training settings, the synthetic problem, the
    objectives' options and your own logs (:func:`train_config`, :func:`synthetic_problem`,
    :func:`fit_arguments`)."""
    defaults, seed = TrainConfig(), TrainConfig.seed_study()
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="defaults",
        help="the library's defaults (chosen by benchmarks/learning.py) or the seed study's settings; "
        "flags below override it",
    )
    parser.add_argument(
        "--objective",
        choices=(*OBJECTIVES, *(n for n in LIST_OBJECTIVES if n not in OBJECTIVES)),
        default=None,
        help=f"learning objective; with --logs, given without --search, it trains this one configuration "
        f"(with --search default, the search's only objective besides the baselines); with --slate, a list "
        f"objective ({', '.join(LIST_OBJECTIVES)}) [default {defaults.objective.name}]",
    )
    add_field_flags(parser, TrainConfig, TRAINING_FLAGS, {"": defaults, "seed-study": seed})
    parser.add_argument(
        "--reward-folds",
        type=positive_int,
        default=None,
        help="cross-fitting folds of the reward model (dr, sndr, switch-dr, dr-os, two-stage); 1 fits and "
        "predicts on the same rows (in-sample: biased toward DM) "
        f"[default {defaults.reward_model.folds}; seed-study: {seed.reward_model.folds}]",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.set_defaults(flags={"reward_model.folds": "--reward-folds", **SEARCH_FIELD_FLAGS})
    problem = parser.add_argument_group("the built-in synthetic problem (trained on without --logs)")
    add_field_flags(problem, SyntheticProblem, PROBLEM_FLAGS, {"": SyntheticProblem()})
    objectives = parser.add_argument_group("objective options (each lists its objectives and their defaults)")
    for name, (field, cls) in _objective_fields().items():
        users = ", ".join(
            f"{n}: {default_text(f.default)}"
            for n, c in OBJECTIVES.items()
            for f in dataclasses.fields(c)
            if f.name == name
        )
        objectives.add_argument(
            "--" + name.replace("_", "-"),
            default=None,
            help=f"{field.metadata.get('help', '')} [default {users}]",
            **field_kwargs(typing.get_type_hints(cls)[name]),
        )
    own = parser.add_argument_group(
        "your own logs (--logs trains on a file instead of the synthetic problem; towerjax.own_logs.fit)"
    )
    own.add_argument(
        "--logs", type=Path, default=None, help="events, .csv or .parquet: one row per logged event"
    )
    for name, spec in FIT_FLAGS.items():
        own.add_argument("--" + name.replace("_", "-"), dest=name, default=None, **spec)
    add_field_flags(own, EncodingOptions, ENCODING_FLAGS, {"": EncodingOptions()})
    add_search_flags(parser)
    add_seed_arguments(parser, seeds=1)


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """``--search`` and its settings (:class:`~towerjax.training.Search`), for ``--logs``."""
    default = Search()
    objectives = ",".join(o.name for o in default.objectives)
    group = parser.add_argument_group(
        "the search (--logs: the default)",
        "towerjax train --logs trains many candidates (objectives x learning rates x entropy bonuses or, for "
        "the regression ones, policy temperatures, with "
        "the naive and regression baselines), chooses one by the lower confidence bound of its estimate "
        "on held-out selection rows, and reports it on other held-out rows beside the logging policy, "
        "saying in one line whether it beats it. Flags that set one configuration (--objective, "
        "--preset seed-study, --learning-rate, --weight-decay, --temperature, --entropy and the other "
        "objective options, --select, --patience, --validation-fraction) given without --search train "
        "that configuration alone, as --search none does; with --search default, --objective, "
        "--learning-rate, --weight-decay, --temperature and --entropy fix that part of the search "
        "instead.",
    )
    group.add_argument(
        "--search",
        choices=SEARCH_MODES,
        default=None,
        help="default: search; none: train one configuration (as before the search) "
        "[default default, or none when a one-configuration flag is given]",
    )
    group.add_argument(
        "--search-criterion",
        choices=CRITERIA,
        default=None,
        help=f"the estimate candidates are chosen by, as its lower bound [default {default.criterion}]",
    )
    group.add_argument(
        "--search-budget",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop starting objectives once the search would run past this many seconds (the baselines "
        "run first, and the first always runs; the skipped objectives are named) [default no limit]",
    )
    group.add_argument(
        "--search-objectives",
        type=name_list,
        default=None,
        metavar="NAME[,NAME]",
        help=f"the objectives to search (names of --objective; naive and regression always join) "
        f"[default {objectives}]",
    )


def given(args: argparse.Namespace, flags: typing.Iterable[str]) -> dict[str, typing.Any]:
    """``{field: value}`` of the fields among ``flags`` whose flags were given (not ``None``)."""
    return {name: getattr(args, name) for name in flags if getattr(args, name) is not None}


def objective_name(args: argparse.Namespace) -> str:
    """``--objective``, or the default objective's name when it is not given; InputError for a list
    objective (they train on slate logs: ``--slate``)."""
    if args.objective is not None and args.objective not in OBJECTIVES:
        raise InputError(
            "objective", f"{args.objective!r} is a list objective: for slate logs (--logs with --slate)"
        )
    return args.objective or TrainConfig().objective.name


def objective_options(args: argparse.Namespace) -> dict[str, typing.Any]:
    """The options of ``--objective`` given as flags; InputError naming an option of another objective."""
    name_of = objective_name(args)
    own = {f.name for f in dataclasses.fields(OBJECTIVES[name_of])}
    options = given(args, _objective_fields())
    for name in options:
        if name not in own:
            raise InputError(name, f"not an option of the {name_of} objective")
    return {name: None if value == "none" else value for name, value in options.items()}


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of ``towerjax train``'s flags: ``--preset``'s settings with the
    flags given; InputError names a rejected field."""
    options = objective_options(args)
    name = objective_name(args)
    fields = given(args, TRAINING_FLAGS)
    if fields.get("select") == "none":
        fields["select"] = None
    base = TrainConfig.seed_study(objective=name) if args.preset == "seed-study" else TrainConfig()
    if base.objective.name == name:
        objective = dataclasses.replace(base.objective, **options)
    else:
        objective = OBJECTIVES[name](**options)
    reward_model = base.reward_model
    if args.reward_folds is not None:
        reward_model = dataclasses.replace(reward_model, folds=args.reward_folds)
    return dataclasses.replace(base, objective=objective, reward_model=reward_model, **fields)


def synthetic_problem(args: argparse.Namespace) -> SyntheticProblem:
    """The :class:`SyntheticProblem` of the flags given (the rest: its defaults); InputError
    naming a flag of your own logs (given without ``--logs``)."""
    for name in (*FIT_FLAGS, *ENCODING_FLAGS, *SEARCH_FLAGS):
        if getattr(args, name) is not None:
            raise InputError(name, "is for your own logs: pass --logs too")
    return SyntheticProblem(**given(args, PROBLEM_FLAGS))


def encoding_options(args: argparse.Namespace) -> EncodingOptions:
    """The :class:`EncodingOptions` of the flags given (repeated ``COL=N`` flags merged into one
    mapping; InputError naming the field for a column given twice)."""
    fields = given(args, ENCODING_FLAGS)
    for name in ("hash_buckets", "embedding_dims"):
        if name in fields:
            fields[name] = merge_column_ints(name, fields[name])
    return EncodingOptions(**fields)


def fit_arguments(args: argparse.Namespace) -> dict[str, typing.Any]:
    """Keyword arguments of :func:`towerjax.own_logs.fit` from ``towerjax train --logs``'s flags:
    with the search (:func:`search_mode`), ``search`` (:func:`search_value`) and a base
    ``config`` of the flags that set no searched setting; else ``search=None`` and the one
    configuration.

    Raises:
      InputError: naming a synthetic-problem flag (not used with ``--logs``), ``out`` when it
        is missing, ``validation_fraction`` given with ``validation``, or a flag of the search
        that does not fit (:func:`search_value`).
    """
    for name in PROBLEM_FLAGS:
        if getattr(args, name) is not None:
            raise InputError(name, "describes the synthetic problem, not used with --logs")
    if args.out is None:
        raise InputError("out", "expected a directory to save the model into (required with --logs)")
    if args.validation is not None and args.validation_fraction is not None:
        raise InputError("validation_fraction", "not used with --validation (the validation logs)")
    arguments = dict(given(args, FIT_FLAGS), options=encoding_options(args))
    if search_mode(args) == "none":
        extra = list(given(args, SEARCH_FLAGS))
        if extra:
            raise InputError(extra[0], "is a setting of the search, not used with --search none")
        return dict(arguments, config=train_config(args), search=None)
    from towerjax.workflow.train import SEARCHED_FIELDS  # the --logs path imports the workflow anyway

    search = search_value(args)
    config = dataclasses.replace(  # the base of the candidates: what the search does not set
        train_config(_without(args, (*ONE_CONFIGURATION_FLAGS, *_objective_fields()))),
        **{name: getattr(TrainConfig(), name) for name in SEARCHED_FIELDS},
    )
    return dict(arguments, config=config, search=search)


def _without(args: argparse.Namespace, names: typing.Iterable[str]) -> argparse.Namespace:
    """``args`` with the flags ``names`` unset (``None``)."""
    return argparse.Namespace(**{**vars(args), **dict.fromkeys(names)})


def one_configuration_flags(args: argparse.Namespace) -> list[str]:
    """The flags given that set one configuration's own settings (as typed: ``--objective``, ...)."""
    names = [
        name for name in (*ONE_CONFIGURATION_FLAGS, *_objective_fields()) if getattr(args, name) is not None
    ]
    out = ["--" + name.replace("_", "-") for name in names]
    if args.preset != "defaults":
        out.insert(0, f"--preset {args.preset}")
    return out


def search_mode(args: argparse.Namespace) -> str:
    """``"default"`` (search) or ``"none"`` (one configuration) for ``towerjax train --logs``:
    ``--search`` when given; else the search when a ``--search-*`` flag is given; else one
    configuration when a flag that sets one is given (:func:`one_configuration_flags`: existing
    commands keep their meaning); else the search."""
    if args.search is not None:
        return args.search
    if given(args, SEARCH_FLAGS):
        return "default"
    return "none" if one_configuration_flags(args) else "default"


def search_note(args: argparse.Namespace) -> str | None:
    """The one line ``towerjax train --logs`` prints when flags, not ``--search``, chose one
    configuration (``None`` otherwise)."""
    if args.search is not None or search_mode(args) == "default":
        return None
    named = ", ".join(one_configuration_flags(args))
    return (
        f"training one configuration ({named} given): --search default would instead search objectives, "
        "learning rates and entropy bonuses and report the chosen policy against the logging policy"
    )


def search_value(args: argparse.Namespace) -> Search:
    """The :class:`~towerjax.training.Search` of the flags: ``--search-*``, and the
    one-configuration flags that fix part of it (``--objective`` with its options: the only
    objective besides the baselines; ``--learning-rate``, ``--weight-decay``, ``--temperature``,
    ``--entropy``: a grid of one value).

    Raises:
      InputError: naming ``--select``, ``--patience`` or ``--validation-fraction`` (the search
        chooses epochs and holds out rows itself), an objective option without ``--objective``,
        ``--objective`` with ``--search-objectives``, an unknown name in ``--search-objectives``,
        or a value :class:`~towerjax.training.Search` rejects.
    """
    fields: dict[str, typing.Any] = {}
    for name, field in ONE_CONFIGURATION_FLAGS.items():
        value = getattr(args, name)
        if value is None or name == "objective":
            continue
        if field is None:
            raise InputError(
                name,
                "is a setting of one configuration: the search holds out its own selection and report rows "
                "and chooses each run's epoch by --search-criterion's lower bound; pass --search none to use it",
            )
        fields[field] = (value,)
    options = given(args, _objective_fields())
    if args.objective is not None:
        if args.search_objectives is not None:
            raise InputError(
                "objective", "names one configuration's objective; the search's are --search-objectives"
            )
        fields["objectives"] = (train_config(args).objective,)  # with its options
    else:
        for name in options:
            if name != "entropy":
                raise InputError(name, "is an option of --objective: with the search, give --objective too")
    if "entropy" in options:
        fields["entropy"] = (options["entropy"],)
    if args.search_objectives is not None:
        known = (*OBJECTIVES, *ALIASES)
        for name in args.search_objectives:
            if name not in known:
                raise InputError(
                    "search_objectives", f"expected names from {', '.join(OBJECTIVES)}, got {name!r}"
                )
        fields["objectives"] = tuple(args.search_objectives)
    for name, field in SEARCH_FLAGS.items():
        if name != "search_objectives" and getattr(args, name) is not None:
            fields[field] = getattr(args, name)
    return Search(**fields)


EVALUATE_ESTIMATORS = tuple(name for name in ESTIMATORS if name != "mips")
"""The estimators ``towerjax evaluate`` prints: every one of :data:`towerjax.evaluation.ESTIMATORS`
but ``mips``, which needs the logging policy's whole distribution (logs hold one propensity)."""


def add_evaluate_flags(parser: argparse.ArgumentParser) -> None:
    """``towerjax evaluate``: the arguments of :func:`towerjax.own_logs.evaluate`, ``--json`` and
    ``--plot``, and a description listing the estimators it prints."""
    parser.description = (
        "Off-policy estimates of saved models on logs. For each model it prints the estimators "
        f"{', '.join(EVALUATE_ESTIMATORS)} (Open Bandit Pipeline's names; ipw-ls only for rewards "
        "in [0, 1]), each with its value, 95% Wald and bootstrap intervals, the effective sample "
        "size and the largest importance weight; dm and the DR family use a reward model "
        "cross-fitted on these logs. --randomized adds the unbiased value; with several --model, "
        "each model minus the first for ipw, snipw and dr, paired on the same rows. Then 'the estimate' "
        "(the dr-os shrinkage with the smallest estimated MSE among those SLOPE admits, with its reason) and, for rewards in [0, 1], an "
        "empirical-Bernstein 95% lower bound. --slate evaluates the model's list policy on multi-position logs."
    )
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        help="a model directory (towerjax train --out); repeat it to compare models (each minus the first)",
    )
    parser.add_argument("--logs", type=Path, required=True, help="evaluation logs, .csv or .parquet")
    parser.add_argument(
        "--items", type=Path, default=None, help="item table to evaluate over [default the model's catalogue]"
    )
    parser.add_argument(
        "--item-column", default="item_id", help="the logged item's id (and the item table's)"
    )
    parser.add_argument("--reward-column", default="reward", help="the observed reward")
    parser.add_argument("--pscore-column", default="pscore", help="the logging propensity")
    parser.add_argument(
        "--randomized",
        action="store_true",
        help="the logs come from a uniform logging policy: add the unbiased value (pscore 1/A if no column)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the estimates here")
    parser.add_argument(
        "--plot", type=Path, default=None, help="plot each estimator with its interval (.png, .pdf, .svg)"
    )
    parser.add_argument("--seed", type=integer, default=0, help="key of the reward models and the bootstrap")
    parser.add_argument("--n-bootstrap", type=positive_int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--slate",
        action="store_true",
        help="multi-position logs: columns item_id_k, reward_k and pscore_k (k = 1..K; the logger's "
        "probability of the item at k given those above: sips, rips, their SN forms, cascade-dr with a "
        "position-aware reward model cross-fitted on the logs) and/or marginal_pscore_k (the logger's "
        "position marginal: iips, sniips, pseudo-inverse); estimates of the model's Plackett-Luce list policy",
    )
    parser.add_argument(
        "--positions",
        type=positive_int,
        default=None,
        help="with --slate: K [default every item_id_k present]",
    )
    parser.add_argument(
        "--marginal-pscore-column",
        default="marginal_pscore",
        help="with --slate: the stem of the logger's position-marginal columns (stem_1..stem_K)",
    )


def add_recommend_flags(parser: argparse.ArgumentParser) -> None:
    """``towerjax recommend``: the arguments of :func:`towerjax.own_logs.recommend`."""
    parser.add_argument("--model", type=Path, required=True, help="a model directory (towerjax train --out)")
    parser.add_argument("--contexts", type=Path, required=True, help="contexts, .csv or .parquet")
    parser.add_argument("--k", type=positive_int, required=True, help="items per context")
    parser.add_argument("--out", type=Path, required=True, help="output table, .csv or .parquet")
    parser.add_argument("--explore", action="store_true", help="Boltzmann slates drawn from the policy")
    parser.add_argument("--seed", type=integer, default=0, help="key of the --explore draws")
    parser.add_argument(
        "--keep-columns", type=name_list, default=(), help="context columns to copy into --out"
    )
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="add probability_j after each score_j: the policy's pi(a|x) of that item, the "
        "softmax of the scores over the whole catalogue at the model's temperature",
    )


def add_export_flags(parser: argparse.ArgumentParser) -> None:
    """``towerjax export``: the arguments of :func:`towerjax.own_logs.export`."""
    parser.add_argument("--model", type=Path, required=True, help="a model directory (towerjax train --out)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the serving files")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the export in a non-empty --out (other files are kept)",
    )


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """``towerjax data NAME``: the dataset, its cache and (OBD) the files to export."""
    parser.add_argument(
        "name",
        choices=("obd", "movielens"),
        help="obd: Open Bandit Dataset sample (obp 0.4.1 wheel); movielens: MovieLens-100K (recbole 1.2.1 wheel)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="[default $TOWERJAX_CACHE or ~/.cache/towerjax]"
    )
    parser.add_argument(
        "--export",
        type=Path,
        default=None,
        metavar="DIR",
        help="obd: also write bts.csv, random.csv, items.csv and README.txt here, "
        "for towerjax train / evaluate --logs",
    )
