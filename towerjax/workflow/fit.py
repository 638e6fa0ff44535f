"""Training a two-tower policy on your own logs: tables in, the best policy the logs support out.

:func:`fit` is a recipe of named steps: read the tables (:mod:`towerjax.workflow.io`), check
the columns' roles, encode them (:func:`towerjax.tables.logged_data_from_frame`), train them
(:mod:`towerjax.workflow.train`) by either

- a search (the default): :func:`towerjax.training.train_search` trains every candidate of a
  :class:`~towerjax.training.Search`, chooses one on selection rows and reports it on other
  rows beside the logging policy (SPEC 9); or
- one configuration (``search=None``): hold out validation rows, train every seed in one
  compiled call (:func:`towerjax.training.train_seeds`) and keep the seed whose returned
  parameters validate best (training's own estimates of them, not estimated again here);

then report (:mod:`towerjax.workflow.report`) and save.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from towerjax import jsonio
from towerjax.checks import InputError, check_positive_int
from towerjax.data import LoggedData
from towerjax.outputs import check_output, replacing_folder, write_files
from towerjax.serving import SavedPolicy
from towerjax.serving.store import MODEL_FILES, model_files
from towerjax.tables import (
    EncodingOptions,
    FrameEncoding,
    FrameValidationError,
    check_option_names,
    is_missing,
    logged_data_from_frame,
    resolve_options,
)
from towerjax.training import Search, SearchResult, TrainConfig, TrainResult
from towerjax.workflow.io import (
    Progress,
    catching_unseen,
    column_names,
    frame_error,
    listed,
    n_rows,
    object_column,
    plain_id,
    read_table,
    require_columns,
    say_to,
    source_label,
)
from towerjax.workflow.report import (
    feature_summary,
    fit_report,
    fit_summary,
    id_like_columns,
    plot_curves,
    position_counts,
    reward_model_loss,
    reward_note,
)
from towerjax.workflow.train import (
    check_search_validation,
    ignored_settings,
    run_one,
    run_search,
)

__all__ = ["DEFAULT_SEARCH", "FitResult", "fit"]

DEFAULT_SEARCH = Search()
""":func:`fit`'s default search (``towerjax train --logs`` without ``--search none``)."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      policy: the saved (chosen) policy, ready to score, recommend and export.
      result: the :class:`~towerjax.training.TrainResult` of every seed (leading ``[S]`` axis);
        with a search, the chosen candidate's run alone (``S = 1``).
      chosen_seed: the index (in ``0..S-1``) of the seed ``policy`` holds (0 with a search).
      report: what ``report.json`` holds (:func:`~towerjax.workflow.report.plot_curves` draws it).
      encoding: how the tables' columns became features.
      data: the training rows; with a search, its training rows (every row of the logs when
        ``validation`` logs were given).
      validation: the validation rows (``None`` without validation); with a search, its
        selection rows (of the logs, or half the validation logs). The search's report rows
        are in neither: ``search.split`` indexes all three parts.
      directory: where the model was saved, or ``None``.
      search: the :class:`~towerjax.training.SearchResult` (its table, verdict and every
        candidate), or ``None`` for one configuration (``search=None``).
    """

    policy: SavedPolicy
    result: TrainResult
    chosen_seed: int
    report: dict
    encoding: FrameEncoding
    data: LoggedData
    validation: LoggedData | None
    directory: Path | None = None
    search: SearchResult | None = None

    def summary(self) -> str:
        """A few lines: the data, then the search's table and verdict
        (:meth:`~towerjax.training.SearchResult.summary`), or each seed's selected epoch and
        estimate and the chosen seed (one configuration)."""
        return fit_summary(self.report)


def fit(
    logs: Any,
    items: Any = None,
    *,
    item_column: Hashable = "item_id",
    reward_column: Hashable = "reward",
    pscore_column: Hashable = "pscore",
    context_columns: Sequence[Hashable] | None = None,
    position_column: Hashable | None = None,
    validation: Any = None,
    config: TrainConfig | None = None,
    search: Search | None = DEFAULT_SEARCH,
    seeds: int = 1,
    seed: int = 0,
    devices: int | None = None,
    options: EncodingOptions | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress = None,
    **option_fields: Any,
) -> FitResult:
    """Trains two-tower policies on your logs and keeps the best the logs support, reported honestly.

    By default it searches (:func:`towerjax.training.train_search`, SPEC 9): the logs' rows are
    split into training, selection and report rows; every candidate of ``search`` (objectives
    with the naive and regression baselines, crossed with a grid of learning rates and entropy
    bonuses) trains on the first, the one with the best lower confidence bound of its
    selection-rows estimate is kept, and it is reported on the report rows only, beside the
    logging policy's value there and their paired difference, with one plain line saying
    whether it beats the logging policy. ``search=None`` trains ``config`` alone, as before
    the search existed: hold out validation rows, train ``seeds`` runs and keep the seed whose
    returned parameters validate best.

    Args:
      logs: the events: a ``.csv`` / ``.parquet`` path, a DataFrame or a dict of arrays,
        one row per logged event.
      items: the item table (path or table): one row per item, its id in ``item_column``
        and its features in every other column. ``None``: the distinct logged ids, each
        item known by its id alone (the item tower embeds the id).
        The item id is always an embedded feature of the item tower (unless
        ``item_id_embedding=False``), next to the table's feature columns.
      item_column: the logged item's id in ``logs``, and the id column of ``items``.
      reward_column: the observed reward.
      pscore_column: the logging propensity ``pi_0(a_i|x_i)`` in ``(0, 1]``.
      context_columns: the context features; default every other column of ``logs``
        (all but the item, reward, pscore and position columns). Numeric columns are dense
        features; text and category columns (a user id, a country) are embedded ids, each
        with a vocabulary built from the training rows (:mod:`towerjax.tables`).
      position_column: the slot each row was shown in: left out of the contexts and counted
        in the report (rows of all positions are pooled).
      validation: validation logs (path or table, the same columns), encoded with the
        training encoding (a value not in the training vocabulary gets the
        out-of-vocabulary id 0 and is counted); a search splits them in halves, its selection
        and report rows, and trains on all of ``logs``. ``None``: held out from ``logs`` (by
        the search, its ``select_fraction`` and ``report_fraction``; for one configuration
        ``config.validation_fraction`` at random, the same rows for every seed). ``0`` (one
        configuration only; or ``validation_fraction=0``) trains without validation, so the
        last epoch and seed 0 are kept.
      config: the :class:`~towerjax.training.TrainConfig` (objective, towers, optimiser,
        ``epochs``, ``select``, ...); default ``TrainConfig()``. With a search it is the base
        of every candidate (towers, epochs, batch size, reward model, ...); the search sets
        the objective, learning rate, weight decay, temperature, entropy bonus and epoch
        selection (a note says so when ``config`` sets them otherwise).
      search: the :class:`~towerjax.training.Search` (default ``Search()``: :data:`DEFAULT_SEARCH`),
        or ``None`` to train ``config`` alone.
      seeds: independent runs (of each candidate, with a search), trained as one compiled call.
      seed: root random seed (runs, validation split, the search's split).
      devices: local devices to shard the seeds over (default all).
      options: how the feature columns are encoded (:class:`~towerjax.tables.EncodingOptions`:
        ``categorical`` for integer columns to embed as ids such as ``user_id``,
        ``min_count`` (default 2: rarer context values share the out-of-vocabulary id 0,
        which trains that id for the contexts never seen in training), ``hash_buckets``,
        ``embedding_dims``, ``item_id_embedding``, ``numeric_strings``, ``standardize``).
        Text and category columns are embedded ids anyway.
      out: a directory to save the model, ``report.json`` and ``curves.png`` into.
      overwrite: replace the model in a non-empty ``out`` (files towerjax did not write are
        kept). ``out`` is checked before training and written atomically: a failed or
        interrupted fit leaves the previous model there as it was, and no folder is created
        until there is a model to write.
      progress: called with one line per step (e.g. ``print``); ``None`` is silent.
      **option_fields: the fields of ``options`` as keywords instead
        (``fit(..., categorical=["user_id"], standardize=True)``).

    Returns:
      A :class:`FitResult`. With a search, its policy is the chosen candidate's
      (``FitResult.search``; the table in ``report["search"]``). Without, which seed is kept:
      each seed's run returns the parameters of its ``config.select`` epoch (the last without
      ``select``) with their SNIPS and DR
      estimates on the validation rows (:attr:`~towerjax.training.TrainResult.selected_validation`,
      DR with that run's reward model fitted on the training rows); the seed with the best
      criterion (``config.select``'s estimate, SNIPS without it, or its lower 95% bound for
      ``"*-lower"``) is kept.

    Compiling. Each call compiles its training program (:func:`~towerjax.training.train_seeds`;
    seconds to a minute on a CPU), and towerjax keeps no cache of compiled programs. Fits of
    the same config, seeds and data shapes can share one through JAX's persistent compilation
    cache, across calls and processes alike:
    ``jax.config.update("jax_compilation_cache_dir", path)`` before the first compile.

    Raises:
      InputError: naming the argument (``logs``, ``items``, ``validation``, a ``*_column``,
        ``validation_fraction``, ``out``, ``search``) with the file, column and rows in its
        message; ``validation`` / ``validation_fraction`` when a search is asked to train
        without held-out rows.
      NonFiniteError: a run's loss or parameters became NaN/inf (one configuration; a search
        drops such candidates, and raises InputError naming ``search`` if every one is).
    """
    say = say_to(progress)
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise InputError("config", f"expected a TrainConfig, got {type(config).__name__}")
    if search is not None and not isinstance(search, Search):
        raise InputError("search", f"expected a Search or None, got {type(search).__name__}")
    no_validation = isinstance(validation, int) and not isinstance(validation, bool) and validation == 0
    if search is not None:
        check_search_validation(config, validation, no_validation)
    seeds = check_positive_int("seeds", seeds)
    check_option_names(option_fields, "fit")
    options = resolve_options(options, option_fields)
    out_dir = None if out is None else check_output(out, argument="out", folder=True, overwrite=overwrite)

    logs_label = source_label(logs, "logs")
    frame = read_table(logs, argument="logs")
    columns = column_roles(frame, item_column, reward_column, pscore_column, context_columns, position_column)
    items_label = None if items is None else source_label(items, "items")
    item_table = read_items(items, frame, item_column, items_label)
    say(f"read {logs_label}: {n_rows(frame, item_column)} rows; contexts from {listed(columns['context'])}")
    data, encoding = encode_logs(frame, item_table, columns, options, logs_label, items_label)
    features = feature_summary(encoding, data)
    say(f"items: {data.n_actions} ({items_label or 'the distinct logged ids'})")
    say("  context features: " + "; ".join(features["context"]))
    say("  item features: " + "; ".join(features["items"]))
    loss = reward_model_loss(data.reward, config.reward_model.loss)  # BCE needs rewards in [0, 1]
    config = dataclasses.replace(config, reward_model=dataclasses.replace(config.reward_model, loss=loss))
    notes = id_like_columns(frame, encoding) + [n for n in [reward_note(data.reward, loss)] if n]
    for note in notes:
        say(f"  note: {note}")
    check_item_ids(encoding.item_ids, item_column, argument="items" if items is not None else "logs")

    unseen, validation_data, validation_source = None, None, None
    if validation is not None and not no_validation:
        validation_data, validation_source, unseen = read_validation(
            validation, columns, item_table, encoding, options.numeric_strings
        )
    if search is not None:
        for note in ignored_settings(config):
            notes.append(note)
            say(f"  note: {note}")
        trained = run_search(search, config, data, validation_data, seed, seeds, devices, progress, say)
    else:
        trained = run_one(config, data, validation_data, no_validation, seed, seeds, devices, progress, say)
    policy = SavedPolicy(
        config=trained.config,
        params=trained.params,
        item_features=data.action_context,
        item_ids=list(encoding.item_ids),
        encoding=encoding,
    )
    report = fit_report(
        config=trained.config,
        result=trained.result,
        timing=trained.timing,
        selected=trained.selected,
        criterion=trained.criterion,
        chosen=trained.chosen,
        seeds=seeds,
        seed=seed,
        data=data,
        features=features,
        train_data=trained.train,
        validation_data=trained.validation,
        sources={"logs": logs_label, "items": items_label, "validation": validation_source or trained.source},
        columns=columns,
        positions=position_counts(frame, position_column),
        unseen=unseen,
        notes=notes + trained.notes,
        search=trained.search,
        estimate=trained.estimate,
    )
    for line in fit_summary(report, features=False).splitlines()[1:]:
        say(line)
    if out_dir is not None:
        save_fit(out_dir, policy, report, overwrite)
        kept = "the chosen policy" if search is not None else f"seed {trained.chosen}"
        say(f"saved {kept} to {out_dir} (model, report.json, curves.png)")
    return FitResult(
        policy,
        trained.result,
        trained.chosen,
        report,
        encoding,
        trained.train,
        trained.validation,
        out_dir,
        trained.search,
    )


# --------------------------------------------------------------------------- the steps


def column_roles(frame, item_column, reward_column, pscore_column, context_columns, position_column) -> dict:
    """``{"item", "reward", "pscore", "position", "context"}``: the role of each column of the
    logs ``frame``, checked (InputError naming the ``*_column`` argument); the contexts default
    to every column without another role."""
    where = "the logs"
    named = [("item_column", item_column), ("reward_column", reward_column), ("pscore_column", pscore_column)]
    if position_column is not None:
        named.append(("position_column", position_column))
    for argument, column in named:
        require_columns(frame, [column], argument=argument, where=where)
    roles = {column for _, column in named}
    if context_columns is None:
        context_columns = [c for c in column_names(frame) if c not in roles]
        if not context_columns:
            raise InputError(
                "context_columns",
                f"the logs have no columns besides {listed([c for _, c in named])}: nothing to build contexts from",
            )
    else:
        if isinstance(context_columns, str | bytes):
            raise InputError("context_columns", f"expected a list of column names, got {context_columns!r}")
        context_columns = list(context_columns)
        if not context_columns:
            raise InputError("context_columns", "expected at least one column")
        require_columns(frame, context_columns, argument="context_columns", where=where)
        for column in context_columns:
            if column in roles:
                raise InputError(
                    "context_columns", f"{column!r} is the item, reward, pscore or position column"
                )
    return {
        "item": item_column,
        "reward": reward_column,
        "pscore": pscore_column,
        "position": position_column,
        "context": context_columns,
    }


def read_items(items: Any, frame: Any, item_column: Hashable, label: str | None) -> Any:
    """The item table from ``items`` (checked for ``item_column``), or without one
    (``items=None``) the distinct logged ids of ``frame`` (:func:`logged_item_table`)."""
    if items is None:
        return logged_item_table(frame, item_column)
    item_table = read_table(items, argument="items")
    require_columns(item_table, [item_column], argument="item_column", where=f"items {label}")
    return item_table


def encode_logs(
    frame: Any,
    item_table: Any,
    columns: dict,
    options: EncodingOptions,
    logs_label: str,
    items_label: str | None,
) -> tuple[LoggedData, FrameEncoding]:
    """``(data, encoding)``: the logs with the item table, encoded as ``options`` say
    (:func:`~towerjax.tables.logged_data_from_frame`); a problem is an InputError naming
    ``items`` (one of the item table, when given) or ``logs`` with the file and the column."""
    try:
        return logged_data_from_frame(
            frame,
            context_columns=columns["context"],
            action_column=columns["item"],
            reward_column=columns["reward"],
            pscore_column=columns["pscore"],
            item_table=item_table,
            item_id_column=columns["item"],
            options=options,
        )
    except FrameValidationError as err:
        on_items = items_label is not None and err.problems[0].startswith("item table")
        raise frame_error(
            err, "items" if on_items else "logs", items_label if on_items else logs_label
        ) from None


def logged_item_table(frame: Any, item_column: Hashable) -> dict[Hashable, np.ndarray]:
    """An item table of the distinct logged item ids (sorted), for logs without one."""
    import pandas as pd

    distinct = pd.unique(object_column(frame[item_column]))
    ids = {plain_id(v) for v in distinct.tolist() if not is_missing(v)}
    try:
        ordered = sorted(ids)
    except TypeError:
        ordered = sorted(ids, key=lambda v: (type(v).__name__, str(v)))
    return {item_column: np.asarray(ordered, dtype=object)}


def check_item_ids(ids: Sequence[Any], item_column: Hashable, *, argument: str) -> None:
    """InputError naming ``argument`` unless the item ids are all strings or all integers."""
    ids = list(ids)
    if all(isinstance(v, str) for v in ids) or all(
        isinstance(v, int) and not isinstance(v, bool) for v in ids
    ):
        return
    kinds = ", ".join(sorted({type(v).__name__ for v in ids}))
    raise InputError(
        argument,
        f"column {item_column!r}: expected item ids that are all strings or all integers, got {kinds}",
    )


def read_validation(
    validation: Any, columns: dict, item_table: Any, encoding: FrameEncoding, numeric_strings: Any
) -> tuple[LoggedData, str, dict]:
    """``(validation rows, their label, unseen-category counts)`` of validation logs encoded
    with the training ``encoding`` (a value not in its vocabulary is counted, not an error)."""
    label = source_label(validation, "validation")
    table = read_table(validation, argument="validation")
    needed = [columns["item"], columns["reward"], columns["pscore"], *columns["context"]]
    require_columns(table, needed, argument="validation", where=f"validation logs {label}")
    try:
        (held_out, _), counts, rows = catching_unseen(
            lambda: logged_data_from_frame(
                table,
                context_columns=columns["context"],
                action_column=columns["item"],
                reward_column=columns["reward"],
                pscore_column=columns["pscore"],
                item_table=item_table,
                item_id_column=columns["item"],
                numeric_strings=numeric_strings,
                encoding=encoding,
                unknown="warn",
            )
        )
    except FrameValidationError as err:
        raise frame_error(err, "validation", label) from None
    if held_out.n_rounds < 2:
        raise InputError("validation", f"{label}: has {held_out.n_rounds} row, expected at least 2")
    return held_out, label, {"rows": rows, "columns": {str(k): v for k, v in counts.items()}}


# --------------------------------------------------------------------------- saving


def save_fit(directory: Path, policy: SavedPolicy, report: dict, overwrite: bool) -> None:
    """Saves the policy (the files of :func:`~towerjax.serving.save_model`), ``report.json`` and
    ``curves.png`` into ``directory`` in one atomic write (:func:`save_model_folder`)."""
    metadata = {
        "columns": {k: None if v is None else str(v) for k, v in report["columns"].items() if k != "context"},
        "chosen_seed": report["selection"]["chosen_seed"],
        **search_metadata(report),
    }
    save_model_folder(
        directory,
        policy,
        report,
        metadata,
        overwrite,
        figure=lambda staging: plot_curves(report, staging / "curves.png"),
    )


def save_model_folder(
    directory: Path,
    policy: SavedPolicy,
    report: dict,
    metadata: dict,
    overwrite: bool,
    figure: Callable[[Path], Any] | None = None,
) -> None:
    """Writes a trained model's folder in one atomic write (:func:`~towerjax.outputs.replacing_folder`):
    the policy's files (:func:`~towerjax.serving.store.model_files`, ``model.json`` holding
    ``report["sources"]``, ``metadata`` and a pointer to ``report.json``), ``report.json``, and what
    ``figure(staging_folder)`` draws there."""
    files = model_files(
        params=policy.params,
        config=policy.config,
        item_ids=policy.item_ids,
        item_features=policy.item_features,
        encoding=policy.encoding,
        metadata={"source": report["sources"], **metadata, "report": "report.json"},
    )
    files["report.json"] = jsonio.dumps(report, indent=2).encode()
    with replacing_folder(
        directory, argument="out", overwrite=overwrite, own=MODEL_FILES, marker="model.json"
    ) as staging:
        write_files(staging, files)
        if figure is not None:
            figure(staging)


def search_metadata(report: dict) -> dict:
    """``{"search": {"chosen", "verdict", "lines"}}`` for ``model.json`` when the report is a
    search's (its full table stays in ``report.json``), else ``{}``."""
    search = report.get("search")
    if search is None:
        return {}
    return {
        "search": {
            "chosen": search["chosen"]["label"],
            "verdict": search["verdict"],
            "lines": search["lines"],
        }
    }
