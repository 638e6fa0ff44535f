"""Training a list policy on your own slate logs (``towerjax train --logs slate.csv --slate``).

The logs hold one row per shown list of ``K`` items: the context columns and, per position
``k = 1..K``, ``item_id_k``, ``reward_k`` and ``pscore_k`` (the logger's conditional
``pi_0(a_k | x, a_1..a_{k-1})``; :mod:`towerjax.workflow.evaluate_slate` reads them), and optionally
``marginal_pscore_k`` (the logger's position marginal ``P_pi0(a_k at k | x)``). :func:`fit_slate` is
a recipe of named steps:

1. read the table and encode its contexts and the item catalogue exactly as
   :func:`~towerjax.workflow.fit.fit` does (:func:`towerjax.tables.logged_data_from_frame`, the same
   :class:`~towerjax.tables.EncodingOptions`; the catalogue is the item table, or every id in the lists);
2. read the lists, rewards and propensities with ``evaluate --slate``'s reader and checks;
3. hold out ``validation_fraction`` of the rows at random (:func:`towerjax.training.validation_rows`,
   the same rows for every seed, as ``fit``), or read validation logs;
4. train ``seeds`` Plackett-Luce list policies with a list objective
   (:data:`~towerjax.list_objectives.LIST_OBJECTIVES`, :class:`~towerjax.list_training.ListTrainConfig`;
   the seeds under one ``jax.vmap``, one compiled call per epoch so each epoch prints a line);
5. estimate each seed's policy on the held-out rows with the slate estimators
   (:func:`towerjax.evaluation.slate_estimates`) and keep the seed with the best lower 95% (Wald)
   bound of the criterion, SN-IIPS with marginal columns, else SNRIPS;
6. report it beside the logging policy's on-policy value ``mean_i sum_k r_ik`` and their paired
   difference with one plain verdict (better / not distinguishable / worse), and save it as a model
   (:mod:`towerjax.serving.store`) whose temperature is the list policy's, so ``evaluate --slate``,
   ``recommend`` (top-K) and ``export`` work on it unchanged.

One configuration is trained (no search over objectives or learning rates yet): the report says so.
The seed is chosen on the same held-out rows it is reported on, as ``fit``'s one configuration does:
with several seeds the kept estimate is a little optimistic, and the report says that too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.checks import InputError, check_positive_int
from towerjax.features import take
from towerjax.list_objectives import LIST_OBJECTIVES
from towerjax.list_training import ListTrainConfig
from towerjax.outputs import check_output
from towerjax.serving import SavedPolicy
from towerjax.slate_synthetic import SlateLogs
from towerjax.tables import (
    EncodingOptions,
    FrameEncoding,
    FrameValidationError,
    check_option_names,
    logged_data_from_frame,
    resolve_options,
)
from towerjax.training import validation_rows
from towerjax.workflow.evaluate_slate import (
    count_positions,
    marginal_pscore_columns,
    read_slate_lists,
    read_slate_marginals,
    slate_columns,
)
from towerjax.workflow.fit import check_item_ids, logged_item_table, read_items
from towerjax.workflow.io import (
    Progress,
    column_names,
    column_values,
    encode_contexts,
    frame_error,
    listed,
    object_column,
    plain_id,
    read_table,
    say_to,
    source_label,
)
from towerjax.workflow.report import reward_model_loss
from towerjax.workflow.slate_steps import (
    MAX_EXACT_LISTS,
    choose_seed,
    compare_to_logging,
    held_out_estimates,
    save_slate_fit,
    slate_report,
    slate_summary,
    train_list_seeds,
)

__all__ = ["TRAINABLE_LIST_OBJECTIVES", "SlateFitResult", "fit_slate", "is_slate_log"]

TRAINABLE_LIST_OBJECTIVES = ("sips", "snsips", "iips", "sniips", "rips", "snrips", "cascade-dr", "naive")
"""The list objectives :func:`fit_slate` trains (of :data:`~towerjax.list_objectives.LIST_OBJECTIVES`):
those whose inputs are the logs' propensities, and ``cascade-dr`` with its position-aware reward model
cross-fitted on the training lists."""

MARGINAL_OBJECTIVES = ("iips", "sniips")
"""The objectives that need the logger's position marginals (``marginal_pscore_k`` columns)."""

TRAINING_MARGINAL_SAMPLES = 16
"""``iips_samples`` set for ``iips``/``sniips`` training when the lists are too many to enumerate."""


@dataclasses.dataclass(frozen=True)
class SlateFitResult:
    """What :func:`fit_slate` returns.

    Attributes:
      policy: the kept seed's model (a :class:`~towerjax.serving.SavedPolicy` at the list policy's
        temperature; its top-``K`` items are the deterministic limit of the list policy).
      config: the :class:`~towerjax.list_training.ListTrainConfig` trained.
      params: every seed's parameters (leading ``[S]`` axis).
      chosen_seed: the kept seed's index in ``0..S-1``.
      report: what ``report.json`` holds (:meth:`summary` prints it).
      encoding: how the table's columns became features.
      directory: where the model was saved, or ``None``.
    """

    policy: SavedPolicy
    config: ListTrainConfig
    params: dict
    chosen_seed: int
    report: dict
    encoding: FrameEncoding
    directory: Path | None = None

    def summary(self) -> str:
        """The data, each seed's criterion, the kept policy beside the logging policy, the verdict."""
        return slate_summary(self.report)


def is_slate_log(logs: Any, item_column: Hashable = "item_id") -> bool:
    """Whether a table (path or table) is a slate log: ``{item_column}_1`` is a column and
    ``item_column`` is not. Reads only a file's header; ``False`` when it cannot be read."""
    names = _header(logs)
    return f"{item_column}_1" in names and str(item_column) not in names


def _header(logs: Any) -> set[str]:
    if isinstance(logs, str | os.PathLike):
        import pandas as pd

        path = str(logs).lower()
        try:
            if path.endswith((".csv", ".csv.gz")):
                return set(map(str, pd.read_csv(logs, nrows=0).columns))
            if path.endswith((".parquet", ".pq")):
                import pyarrow.parquet as pq

                return set(pq.read_schema(logs).names)
        except Exception:  # an unreadable file is reported by the path that reads it
            return set()
        return set()
    try:
        return set(map(str, column_names(logs)))
    except (AttributeError, TypeError):
        return set()


def fit_slate(
    logs: Any,
    items: Any = None,
    *,
    item_column: Hashable = "item_id",
    reward_column: Hashable = "reward",
    pscore_column: Hashable = "pscore",
    marginal_pscore_column: Hashable = "marginal_pscore",
    context_columns: Sequence[Hashable] | None = None,
    positions: int | None = None,
    validation: Any = None,
    validation_fraction: float = 0.2,
    objective: str | None = None,
    config: ListTrainConfig | None = None,
    seeds: int = 1,
    seed: int = 0,
    n_bootstrap: int = 1000,
    options: EncodingOptions | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress = None,
    **option_fields: Any,
) -> SlateFitResult:
    """Trains Plackett-Luce list policies on slate logs and keeps the seed the held-out rows support best.

    Args:
      logs: the slate logs (path or table): context columns and, per position ``k``,
        ``{item_column}_k``, ``{reward_column}_k``, ``{pscore_column}_k`` (conditional propensities)
        and optionally ``{marginal_pscore_column}_k`` (position marginals).
      items: the item table (path or table; its id in ``item_column``, features in the other
        columns), or ``None``: every id in the lists, each known by its embedded id (as ``fit``).
      item_column, reward_column, pscore_column, marginal_pscore_column: the per-position stems.
      context_columns: default every column that is not a per-position one.
      positions: ``K``; default every consecutive ``{item_column}_1, _2, ...``.
      validation: validation logs (same columns; contexts encoded with the training encoding), or
        ``None`` to hold out ``validation_fraction`` of ``logs`` at random (key ``seed``).
      validation_fraction: in ``(0, 1)``: the held-out share (``fit``'s
        :attr:`~towerjax.training.TrainConfig.validation_fraction` rule).
      objective: the list objective (:data:`~towerjax.list_objectives.LIST_OBJECTIVES`); default
        ``sniips`` when marginal columns are there, else ``snrips`` (the conditional ``pscore_k`` give
        the prefix propensities of ``rips``/``snrips`` and the list's of ``sips``/``snsips``).
      config: the other settings (:class:`~towerjax.list_training.ListTrainConfig`: towers, temperature,
        optimiser, epochs, batch); its ``objective`` left at the default (``objective`` sets it). The
        batch is at most the training rows.
      seeds: independent runs (initialisation and shuffles), vmapped.
      seed: root random seed (runs, split, bootstrap).
      n_bootstrap: bootstrap resamples of the kept policy's estimates.
      options, **option_fields: how the columns are encoded (:class:`~towerjax.tables.EncodingOptions`).
      out: a directory to save the model and ``report.json`` into (atomic, as ``fit``).
      overwrite: replace the model in a non-empty ``out``.
      progress: called with one line per step and epoch.

    Raises:
      InputError: naming ``logs`` (with the file, column and row), ``items``, ``validation``,
        ``objective`` (a list objective the columns cannot feed), ``positions``, ``out``, ...
    """
    say = say_to(progress)
    config = _check_config(config)
    seeds = check_positive_int("seeds", seeds)
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    if isinstance(validation_fraction, bool) or not 0.0 < validation_fraction < 1.0:
        raise InputError("validation_fraction", f"expected a value in (0, 1), got {validation_fraction}")
    check_option_names(option_fields, "fit_slate")
    options = resolve_options(options, option_fields)
    out_dir = None if out is None else check_output(out, argument="out", folder=True, overwrite=overwrite)
    stems = {"item": item_column, "reward": reward_column, "pscore": pscore_column}
    stems["marginal"] = marginal_pscore_column

    label = source_label(logs, "logs")
    frame = read_table(logs, argument="logs")
    k = (
        count_positions(frame, item_column, label, command="towerjax train --slate")
        if positions is None
        else check_positive_int("positions", positions)
    )
    columns = slate_columns(k, item_column, reward_column, pscore_column)
    marginal_columns = _marginal_columns(frame, marginal_pscore_column, k)
    contexts = _context_columns(frame, context_columns, stems)
    items_label = None if items is None else source_label(items, "items")
    item_table = _catalogue(items, frame, columns, item_column, items_label, label)
    say(f"read {label}: {len(frame[columns[0][0]])} lists of {k} items; contexts from {listed(contexts)}")
    data, encoding = _encode(
        frame, item_table, contexts, columns[0], item_column, options, label, items_label
    )
    check_item_ids(encoding.item_ids, item_column, argument="items" if items is not None else "logs")
    if k > len(encoding.item_ids):
        raise InputError(
            "positions", f"expected at most the catalogue's {len(encoding.item_ids)} items, got {k}"
        )
    say(f"items: {len(encoding.item_ids)} ({items_label or 'the distinct ids in the lists'})")
    logs_rows = _slate_rows(frame, data.context, encoding, columns, marginal_columns, label)

    has_marginals = marginal_columns is not None
    config, notes = _resolve_config(
        objective, config, has_marginals, len(encoding.item_ids), k, marginal_pscore_column
    )
    if config.objective == "cascade-dr":  # BCE fits rewards in [0, 1] only (as fit's reward model)
        model = config.reward_model
        loss = reward_model_loss(np.asarray(logs_rows.rewards), model.loss)
        config = dataclasses.replace(config, reward_model=dataclasses.replace(model, loss=loss))
    if validation is None:
        train_idx, held_idx = validation_rows(jax.random.key(seed), _n(logs_rows), validation_fraction)
        train_rows, held_rows = _take(logs_rows, train_idx), _take(logs_rows, held_idx)
        held_source = f"{validation_fraction:g} of the logs held out at random (seed {seed})"
    else:
        train_rows = logs_rows
        held_rows, held_source, unseen = _read_validation(validation, encoding, columns, marginal_columns)
        if unseen:
            notes.append(
                f"{unseen} validation list(s) had a context value not in the training vocabulary "
                "(out-of-vocabulary id 0)"
            )
    if config.batch_size > _n(train_rows):
        notes.append(
            f"batch_size {config.batch_size} is more than the {_n(train_rows)} training rows: "
            f"batch {_n(train_rows)}"
        )
        config = dataclasses.replace(config, batch_size=_n(train_rows))
    for note in notes:
        say(f"  note: {note}")
    say(f"validation: {_n(held_rows)} lists ({held_source})")

    criterion = "sniips" if marginal_columns is not None else "snrips"
    trained = train_list_seeds(
        config, data.action_context, train_rows, held_rows, seeds, seed, criterion, say
    )
    chosen, per_seed, chosen_terms = choose_seed(trained["terms"])
    params = jax.tree.map(lambda a: a[chosen], trained["params"])
    estimates = held_out_estimates(config, params, data.action_context, held_rows, seed, n_bootstrap)
    policy = SavedPolicy(
        config=saved_config(config),
        params=params,
        item_features=data.action_context,
        item_ids=list(encoding.item_ids),
        encoding=encoding,
    )
    report = slate_report(
        sources={"logs": label, "items": items_label, "validation": held_source},
        columns={
            "context": [str(c) for c in contexts],
            "positions": k,
            "per_position": [list(c) for c in columns],
            "marginal": None if marginal_columns is None else list(marginal_columns),
        },
        rows=(logs_rows, train_rows, held_rows),
        n_items=len(encoding.item_ids),
        config=config,
        seeds=seeds,
        seed=seed,
        trained=trained,
        selection=(criterion, per_seed, chosen),
        estimates=estimates,
        comparison=compare_to_logging(chosen_terms, held_rows, criterion),
        notes=notes,
    )
    for line in slate_summary(report).splitlines()[1:]:
        say(line)
    if out_dir is not None:
        save_slate_fit(out_dir, policy, report, overwrite)
        say(f"saved seed {chosen} to {out_dir} (model, report.json)")
    return SlateFitResult(policy, config, trained["params"], chosen, report, encoding, out_dir)


# --------------------------------------------------------------------------- reading


def _marginal_columns(frame: Any, stem: Hashable, k: int) -> list[str] | None:
    """``[{stem}_1..K]`` (:func:`~towerjax.workflow.evaluate_slate.marginal_pscore_columns`) when
    ``{stem}_1`` is a column, else ``None``; the reader then requires all ``K``."""
    names = marginal_pscore_columns(k, stem)
    return names if names[0] in set(map(str, column_names(frame))) else None


def _context_columns(frame: Any, context_columns: Any, stems: dict) -> list[Hashable]:
    """The context columns: given (checked), or every column that is not ``{stem}_k`` of a stem."""
    pattern = re.compile("^(" + "|".join(re.escape(str(s)) for s in stems.values()) + r")_\d+$")
    if context_columns is None:
        chosen = [c for c in column_names(frame) if not pattern.match(str(c))]
        if not chosen:
            raise InputError("context_columns", "the logs have no columns besides the per-position ones")
        return chosen
    if isinstance(context_columns, str | bytes):
        raise InputError("context_columns", f"expected a list of column names, got {context_columns!r}")
    chosen = list(context_columns)
    if not chosen:
        raise InputError("context_columns", "expected at least one column")
    present = column_names(frame)
    for c in chosen:
        if c not in present:
            raise InputError(
                "context_columns", f"column {c!r} is not in the logs (columns: {listed(present)})"
            )
        if pattern.match(str(c)):
            raise InputError("context_columns", f"{c!r} is a per-position column")
    return chosen


def _catalogue(items, frame, columns, item_column, items_label, label) -> Any:
    """The item table: ``items`` (checked for ``item_column``, and every listed id in it), or the
    distinct ids of every position (:func:`~towerjax.workflow.fit.logged_item_table`)."""
    missing = [c[0] for c in columns if c[0] not in set(column_names(frame))]
    if missing:
        raise InputError(
            "logs",
            f"{label}: column {missing[0]!r} is missing (a slate log has {', '.join(columns[0])}, ... "
            "for each position)",
        )
    if items is None:
        stacked = np.concatenate([object_column(frame[c[0]]) for c in columns])
        return logged_item_table({item_column: stacked}, item_column)
    table = read_items(items, frame, item_column, items_label)
    known = {plain_id(v) for v in column_values(table, item_column)}
    for c in columns:
        for i, v in enumerate(column_values(frame, c[0])):
            if plain_id(v) not in known:
                raise InputError(
                    "logs",
                    f"{label}: column {c[0]!r} row {i}: item {v!r} is not in the item table {items_label}",
                )
    return table


def _encode(frame, item_table, contexts, first, item_column, options, label, items_label):
    """``(data, encoding)`` of :func:`~towerjax.tables.logged_data_from_frame` as ``fit`` encodes its
    logs: the contexts and the item table (the first position stands in for the logged item; only
    ``data.context``, ``data.action_context`` and the encoding are used)."""
    try:
        return logged_data_from_frame(
            frame,
            context_columns=contexts,
            action_column=first[0],
            reward_column=first[1],
            pscore_column=first[2],
            item_table=item_table,
            item_id_column=item_column,
            options=options,
        )
    except FrameValidationError as err:
        on_items = items_label is not None and err.problems[0].startswith("item table")
        raise frame_error(err, "items" if on_items else "logs", items_label if on_items else label) from None


def _slate_rows(frame, context, encoding, columns, marginal_columns, label) -> SlateLogs:
    """The logs as :class:`~towerjax.slate_synthetic.SlateLogs` (``pscore_item_position`` ``None``
    without marginal columns), read by ``evaluate --slate``'s reader."""
    lists, reward, cascade = read_slate_lists(frame, encoding.item_ids, columns, label)
    if lists.shape[0] < 4:
        raise InputError("logs", f"{label}: has {lists.shape[0]} rows, expected at least 4")
    marginals = None if marginal_columns is None else read_slate_marginals(frame, marginal_columns, label)
    return SlateLogs(
        context=context,
        lists=jnp.asarray(lists),
        rewards=jnp.asarray(reward, jnp.float32),
        pscore=jnp.asarray(cascade[:, -1], jnp.float32),
        pscore_cascade=jnp.asarray(cascade, jnp.float32),
        pscore_item_position=None if marginals is None else jnp.asarray(marginals, jnp.float32),
    )


def _read_validation(validation, encoding, columns, marginal_columns) -> tuple[SlateLogs, str, int]:
    """``(the validation logs' rows, their label, rows with a context value the encoding has not seen)``:
    the same columns, contexts encoded with ``encoding`` (an unseen value gets the out-of-vocabulary id 0)."""
    label = source_label(validation, "validation")
    frame = read_table(validation, argument="validation")
    names = [c for triple in columns for c in triple] + (marginal_columns or [])
    present = set(map(str, column_names(frame)))
    for name in names:
        if name not in present:
            raise InputError("validation", f"{label}: column {name!r} is missing (the logs have it)")
    context, _, unseen = encode_contexts(encoding, frame, argument="validation", label=label)
    try:
        rows = _slate_rows(frame, context, encoding, columns, marginal_columns, label)
    except InputError as err:
        raise InputError("validation", err.message) from None
    return rows, label, int(unseen)


def _n(logs: SlateLogs) -> int:
    return int(logs.lists.shape[0])


def _take(logs: SlateLogs, rows: Any) -> SlateLogs:
    return SlateLogs(*(None if v is None else take(v, rows) for v in logs))


# --------------------------------------------------------------------------- the configuration


def _check_config(config: Any) -> ListTrainConfig | None:
    if config is not None and not isinstance(config, ListTrainConfig):
        raise InputError("config", f"expected a ListTrainConfig, got {type(config).__name__}")
    return config


def _n_lists(n_items: int, k: int) -> int:
    return math.perm(n_items, k)


def _resolve_config(
    objective: str | None,
    config: ListTrainConfig | None,
    has_marginals: bool,
    n_items: int,
    k: int,
    marginal_stem: Hashable = "marginal_pscore",
) -> tuple[ListTrainConfig, list[str]]:
    """The config to train: ``config`` (default :class:`ListTrainConfig`'s) with ``objective``
    (default ``sniips`` with marginal columns, else ``snrips``), checked against the columns;
    sampled IIPS marginals when the lists are too many to enumerate."""
    notes = []
    default = ListTrainConfig()
    if objective is None:
        objective = "sniips" if has_marginals else "snrips"
    elif objective not in LIST_OBJECTIVES:
        raise InputError("objective", f"expected one of {', '.join(LIST_OBJECTIVES)}, got {objective!r}")
    if config is None:
        config = default
    if config.objective not in (default.objective, objective):
        raise InputError(
            "config",
            f"sets objective {config.objective!r}: pass objective={config.objective!r} instead "
            "(fit_slate's objective argument chooses it)",
        )
    config = dataclasses.replace(config, objective=objective)
    if objective not in TRAINABLE_LIST_OBJECTIVES:
        raise InputError(
            "objective",
            f"{objective!r} is not trained from slate files yet; expected one of "
            f"{', '.join(TRAINABLE_LIST_OBJECTIVES)}",
        )
    if objective in MARGINAL_OBJECTIVES and not has_marginals:
        raise InputError(
            "objective",
            f"{objective!r} needs the logger's position marginals: columns {marginal_stem}_1..{k} are "
            "not in the logs",
        )
    if (
        objective in MARGINAL_OBJECTIVES
        and config.iips_samples is None
        and _n_lists(n_items, k) > MAX_EXACT_LISTS
    ):
        notes.append(
            f"{n_items}!/({n_items}-{k})! lists are too many to enumerate: {objective} trains on position "
            f"marginals sampled from {TRAINING_MARGINAL_SAMPLES} lists a row"
        )
        config = dataclasses.replace(config, iips_samples=TRAINING_MARGINAL_SAMPLES)
    return config, notes


def saved_config(config: ListTrainConfig):
    """The :class:`~towerjax.training.TrainConfig` a saved model holds: the list config's towers and
    optimiser (:meth:`~towerjax.list_training.ListTrainConfig.train_config`) at its temperature."""
    return dataclasses.replace(config.train_config(), temperature=config.temperature)


def _selection_note(seeds: int) -> list[str]:
    if seeds == 1:
        return []
    return [
        f"the kept seed was chosen among {seeds} on the same validation lists it is reported on: its "
        "estimate is a little optimistic (hold out other lists, e.g. --validation, to check it)"
    ]
