"""Your own logs, end to end: train from files, evaluate, recommend, export.

The Python API behind ``towerjax train --logs``, ``towerjax evaluate``, ``towerjax
recommend`` and ``towerjax export``. Each function takes file paths (``.csv``,
``.csv.gz``, ``.parquet``, ``.pq``) or in-memory tables (a pandas ``DataFrame`` or a dict of
numpy arrays) and returns a small result value:

- :func:`fit` builds :class:`~towerjax.data.LoggedData` from a log of events and an item
  table (:func:`towerjax.adapter.logged_data_from_frame`), holds out validation rows, trains
  ``seeds`` runs in one compiled call (:func:`towerjax.train.compile_seeds`), keeps the seed
  whose selected validation estimate is best, and (with ``out=``) saves it
  (:func:`towerjax.saved.save_model`) with ``report.json`` and ``curves.png``.
- :func:`evaluate` gives the off-policy estimates (:func:`towerjax.evaluation.off_policy_estimates`,
  the DR family with a reward model cross-fitted on the evaluation logs) of one or several
  saved policies on any logs, their paired differences, and, for logs of a uniform logging
  policy, the unbiased value (:func:`towerjax.metrics.randomized_value`).
- :func:`recommend` gives each context row's exact top ``k`` items (or Boltzmann slates).
- :func:`export` writes what a serving stack needs (:meth:`towerjax.saved.SavedPolicy.export`).

Events are rows of one log: the logged item's id (``item_column``), the reward
(``reward_column``), the logging propensity ``pi_0(a_i|x_i)`` (``pscore_column``) and the
context columns. Numeric columns are dense features; text and category columns (a user id, a
country), and integer ones named by ``categorical=``, are integer ids the towers embed, with
a vocabulary built from the training rows (or hash buckets); the item id is an embedded
feature of the item tower (:mod:`towerjax.adapter`). An id of any cardinality costs ``[n]``
integers, never a one-hot matrix. At evaluation and serving time a value not in the
vocabulary (a new user) gets the out-of-vocabulary id 0 and is counted, never an error. An optional ``position_column`` (the slot a row was shown in) is left out
of the contexts: rows of every position are pooled as single-position events (filter the
table first to learn for one slot) and the report counts the rows per position.

Every bad input raises :class:`~towerjax.checks.InputError` naming the argument (``logs``,
``items``, ``reward_column``, ``k``, ``model``, ...) with a one-line message naming the file
and the column, which the command line reports as ``argument --flag: message``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from towerjax import jsonio
from towerjax.adapter import (
    CONTEXT_MIN_COUNT,
    FrameEncoding,
    FrameValidationError,
    UnseenCategoryWarning,
    logged_data_from_frame,
)
from towerjax.batching import map_row_chunks, num_batches, row_chunk
from towerjax.checks import InputError, check_positive_int, take_logged, unwritable
from towerjax.data import LoggedData
from towerjax.evaluation import ALIASES, Z_95, Estimate, off_policy_estimates, weight_diagnostics
from towerjax.features import Features
from towerjax.metrics import randomized_value
from towerjax.policy import log_policy
from towerjax.retrieval import top_k_items
from towerjax.reward_model import RewardModel
from towerjax.saved import SavedPolicy, load_model, save_model
from towerjax.train import TrainConfig, TrainResult, check_finite, compile_seeds, estimates_from_terms

__all__ = [
    "DIFFERENCE_ESTIMATORS",
    "REPORT_FORMAT",
    "TABLE_SUFFIXES",
    "Evaluation",
    "FitResult",
    "Recommendations",
    "check_image_path",
    "evaluate",
    "export",
    "fit",
    "plot_curves",
    "read_table",
    "recommend",
    "write_table",
]

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
"""File name endings :func:`read_table` and :func:`write_table` understand."""

REPORT_FORMAT = "towerjax-fit-report"
DIFFERENCE_ESTIMATORS = ("ipw", "snipw", "dr")
"""Estimators whose paired difference between two models :func:`evaluate` reports."""

ITEM_CHUNK_SIZE = 8192  # items scored per step of the exact top-k search
CONTEXT_CHUNK_SIZE = 1024  # contexts per block of the top-k search
_RUNNER_CACHE_SIZE = 4
_RUNNERS: dict[Any, Any] = {}
_ROW_COLUMN = "__towerjax_row__"

Progress = Callable[[str], None] | None


# --------------------------------------------------------------------------- tables


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns") and hasattr(obj, "iloc")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in TABLE_SUFFIXES if name.endswith(s)), path.suffix.lower())


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def read_table(source: Any, *, argument: str = "table") -> Any:
    """A table from a ``.csv`` / ``.csv.gz`` / ``.parquet`` / ``.pq`` path, or ``source`` itself.

    A pandas ``DataFrame`` or a mapping of column name to array is returned as it is. Files
    are read with pandas' defaults (``read_csv``, ``read_parquet``, the latter through pyarrow).

    Raises:
      InputError: naming ``argument``, for an unknown file ending, a missing, empty or
        unreadable file, or a table with no rows.
    """
    if _is_dataframe(source) or isinstance(source, Mapping):
        return source
    if not isinstance(source, str | os.PathLike):
        raise InputError(
            argument,
            f"expected a path to a {'/'.join(TABLE_SUFFIXES)} file, a DataFrame or a dict of arrays, "
            f"got {type(source).__name__}",
        )
    path = Path(source)
    suffix = _suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise InputError(
            argument, f"{path}: unknown file type {suffix or '(none)'!r}, expected one of {TABLE_SUFFIXES}"
        )
    if not path.is_file():
        raise InputError(argument, f"{path}: {'not a file' if path.exists() else 'no such file'}")
    if path.stat().st_size == 0:
        raise InputError(argument, f"{path}: the file is empty")
    import pandas as pd

    kind = "CSV" if suffix.startswith(".csv") else "Parquet"
    try:
        frame = pd.read_csv(path) if kind == "CSV" else pd.read_parquet(path)
    except ImportError as err:
        raise InputError(argument, f"{path}: reading {kind} needs pyarrow ({_one_line(err)})") from None
    except Exception as err:  # pandas and pyarrow raise many types for a bad file
        raise InputError(argument, f"{path}: cannot be read as {kind} ({_one_line(err)})") from None
    if len(frame) == 0:
        raise InputError(argument, f"{path}: has no rows (columns: {_listed(frame.columns)})")
    return frame


def write_table(table: Any, path: str | os.PathLike, *, argument: str = "out") -> Path:
    """Writes a DataFrame (or a dict of equal-length arrays) to ``.csv`` / ``.parquet`` by ``path``'s ending.

    Raises:
      InputError: naming ``argument``, for an unknown ending or a path that cannot be written.
    """
    import pandas as pd

    path = Path(path)
    suffix = _suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise InputError(
            argument, f"{path}: unknown file type {suffix or '(none)'!r}, expected one of {TABLE_SUFFIXES}"
        )
    frame = table if _is_dataframe(table) else pd.DataFrame(dict(table))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix.startswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    except ImportError as err:
        raise InputError(argument, f"{path}: writing Parquet needs pyarrow ({_one_line(err)})") from None
    except OSError as err:
        raise InputError(argument, f"{path}: cannot write ({err.strerror or _one_line(err)})") from None
    return path


IMAGE_SUFFIXES = (".png", ".pdf", ".svg")


def check_image_path(path: str | os.PathLike, *, argument: str = "plot") -> Path:
    """``path`` as a figure file to write (``.png``, ``.pdf``, ``.svg``), or InputError naming ``argument``."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            argument,
            f"{path}: unknown image type {path.suffix or '(none)'!r}, expected one of {IMAGE_SUFFIXES}",
        )
    return path


def _save_figure(figure, path: str | os.PathLike, argument: str) -> None:
    path = check_image_path(path, argument=argument)
    try:
        figure.savefig(path, dpi=120)
    except OSError as err:
        raise InputError(argument, f"{path}: cannot write ({err.strerror or _one_line(err)})") from None


def _label(source: Any, default: str) -> str:
    return str(source) if isinstance(source, str | os.PathLike) else default


def _column_names(table: Any) -> list[Any]:
    return list(table.columns) if _is_dataframe(table) else list(table.keys())


def _listed(names: Sequence[Any], limit: int = 12) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _require_columns(table: Any, columns: Sequence[Hashable], *, argument: str, where: str) -> None:
    present = _column_names(table)
    for column in columns:
        if column not in present:
            raise InputError(argument, f"column {column!r} is not in {where} (columns: {_listed(present)})")


def _frame_error(err: FrameValidationError, argument: str, label: str) -> InputError:
    """One line naming the file and, through the adapter's messages, the column and rows."""
    problems = [
        " ".join(p.split()).removeprefix("frame: ").removeprefix("item table: ") for p in err.problems
    ]
    text = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)
    return InputError(argument, f"{label}: {text}")


def _catching_unseen(fn: Callable[[], Any]) -> tuple[Any, dict[Hashable, int], int]:
    """``(fn(), rows with an unseen category per column, rows with any)``; other warnings pass on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    counts: dict[Hashable, int] = {}
    rows = 0
    for record in caught:
        if isinstance(record.message, UnseenCategoryWarning):
            rows += record.message.n_rows
            for column, count in record.message.counts.items():
                counts[column] = counts.get(column, 0) + count
        else:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
    return value, counts, rows


def _plain_id(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _column_values(table: Any, column: Hashable) -> list[Any]:
    raw = table[column]
    return list(raw.tolist() if hasattr(raw, "tolist") else list(raw))


def _object_column(raw: Any) -> np.ndarray:
    """A column as a 1-d numpy array (object dtype for anything but plain numbers)."""
    values = np.asarray(raw)
    return values if values.dtype.kind in "biuf" else values.astype(object)


def _n_rows(table: Any, column: Hashable) -> int:
    return len(table[column])


def _logged_item_table(frame: Any, item_column: Hashable) -> dict[Hashable, np.ndarray]:
    """An item table of the distinct logged item ids (sorted), for logs without one."""
    import pandas as pd

    distinct = pd.unique(_object_column(frame[item_column]))
    ids = {_plain_id(v) for v in distinct.tolist() if not _is_missing(v)}
    try:
        ordered = sorted(ids)
    except TypeError:
        ordered = sorted(ids, key=lambda v: (type(v).__name__, str(v)))
    return {item_column: np.asarray(ordered, dtype=object)}


def _logged_columns(
    frame: Any,
    item_ids: np.ndarray,
    *,
    item_column: Hashable,
    reward_column: Hashable,
    pscore_column: Hashable,
    argument: str,
    label: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(action, reward, pscore)`` of ``frame`` against a catalogue, checked by the adapter.

    The logged item ids are mapped to the catalogue's rows; a missing or unknown id, a
    reward that is not a finite number or a propensity outside ``(0, 1]`` is an InputError
    naming ``argument`` and, in its message, the column and rows.
    """
    n = _n_rows(frame, item_column)
    columns = {column: frame[column] for column in (item_column, reward_column, pscore_column)}
    try:
        data, _ = logged_data_from_frame(
            {**columns, _ROW_COLUMN: np.zeros(n)},
            context_columns=[_ROW_COLUMN],
            action_column=item_column,
            reward_column=reward_column,
            pscore_column=pscore_column,
            item_table={
                item_column: np.asarray(item_ids, dtype=object),
                _ROW_COLUMN: np.zeros(len(item_ids)),
            },
            item_id_column=item_column,
            item_feature_columns=[_ROW_COLUMN],
            item_id_embedding=False,
        )
    except FrameValidationError as err:
        raise _frame_error(err, argument, label) from None
    return np.asarray(data.action), np.asarray(data.reward, np.float64), np.asarray(data.pscore, np.float64)


# --------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      policy: the saved (chosen) seed's policy, ready to score, recommend and export.
      result: the :class:`~towerjax.train.TrainResult` of every seed (leading ``[S]`` axis).
      chosen_seed: the index (in ``0..S-1``) of the seed ``policy`` holds.
      report: what ``report.json`` holds (:func:`plot_curves` draws it).
      encoding: how the tables' columns became features.
      data: the training rows.
      validation: the validation rows (``None`` without validation).
      directory: where the model was saved, or ``None``.
    """

    policy: SavedPolicy
    result: TrainResult
    chosen_seed: int
    report: dict
    encoding: FrameEncoding
    data: LoggedData
    validation: LoggedData | None
    directory: Path | None = None

    def summary(self) -> str:
        """A few lines: the data, each seed's selected epoch and estimate, the chosen seed."""
        return _fit_summary(self.report)


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
    seeds: int = 1,
    seed: int = 0,
    devices: int | None = None,
    categorical: Sequence[Hashable] = (),
    min_count: int | Mapping[Hashable, int] = CONTEXT_MIN_COUNT,
    hash_buckets: Mapping[Hashable, int] | None = None,
    embedding_dims: Mapping[Hashable, int] | None = None,
    item_id_embedding: bool = True,
    numeric_strings: str | Mapping[Hashable, str] = "error",
    standardize: bool | Sequence[Hashable] = False,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress = None,
) -> FitResult:
    """Trains a two-tower policy on your logs and keeps the seed that validates best.

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
        with a vocabulary built from the training rows (:mod:`towerjax.adapter`).
      position_column: the slot each row was shown in: left out of the contexts and counted
        in the report (rows of all positions are pooled).
      validation: validation logs (path or table, the same columns), encoded with the
        training encoding (a value not in the training vocabulary gets the
        out-of-vocabulary id 0 and is counted). ``None``: ``config.validation_fraction`` of the rows held out at random
        (the same rows for every seed); ``0`` trains without validation, so the last epoch
        and seed 0 are kept.
      config: the :class:`~towerjax.train.TrainConfig` (objective, towers, optimiser,
        ``epochs``, ``select``, ...); default ``TrainConfig()``. Its synthetic-problem
        fields are not used.
      seeds: independent runs, trained as one compiled call.
      seed: root random seed (runs, validation split).
      devices: local devices to shard the seeds over (default all).
      categorical: columns to embed as ids although they hold numbers (an integer
        ``user_id``); text and category columns are embedded anyway.
      min_count: the fewest training rows a context value needs for its own id; rarer ones
        share the out-of-vocabulary id 0 with unseen values, which trains that id for the
        contexts never seen in training (default 2). A mapping sets it per column.
      hash_buckets: ``{column: B}``: hash these columns into ``B`` buckets instead of a
        vocabulary (unbounded ids; stable across processes).
      embedding_dims: ``{column: width}`` of the embedding tables (``item_column`` for the
        item id); default ``min(32, round(6 * size ** 0.25))``.
      item_id_embedding: embed the item id in the item tower (needs ``items`` with feature
        columns when ``False``).
      numeric_strings: what a text column that looks numeric becomes (``"error"``,
        ``"parse"``, ``"categorical"``; :func:`~towerjax.adapter.logged_data_from_frame`).
      standardize: standardise numeric feature columns (``True`` or column names).
      out: a directory to save the model, ``report.json`` and ``curves.png`` into.
      overwrite: write into a non-empty ``out`` that is not a towerjax model.
      progress: called with one line per step (e.g. ``print``); ``None`` is silent.

    Returns:
      A :class:`FitResult`. Which seed is kept: each seed's run returns the parameters of
      its ``config.select`` epoch; their SNIPS (and, for ``select="dr"``, DR with one
      reward model fitted on the training rows) estimate on the validation rows is
      computed again, and the seed with the best criterion (the estimate, or its lower
      95% bound for ``"*-lower"``) is kept.

    Raises:
      InputError: naming the argument (``logs``, ``items``, ``validation``, a ``*_column``,
        ``validation_fraction``, ``out``) with the file, column and rows in its message.
      NonFiniteError: a run's loss or parameters became NaN/inf.
    """
    say = progress or (lambda line: None)
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise InputError("config", f"expected a TrainConfig, got {type(config).__name__}")
    seeds = check_positive_int("seeds", seeds)
    out_dir = None if out is None else _check_out_dir(out, overwrite)

    logs_label = _label(logs, "logs")
    frame = read_table(logs, argument="logs")
    columns = _columns(frame, item_column, reward_column, pscore_column, context_columns, position_column)
    context_columns = columns["context"]
    if items is None:
        item_table, items_label = _logged_item_table(frame, item_column), None
    else:
        items_label = _label(items, "items")
        item_table = read_table(items, argument="items")
        _require_columns(item_table, [item_column], argument="item_column", where=f"items {items_label}")
    say(f"read {logs_label}: {_n_rows(frame, item_column)} rows; contexts from {_listed(context_columns)}")
    try:
        data, encoding = logged_data_from_frame(
            frame,
            context_columns=context_columns,
            action_column=item_column,
            reward_column=reward_column,
            pscore_column=pscore_column,
            item_table=item_table,
            item_id_column=item_column,
            categorical=categorical,
            min_count=min_count,
            hash_buckets=hash_buckets,
            embedding_dims=embedding_dims,
            item_id_embedding=item_id_embedding,
            numeric_strings=numeric_strings,
            standardize=standardize,
        )
    except FrameValidationError as err:
        on_items = items is not None and err.problems[0].startswith("item table")
        raise _frame_error(
            err, "items" if on_items else "logs", items_label if on_items else logs_label
        ) from None
    features = _feature_summary(encoding, data)
    say(f"items: {data.n_actions} ({items_label or 'the distinct logged ids'})")
    say("  context features: " + "; ".join(features["context"]))
    say("  item features: " + "; ".join(features["items"]))
    id_notes = _id_like_columns(frame, encoding)
    for note in id_notes:
        say(f"  note: {note}")

    ids = list(encoding.item_ids)
    if not (
        all(isinstance(v, str) for v in ids)
        or all(isinstance(v, int) and not isinstance(v, bool) for v in ids)
    ):
        kinds = ", ".join(sorted({type(v).__name__ for v in ids}))
        raise InputError(
            "items" if items is not None else "logs",
            f"column {item_column!r}: expected item ids that are all strings or all integers, got {kinds}",
        )
    train_data, validation_data, validation_source, unseen = _validation_split(
        data, encoding, validation, config, seed, columns, item_table, numeric_strings
    )
    notes = list(id_notes)
    if validation_data is None and config.select is not None:
        notes.append(f"no validation rows: select={config.select!r} needs them, so the last epoch is kept")
        config = dataclasses.replace(config, select=None, patience=None)
    if validation_data is not None:
        say(f"validation: {validation_data.n_rounds} rows ({validation_source})")
    say(
        f"training {config.objective.name}: {seeds} seed(s), {config.epochs} epochs, batch "
        f"{min(config.batch_size, train_data.n_rounds)}, on {train_data.n_rounds} rows ..."
    )
    result, timing = _train_seeds(
        config, seeds=seeds, seed=seed, devices=devices, data=train_data, validation=validation_data
    )
    if timing["seconds_compile"] > 0:
        say(f"  compiled in {timing['seconds_compile']:.1f}s, trained in {timing['seconds_train']:.1f}s")
    else:
        say(f"  reused the compiled program, trained in {timing['seconds_train']:.1f}s")

    selected, criterion = _selected_estimates(config, result, train_data, validation_data, seed)
    chosen = _choose_seed(selected, criterion)
    params = jax.tree.map(lambda a: a[chosen], result.params)
    policy = SavedPolicy(
        config=config,
        params=params,
        item_features=train_data.action_context,
        item_ids=ids,
        encoding=encoding,
    )
    report = _fit_report(
        config=config,
        result=result,
        timing=timing,
        selected=selected,
        criterion=criterion,
        chosen=chosen,
        seeds=seeds,
        seed=seed,
        data=data,
        features=features,
        train_data=train_data,
        validation_data=validation_data,
        sources={"logs": logs_label, "items": items_label, "validation": validation_source},
        columns=columns,
        positions=_position_counts(frame, position_column),
        unseen=unseen,
        notes=notes,
    )
    for line in _fit_summary(report, features=False).splitlines()[1:]:
        say(line)
    if out_dir is not None:
        _save_fit(out_dir, policy, report, overwrite)
        say(f"saved seed {chosen} to {out_dir} (model, report.json, curves.png)")
    return FitResult(policy, result, chosen, report, encoding, train_data, validation_data, out_dir)


def _columns(frame, item_column, reward_column, pscore_column, context_columns, position_column) -> dict:
    """The role of each column, checked against ``frame``."""
    where = "the logs"
    named = [("item_column", item_column), ("reward_column", reward_column), ("pscore_column", pscore_column)]
    if position_column is not None:
        named.append(("position_column", position_column))
    for argument, column in named:
        _require_columns(frame, [column], argument=argument, where=where)
    roles = {column for _, column in named}
    if context_columns is None:
        context_columns = [c for c in _column_names(frame) if c not in roles]
        if not context_columns:
            raise InputError(
                "context_columns",
                f"the logs have no columns besides {_listed([c for _, c in named])}: nothing to build contexts from",
            )
    else:
        if isinstance(context_columns, str | bytes):
            raise InputError("context_columns", f"expected a list of column names, got {context_columns!r}")
        context_columns = list(context_columns)
        if not context_columns:
            raise InputError("context_columns", "expected at least one column")
        _require_columns(frame, context_columns, argument="context_columns", where=where)
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


def _validation_split(data, encoding, validation, config, seed, columns, item_table, numeric_strings):
    """``(training rows, validation rows or None, where they came from, unseen-category counts)``."""
    if validation is not None:
        label = _label(validation, "validation")
        table = read_table(validation, argument="validation")
        needed = [columns["item"], columns["reward"], columns["pscore"], *columns["context"]]
        _require_columns(table, needed, argument="validation", where=f"validation logs {label}")
        try:
            (held_out, _), counts, rows = _catching_unseen(
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
            raise _frame_error(err, "validation", label) from None
        if held_out.n_rounds < 2:
            raise InputError("validation", f"{label}: has {held_out.n_rounds} row, expected at least 2")
        return data, held_out, label, {"rows": rows, "columns": {str(k): v for k, v in counts.items()}}
    fraction = config.validation_fraction
    if fraction == 0:
        return data, None, None, None
    n = data.n_rounds
    n_validation = round(fraction * n)
    if not 2 <= n_validation <= n - 1:
        raise InputError(
            "validation_fraction",
            f"{fraction} of {n} rows leaves {n_validation} for validation; expected at least 2 and at "
            "least one training row",
        )
    order = np.random.default_rng(seed).permutation(n)
    train_rows, validation_rows = np.sort(order[n_validation:]), np.sort(order[:n_validation])
    source = f"{fraction:g} of the logs held out at random (seed {seed})"
    return data.take_rows(train_rows), data.take_rows(validation_rows), source, None


def _signature(config, seeds, devices, data, validation):
    leaves, tree = jax.tree.flatten((data, validation))
    try:
        hash(config)
    except TypeError:
        return None
    return (config, seeds, devices, tree, tuple((np.shape(a), str(a.dtype)) for a in leaves))


def _train_seeds(
    config: TrainConfig,
    *,
    seeds: int,
    seed: int,
    devices: int | None,
    data: LoggedData,
    validation: LoggedData | None,
) -> tuple[TrainResult, dict]:
    """:func:`~towerjax.train.train_seeds` on own logs, reusing a compiled program.

    The compiled call takes the keys and the logs as arguments, so logs of the same shapes
    under the same config (another file of the same size, another root seed) run without
    compiling again.
    """
    signature = _signature(config, seeds, devices, data, validation)
    runner = _RUNNERS.get(signature) if signature is not None else None
    inputs = (data, None, None, validation)
    if runner is None:
        runner = compile_seeds(
            config, seeds=seeds, seed=seed, devices=devices, data=data, validation=validation
        )
        seconds_compile = runner.seconds_compile
        if signature is not None:
            while len(_RUNNERS) >= _RUNNER_CACHE_SIZE:
                _RUNNERS.pop(next(iter(_RUNNERS)))
            _RUNNERS[signature] = dataclasses.replace(runner, inputs=None)
    else:
        keys = jax.random.split(jax.random.key(seed), seeds).reshape(runner.keys.shape)
        runner = dataclasses.replace(runner, keys=jax.device_put(keys, runner.keys.sharding), inputs=inputs)
        seconds_compile = 0.0
    start = time.perf_counter()
    result = jax.block_until_ready(runner.run())
    seconds_train = time.perf_counter() - start
    result = jax.device_get(result)
    check_finite(result, config.objective, seed=seed)
    n = data.n_rounds
    timing = {
        "seconds_compile": seconds_compile,
        "seconds_train": seconds_train,
        "seed_steps": seeds * config.epochs * num_batches(n, min(config.batch_size, n)),
        "devices": runner.devices,
    }
    return result, timing


@functools.partial(jax.jit, static_argnums=(0, 1))
def _validation_of(model, temperature: float, params, logs: LoggedData, q_hat):
    """SNIPS (and DR with ``q_hat``) of the policy on ``logs``, over chunks of rows so the
    ``[rows, A]`` scores stay bounded (:func:`~towerjax.train.estimates_from_terms`)."""
    items = model.embed_actions(params, logs.action_context)
    rows = {"context": logs.context, "action": logs.action, "pscore": logs.pscore}
    if q_hat is not None:
        rows["q_hat"] = q_hat

    def per_row(rows):
        pi = jnp.exp(log_policy(model.embed_context(params, rows["context"]) @ items.T, temperature))
        out = {"w": take_logged(pi, rows["action"]) / rows["pscore"]}
        if "q_hat" in rows:
            out["direct"] = jnp.sum(pi * rows["q_hat"], axis=-1)
            out["q_logged"] = take_logged(rows["q_hat"], rows["action"])
        return out

    terms = map_row_chunks(per_row, rows, row_chunk(logs.n_rounds, logs.n_actions))
    return estimates_from_terms(terms["w"], logs.reward, terms.get("direct"), terms.get("q_logged"))


@functools.partial(jax.jit, static_argnums=0)
def _fit_predict(reward_model: RewardModel, key: jax.Array, data: LoggedData, logs: LoggedData) -> jax.Array:
    params = reward_model.fit(key, data)
    return reward_model.predict(params, logs.context, logs.action_context)


def _selected_estimates(config, result, train_data, validation, seed):
    """Each seed's SNIPS and DR (with s.e.) of its returned parameters on the validation rows."""
    criterion = config.select or "snips"
    seeds = int(np.shape(result.selected_epoch)[0])
    if validation is None:
        return None, None
    q_hat = None
    if criterion.startswith("dr"):
        q_hat = _fit_predict(RewardModel(config.reward_model), jax.random.key(seed), train_data, validation)
    rows = []
    for s in range(seeds):
        params = jax.tree.map(lambda a, s=s: a[s], result.params)
        rows.append(
            jax.device_get(_validation_of(config.model, config.temperature, params, validation, q_hat))
        )
    selected = {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}
    return selected, criterion


def _criterion_values(selected: dict, criterion: str) -> np.ndarray:
    name = criterion.removesuffix("-lower")
    value = selected[name] - (Z_95 * selected[name + "_se"] if criterion.endswith("-lower") else 0.0)
    return np.where(np.isnan(value), -np.inf, value)


def _choose_seed(selected: dict | None, criterion: str | None) -> int:
    if selected is None:
        return 0
    return int(np.argmax(_criterion_values(selected, criterion)))


def _interval_dict(value: np.ndarray, stderr: np.ndarray) -> dict:
    value, stderr = np.asarray(value, np.float64), np.asarray(stderr, np.float64)
    return {"value": value, "stderr": stderr, "low": value - Z_95 * stderr, "high": value + Z_95 * stderr}


def _position_counts(frame: Any, position_column: Hashable | None) -> dict | None:
    if position_column is None:
        return None
    import pandas as pd

    counts: dict[str, int] = {}
    tallies = pd.Series(_object_column(frame[position_column])).value_counts(dropna=False)
    for value, count in tallies.items():
        key = "missing" if _is_missing(value) else str(_plain_id(value))
        counts[key] = counts.get(key, 0) + int(count)
    return dict(sorted(counts.items()))


def _feature_summary(encoding: FrameEncoding, data: LoggedData) -> dict[str, list[str]]:
    """One line per feature of each tower (dense, or an embedded id's vocabulary and width),
    with the training rows whose context value got the out-of-vocabulary id 0."""
    lines = encoding.describe()
    if isinstance(data.context, Features):
        out = []
        dense = len(encoding.context_feature_names)
        for line, column in zip(lines["context"][dense:], encoding.context_categorical, strict=True):
            oov = int(np.count_nonzero(np.asarray(data.context.ids[column.name]) == 0))
            out.append(
                f"{line} ({oov} training rows out of vocabulary)" if column.vocabulary is not None else line
            )
        lines["context"] = lines["context"][:dense] + out
    return lines


def _id_like_columns(frame: Any, encoding: FrameEncoding) -> list[str]:
    """Notes on integer context columns named like ids (``user_id``, ``userId``) that are
    used as numbers: they were probably meant to be embedded."""
    notes = []
    embedded = {c.column for c in encoding.context_categorical}
    for column in encoding.context_columns:
        name = str(column).lower()
        if column in embedded or not (name.endswith("id") or name.endswith("ids")):
            continue
        if getattr(getattr(frame[column], "dtype", None), "kind", None) in ("i", "u"):
            notes.append(
                f"context column {column!r} holds integers and is used as a number; if it is an id, pass "
                f"categorical=[{column!r}] (towerjax train --categorical {column}) to embed it"
            )
    return notes


def _data_summary(data: LoggedData, features: dict[str, list[str]]) -> dict:
    """Rows, items, rewards, propensities and how well the logs cover the uniform policy."""
    reward = np.asarray(data.reward, np.float64)
    pscore = np.asarray(data.pscore, np.float64)
    action = np.asarray(data.action)
    n_items = data.n_actions
    uniform = weight_diagnostics(jnp.asarray((1.0 / n_items) / pscore))
    counts = np.bincount(action, minlength=n_items)
    return {
        "rows": int(data.n_rounds),
        "items": int(n_items),
        "items_logged": int(np.count_nonzero(counts)),
        "top_item_share": float(counts.max() / data.n_rounds),
        "context_features": features["context"],
        "item_features": features["items"],
        "reward_mean": float(reward.mean()),
        "reward_rate": float(np.mean(reward > 0)),
        "reward_min": float(reward.min()),
        "reward_max": float(reward.max()),
        "pscore_min": float(pscore.min()),
        "pscore_max": float(pscore.max()),
        "uniform_policy_weights": {
            **uniform.to_dict(),
            "ess_share": float(uniform.ess) / data.n_rounds,
            "note": "w_i = (1/A) / pscore_i, the weights of the uniform policy: an ESS far below the rows "
            "means the logs concentrate on few items and say little about policies that spread out",
        },
    }


def _fit_report(
    *,
    config,
    result,
    timing,
    selected,
    criterion,
    chosen,
    seeds,
    seed,
    data,
    features,
    train_data,
    validation_data,
    sources,
    columns,
    positions,
    unseen,
    notes,
) -> dict:
    validation = {k: np.asarray(v, np.float64) for k, v in result.validation.items()}
    epochs = int(validation["snips"].shape[1])
    curves = {}
    for name in ("snips", "dr"):
        per_seed = _interval_dict(validation[name], validation[name + "_se"])
        mean_value, mean_se = per_seed["value"].mean(axis=0), per_seed["stderr"].mean(axis=0)
        spread = per_seed["value"].std(axis=0, ddof=1) if seeds > 1 else np.full(epochs, np.nan)
        curves[name] = {
            "per_seed": per_seed,
            "mean": {**_interval_dict(mean_value, mean_se), "seed_std": spread},
        }
    summary = _data_summary(data, features)
    summary.update(
        training_rows=int(train_data.n_rounds),
        validation_rows=0 if validation_data is None else int(validation_data.n_rounds),
        positions=positions,
        validation_unseen_categories=unseen,
    )
    if validation_data is not None:
        summary["validation_reward_mean"] = float(np.mean(np.asarray(validation_data.reward)))
    per_seed = []
    for s in range(seeds):
        entry = {"index": s, "selected_epoch": int(result.selected_epoch[s])}
        if selected is not None:
            entry["selected"] = {
                name: {
                    k: float(v[s]) for k, v in _interval_dict(selected[name], selected[name + "_se"]).items()
                }
                for name in ("snips", "dr")
                if not np.isnan(selected[name][s])
            }
            entry["criterion"] = float(_criterion_values(selected, criterion)[s])
        per_seed.append(entry)
    if selected is None:
        why = "no validation rows: seed 0 is saved"
    else:
        why = f"the seed with the best validation {criterion} of its selected epoch" + (
            " (of the last epoch: select is none)" if config.select is None else ""
        )
    return {
        "format": REPORT_FORMAT,
        "config": config.to_dict(),
        "sources": sources,
        "columns": {k: v for k, v in columns.items()},
        "data": summary,
        "seeds": seeds,
        "seed": seed,
        "timing": timing,
        "epochs": list(range(1, epochs + 1)),
        "validation": curves,
        "loss": np.asarray(result.loss, np.float64),
        "top_share": np.asarray(result.top_share, np.float64),
        "per_seed": per_seed,
        "selection": {
            "select": config.select,
            "seed_criterion": criterion,
            "chosen_seed": chosen,
            "selected_epoch": int(result.selected_epoch[chosen]),
            "why": why,
            "note": "'selected' is each seed's returned parameters re-estimated on the validation rows "
            "(SNIPS; DR with one reward model fitted on the training rows, shared by the seeds); the "
            "per-epoch curves are the estimates recorded during training (DR's reward model per seed). "
            "Epoch 0 is the initial policy.",
        },
        "notes": notes,
    }


def _fit_summary(report: dict, *, features: bool = True) -> str:
    data = report["data"]
    lines = [
        f"{data['rows']} rows ({data['training_rows']} training, {data['validation_rows']} validation), "
        f"{data['items']} items, reward mean {data['reward_mean']:.4f}, pscore "
        f"{data['pscore_min']:.3g}..{data['pscore_max']:.3g}, uniform-policy ESS "
        f"{data['uniform_policy_weights']['ess']:.1f}"
    ]
    if features:
        lines.append("  context features: " + "; ".join(data["context_features"]))
        lines.append("  item features: " + "; ".join(data["item_features"]))
    for entry in report["per_seed"]:
        line = f"  seed {entry['index']}: selected epoch {entry['selected_epoch']}"
        for name, est in entry.get("selected", {}).items():
            line += f", {name} {est['value']:.4f} [{est['low']:.4f}, {est['high']:.4f}]"
        lines.append(line)
    lines.append(f"  kept seed {report['selection']['chosen_seed']}: {report['selection']['why']}")
    lines.extend(f"  note: {note}" for note in report["notes"])
    return "\n".join(lines)


def _check_out_dir(out: str | os.PathLike, overwrite: bool) -> Path:
    """``out`` as a directory we can write a model into, checked before training."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError("out", f"{path} is a file, expected a directory")
    if path.is_dir() and any(path.iterdir()) and not (path / "model.json").is_file() and not overwrite:
        raise InputError("out", f"{path} is not empty and holds no towerjax model; pass overwrite=True")
    problem = unwritable(path)
    if problem:
        raise InputError("out", problem)
    return path


def _save_fit(directory: Path, policy: SavedPolicy, report: dict, overwrite: bool) -> None:
    try:
        save_model(
            directory,
            params=policy.params,
            config=policy.config,
            item_ids=policy.item_ids,
            item_features=policy.item_features,
            encoding=policy.encoding,
            metadata={
                "source": report["sources"],
                "columns": {
                    k: None if v is None else str(v) for k, v in report["columns"].items() if k != "context"
                },
                "chosen_seed": report["selection"]["chosen_seed"],
                "report": "report.json",
            },
            overwrite=overwrite,
        )
    except InputError as err:
        if err.argument == "directory":
            raise InputError("out", err.message) from None
        raise
    (directory / "report.json").write_text(jsonio.dumps(report, indent=2))
    plot_curves(report, directory / "curves.png")


def plot_curves(report: dict, path: str | os.PathLike | None = None):
    """The validation SNIPS and DR estimates per epoch with ± 1.96 s.e. bands, one line per seed.

    ``report`` is :attr:`FitResult.report` (or ``report.json`` read back). The kept seed
    is drawn bold with its selected epoch marked; the dotted line is the logging policy's
    value on the validation rows (their mean reward). Returns the matplotlib ``Figure``
    (saved to ``path`` when given).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    epochs = np.asarray(report["epochs"])
    chosen = report["selection"]["chosen_seed"]
    reference = report["data"].get("validation_reward_mean")
    for ax, name, title in zip(axes, ("snips", "dr"), ("SNIPS", "DR"), strict=True):
        curves = report["validation"][name]["per_seed"]
        value = np.asarray(curves["value"], dtype=np.float64)
        low, high = np.asarray(curves["low"], np.float64), np.asarray(curves["high"], np.float64)
        drawn = False
        for s in range(value.shape[0]):
            if np.all(np.isnan(value[s])):
                continue
            drawn = True
            bold = s == chosen
            (line,) = ax.plot(
                epochs, value[s], lw=2.2 if bold else 1.0, alpha=1.0 if bold else 0.6, label=f"seed {s}"
            )
            ax.fill_between(epochs, low[s], high[s], color=line.get_color(), alpha=0.18 if bold else 0.07)
            epoch = report["per_seed"][s]["selected_epoch"]
            if bold and 1 <= epoch <= len(epochs):
                ax.plot([epoch], [value[s][epoch - 1]], "o", color=line.get_color(), label="selected epoch")
        if not drawn:
            ax.text(0.5, 0.5, "no validation estimates", ha="center", va="center", transform=ax.transAxes)
        elif reference is not None:
            ax.axhline(reference, color="0.4", ls=":", lw=1, label="logging policy (mean reward)")
        ax.set_title(f"validation {title} ± 1.96 s.e.")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("estimated value")
    if path is not None:
        _save_figure(figure, path, "path")
    return figure


# --------------------------------------------------------------------------- loading


def _load(model: Any, argument: str = "model") -> SavedPolicy:
    """A :class:`SavedPolicy` from a directory (or the policy itself); InputError naming ``argument``."""
    if isinstance(model, SavedPolicy):
        policy = model
    elif isinstance(model, FitResult):
        policy = model.policy
    elif isinstance(model, str | os.PathLike):
        try:
            policy = load_model(model)
        except InputError as err:
            raise InputError(argument, err.message) from None
    else:
        raise InputError(argument, f"expected a model directory or a SavedPolicy, got {type(model).__name__}")
    if policy.encoding is None:
        raise InputError(
            argument,
            f"{_label(model, 'the policy')}: has no encoding.json, so its contexts cannot be built from a "
            "table (train it from a table: towerjax train --logs, or save_model(encoding=...))",
        )
    return policy


def _encode_contexts(encoding: FrameEncoding, frame: Any, *, argument: str, label: str):
    """``(contexts (an array or Features), unseen counts per column, rows with an unseen value)``."""
    _require_columns(
        frame, encoding.context_columns, argument=argument, where=f"{label} (a context column of the model)"
    )
    try:
        return _catching_unseen(lambda: encoding.encode_contexts(frame, unknown="warn"))
    except FrameValidationError as err:
        raise _frame_error(err, argument, label) from None


def _with_items(
    policy: SavedPolicy, items: Any, item_column: Hashable, label: str
) -> tuple[SavedPolicy, int]:
    """The policy over the catalogue of an item table (encoded with its encoding), and the
    rows whose item id or feature value got the out-of-vocabulary id 0."""
    _require_columns(items, [item_column], argument="item_column", where=f"items {label}")
    try:
        features, _, unseen_rows = _catching_unseen(
            lambda: policy.encoding.encode_items(items, unknown="warn")
        )
    except FrameValidationError as err:
        raise _frame_error(err, "items", label) from None
    except InputError as err:
        raise InputError("items", f"{label}: {err.message}") from None
    ids = [_plain_id(v) for v in _column_values(items, item_column)]
    try:
        return SavedPolicy(
            config=policy.config,
            params=policy.params,
            item_features=features,
            item_ids=ids,
            metadata=policy.metadata,
            context_spec=policy.context_spec,
        ), unseen_rows
    except InputError as err:
        raise InputError("items", f"{label}: column {item_column!r}: {err.message}") from None


# --------------------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` returns: one entry per model, then the paired differences.

    Attributes:
      names: each model's name (its directory as given).
      estimates: per model, ``{estimator: Estimate}`` (Open Bandit Pipeline's names, no aliases).
      randomized: per model, ``{"value", "stderr", "low", "high"}`` of
        :func:`~towerjax.metrics.randomized_value`, or ``None`` (not requested).
      differences: per model after the first, ``{"model", "baseline", "estimators": {name:
        {"value", "stderr", "low", "high"}}}``: that model's estimate minus the first's.
      summary: the logs (``rows``, ``reward_mean``, ...) and per model ``items``,
        ``unseen_rows`` (rows with a context value not in the training vocabulary: an unseen
        id, a value rarer than its ``min_count``, or a missing one, all given the
        out-of-vocabulary id 0), ``unseen_columns`` (those rows per column), ``reward_model``.
    """

    names: list[str]
    estimates: list[dict[str, Estimate]]
    randomized: list[dict] | None
    differences: list[dict]
    summary: dict

    def to_dict(self) -> dict:
        """JSON-ready (write it with :func:`towerjax.jsonio.dumps`)."""
        models = []
        for i, name in enumerate(self.names):
            models.append(
                {
                    "name": name,
                    **self.summary["models"][i],
                    "estimates": {k: v.to_dict() for k, v in self.estimates[i].items()},
                    "randomized": None if self.randomized is None else self.randomized[i],
                }
            )
        return {
            "logs": {k: v for k, v in self.summary.items() if k != "models"},
            "models": models,
            "differences": self.differences,
        }

    def table(self) -> str:
        """The estimates as text: one block per model, then the differences."""
        lines = []
        logs = self.summary
        lines.append(
            f"{logs['source']}: {logs['rows']} rows, reward mean {logs['reward_mean']:.4f}, "
            f"pscore {logs['pscore_min']:.3g}..{logs['pscore_max']:.3g}"
        )
        header = f"  {'estimator':<13}{'value':>9}   {'95% interval':<20} {'bootstrap 95%':<20} {'ESS':>8} {'max w':>8}"
        for i, name in enumerate(self.names):
            info = self.summary["models"][i]
            lines.append(f"{name}: {info['items']} items" + _unseen_text(info))
            lines.append(header)
            for estimator, est in self.estimates[i].items():
                diag = est.diagnostics
                lines.append(
                    f"  {estimator:<13}{est.value:>9.4f}   {_interval(est.wald_low, est.wald_high):<20} "
                    f"{_interval(est.bootstrap_low, est.bootstrap_high):<20} "
                    f"{'' if diag is None else f'{diag.ess:.1f}':>8} {'' if diag is None else f'{diag.max_weight:.3g}':>8}"
                )
            if self.randomized is not None:
                r = self.randomized[i]
                lines.append(f"  {'randomized':<13}{r['value']:>9.4f}   {_interval(r['low'], r['high']):<20}")
        for diff in self.differences:
            lines.append(f"{diff['model']} minus {diff['baseline']} (paired on the same rows):")
            for estimator, d in diff["estimators"].items():
                lines.append(f"  {estimator:<13}{d['value']:>+9.4f}   {_interval(d['low'], d['high']):<20}")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike | None = None):
        """Each estimator's value with its 95% (Wald) interval, one row of the figure per model.

        Returns the matplotlib ``Figure`` (saved to ``path`` when given).
        """
        from matplotlib.figure import Figure

        rows = len(self.names)
        names = list(self.estimates[0])
        height = 0.3 * (len(names) + 2) + 0.6
        figure = Figure(figsize=(7, height * rows), layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
        for i, ax in enumerate(axes):
            labels, values, lows, highs = [], [], [], []
            for estimator, est in self.estimates[i].items():
                labels.append(estimator)
                values.append(est.value)
                lows.append(est.wald_low)
                highs.append(est.wald_high)
            if self.randomized is not None:
                r = self.randomized[i]
                labels.append("randomized")
                values.append(r["value"])
                lows.append(r["low"])
                highs.append(r["high"])
            y = np.arange(len(labels))[::-1]
            values, lows, highs = np.asarray(values), np.asarray(lows), np.asarray(highs)
            ax.errorbar(values, y, xerr=[values - lows, highs - values], fmt="o", capsize=3)
            ax.set_yticks(y, labels)
            ax.set_title(self.names[i], fontsize=9)
            ax.grid(axis="x", alpha=0.3)
        axes[-1].set_xlabel("estimated value (95% interval)")
        if path is not None:
            _save_figure(figure, path, "plot")
        return figure


def _unseen_text(info: dict) -> str:
    """``"; 3 row(s) with a value not in the training vocabulary (user_id 3): id 0"`` or ``""``."""
    if not info["unseen_rows"]:
        return ""
    columns = ", ".join(f"{c} {r}" for c, r in info["unseen_columns"].items())
    return (
        f"; {info['unseen_rows']} row(s) with a value not in the training vocabulary ({columns}), "
        "given the out-of-vocabulary id 0"
    )


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"[{low:.4f}, {high:.4f}]"


@functools.partial(jax.jit, static_argnums=0)
def _cross_fit(reward_model: RewardModel, key: jax.Array, data: LoggedData) -> jax.Array:
    return reward_model.cross_fit(key, data)


def _row_terms(
    pi: np.ndarray, action: np.ndarray, reward: np.ndarray, pscore: np.ndarray, q_hat: np.ndarray
) -> dict:
    """Per estimator ``(value, [n] influence)``: the per-row terms whose mean difference is paired."""
    rows = np.arange(len(action))
    w = pi[rows, action] / pscore
    ipw = w * reward
    mean_w = w.mean()
    snipw = ipw.sum() / w.sum() if mean_w > 0 else 0.0
    snipw_influence = w * (reward - snipw) / mean_w if mean_w > 0 else np.zeros_like(w)
    dr = (pi * q_hat).sum(axis=1) + w * (reward - q_hat[rows, action])
    return {
        "ipw": (ipw.mean(), ipw - ipw.mean()),
        "snipw": (snipw, snipw_influence),
        "dr": (dr.mean(), dr - dr.mean()),
    }


def evaluate(
    models: Any,
    logs: Any,
    *,
    items: Any = None,
    item_column: Hashable = "item_id",
    reward_column: Hashable = "reward",
    pscore_column: Hashable = "pscore",
    randomized: bool = False,
    seed: int = 0,
    n_bootstrap: int = 1000,
    progress: Progress = None,
) -> Evaluation:
    """Off-policy estimates of saved policies on logs, side by side with paired differences.

    For each model: its contexts are built from ``logs`` with the model's encoding (a
    value not in the training vocabulary, such as a new user id, gets the
    out-of-vocabulary id 0; the rows are counted, never an error), its policy
    ``pi(.|x_i)`` over the catalogue (the saved one, or ``items`` encoded with the model's
    encoding) is evaluated by every estimator of
    :func:`~towerjax.evaluation.off_policy_estimates` (value, standard error, Wald and
    bootstrap 95% intervals, weight diagnostics), the DR family with a reward model
    cross-fitted on these logs (at least 2 folds; BCE for rewards in ``[0, 1]``, else squared
    error; the same key for every model).

    Paired differences. For the second and later models, ``ipw``, ``snipw`` and ``dr`` minus
    the first model's: every model is evaluated on the same rows, so the difference of two
    estimates is the mean of the difference of their per-row terms (for ``snipw``, of their
    delta-method influences ``w_i (r_i - V) / mean(w)``), whose standard error is
    ``std(d_i, ddof=1) / sqrt(n)``; the interval is ``± 1.96`` of it. The rows the models
    share cancel out, so the difference is estimated far more precisely than either value.

    ``randomized=True`` (logs of a uniform logging policy) adds the unbiased value
    (:func:`~towerjax.metrics.randomized_value`) with its 95% interval; without a
    ``pscore_column`` in the logs the propensities are then ``1/A``.

    Args:
      models: a model directory (or :class:`~towerjax.saved.SavedPolicy` / :class:`FitResult`),
        or a list of them.
      logs: the evaluation logs (path or table) with the models' context columns.
      items: an item table (path or table) to evaluate over instead of the saved catalogue.
      item_column, reward_column, pscore_column: the logs' columns (and the item table's id).
      randomized: the logs come from a uniform logging policy.
      seed: the key of the reward models and the bootstrap.
      n_bootstrap: bootstrap resamples.
      progress: called with one line per step (e.g. ``print``).

    Raises:
      InputError: naming ``model``, ``logs``, ``items`` or a ``*_column``.
    """
    say = progress or (lambda line: None)
    if isinstance(models, str | os.PathLike | SavedPolicy | FitResult):
        models = [models]
    models = list(models)
    if not models:
        raise InputError("model", "expected at least one model")
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    policies = [_load(m) for m in models]
    names = [_label(m, f"model {i}") for i, m in enumerate(models)]
    label = _label(logs, "logs")
    frame = read_table(logs, argument="logs")
    _require_columns(frame, [item_column], argument="item_column", where=f"the logs {label}")
    _require_columns(frame, [reward_column], argument="reward_column", where=f"the logs {label}")
    uniform_pscore = randomized and pscore_column not in _column_names(frame)
    if not uniform_pscore:
        _require_columns(frame, [pscore_column], argument="pscore_column", where=f"the logs {label}")
    items_label = None if items is None else _label(items, "items")
    item_table = None if items is None else read_table(items, argument="items")
    key_q, key_bootstrap = jax.random.split(jax.random.key(seed))

    estimates, randomized_values, terms, infos = [], [], [], []
    logged = None
    for name, policy in zip(names, policies, strict=True):
        unseen_items, encoding = 0, policy.encoding
        if item_table is not None:
            policy, unseen_items = _with_items(policy, item_table, item_column, items_label)
        table = frame
        if uniform_pscore:
            n = _n_rows(frame, item_column)
            table = {
                item_column: frame[item_column],
                reward_column: frame[reward_column],
                pscore_column: np.full(n, 1.0 / policy.n_items),
            }
        action, reward, pscore = _logged_columns(
            table,
            policy.item_ids,
            item_column=item_column,
            reward_column=reward_column,
            pscore_column=pscore_column,
            argument="logs",
            label=label,
        )
        if action.shape[0] < 2:
            raise InputError("logs", f"{label}: has {action.shape[0]} row, expected at least 2")
        logged = (reward, pscore)
        context, unseen, unseen_rows = _encode_contexts(encoding, frame, argument="logs", label=label)
        reward_config = dataclasses.replace(
            policy.config.reward_model,
            folds=max(2, policy.config.reward_model.folds),
            loss="bce" if np.all((reward >= 0) & (reward <= 1)) else "mse",
        )
        say(
            f"evaluating {name} on {action.shape[0]} rows of {label}: reward model "
            f"({reward_config.folds} folds, {reward_config.loss}) ..."
        )
        data = LoggedData(
            context=context if isinstance(context, Features) else jnp.asarray(context),
            action_context=policy.item_features,
            action=jnp.asarray(action, jnp.int32),
            reward=jnp.asarray(reward, jnp.float32),
            pscore=jnp.asarray(pscore, jnp.float32),
        )
        q_hat = np.asarray(_cross_fit(RewardModel(reward_config), key_q, data), np.float64)
        pi = policy.action_dist(context)[:, :, 0]
        est = off_policy_estimates(
            pi, action, reward, pscore, q_hat, key=key_bootstrap, n_bootstrap=n_bootstrap
        )
        estimates.append({k: v for k, v in est.items() if k not in ALIASES})
        if randomized:
            value = jax.device_get(randomized_value(pi, action, reward, pscore))
            randomized_values.append(
                {k: float(v) for k, v in _interval_dict(value.value, value.stderr).items()}
            )
        terms.append(_row_terms(pi, action, reward, pscore, q_hat))
        infos.append(
            {
                "path": name,
                "items": policy.n_items,
                "unseen_rows": int(unseen_rows),
                "unseen_columns": {str(k): v for k, v in unseen.items()},
                "unseen_item_rows": int(unseen_items),
                "reward_model": dataclasses.asdict(reward_config),
            }
        )
    differences = []
    n = len(logged[0])
    for j in range(1, len(names)):
        entry = {}
        for estimator in DIFFERENCE_ESTIMATORS:
            (value_a, inf_a), (value_b, inf_b) = terms[0][estimator], terms[j][estimator]
            stderr = float(np.std(inf_b - inf_a, ddof=1) / math.sqrt(n))
            entry[estimator] = {k: float(v) for k, v in _interval_dict(value_b - value_a, stderr).items()}
        differences.append(
            {
                "model": names[j],
                "baseline": names[0],
                "estimators": entry,
                "note": "paired: the mean over the same rows of the difference of the per-row terms "
                "(snipw: of the delta-method influences); stderr = std(d, ddof=1) / sqrt(n), interval ± 1.96 stderr",
            }
        )
    reward, pscore = logged
    summary = {
        "source": label,
        "items_source": items_label,
        "rows": int(n),
        "reward_mean": float(reward.mean()),
        "pscore_min": float(pscore.min()),
        "pscore_max": float(pscore.max()),
        "pscore": "1/A (no pscore column; randomized logs)" if uniform_pscore else str(pscore_column),
        "randomized": bool(randomized),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "models": infos,
    }
    return Evaluation(names, estimates, randomized_values if randomized else None, differences, summary)


# --------------------------------------------------------------------------- recommendations


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """What :func:`recommend` returns.

    Attributes:
      table: a pandas DataFrame, one row per context: ``row`` (its position in the
        contexts table), the kept columns, then ``item_1, score_1, ..., item_k, score_k``.
      item_index: ``[n, k]`` rows of the catalogue.
      item_ids: ``[n, k]`` the catalogue's ids.
      scores: ``[n, k]`` the scores ``s(x_i, a)`` (decreasing for top-k; slate order for
        ``explore``).
      unseen_rows: rows with a value not in the training vocabulary (an unseen id, a value
        rarer than its ``min_count``, or a missing one), given the out-of-vocabulary id 0.
      unseen_columns: those rows per column.
      explore: whether the lists are Boltzmann slates.
    """

    table: Any
    item_index: np.ndarray
    item_ids: np.ndarray
    scores: np.ndarray
    unseen_rows: int
    unseen_columns: dict
    explore: bool


@functools.partial(jax.jit, static_argnames=("k", "chunk_size", "context_chunk_size"))
def _top_k(context_emb, item_emb, *, k, chunk_size, context_chunk_size):
    return top_k_items(context_emb, item_emb, k, chunk_size=chunk_size, context_chunk_size=context_chunk_size)


def recommend(
    model: Any,
    contexts: Any,
    *,
    k: int,
    explore: bool = False,
    seed: int = 0,
    keep_columns: Sequence[Hashable] = (),
    out: str | os.PathLike | None = None,
    progress: Progress = None,
) -> Recommendations:
    """The top ``k`` items of a saved policy for each context row (or Boltzmann slates).

    Contexts are encoded with the model's encoding: a value not in the training vocabulary
    (a new user id) gets the out-of-vocabulary id 0 and the rows are counted in
    ``unseen_rows``, never an error. The top ``k`` is
    exact (:func:`~towerjax.retrieval.top_k_items`, chunked over items and contexts, ties to
    the smaller item index). ``explore=True`` draws slates of ``k`` distinct items from the
    policy ``softmax(s / tau)`` instead (:meth:`~towerjax.saved.SavedPolicy.explore`, key
    from ``seed``).

    Args:
      model: a model directory or a :class:`~towerjax.saved.SavedPolicy`.
      contexts: the contexts (path or table) with the model's context columns.
      k: items per row, ``1 <= k <= A``.
      explore: Boltzmann slates instead of the top ``k``.
      seed: root seed of the slates' draws.
      keep_columns: columns of ``contexts`` copied into the output (e.g. a user id).
      out: a ``.csv`` / ``.parquet`` file to write the table to.
      progress: called with one line per step.

    Raises:
      InputError: naming ``model``, ``contexts``, ``k``, ``keep_columns`` or ``out``.
    """
    import pandas as pd

    say = progress or (lambda line: None)
    policy = _load(model)
    k = check_positive_int("k", k)
    if k > policy.n_items:
        raise InputError("k", f"expected at most the model's {policy.n_items} items, got {k}")
    if out is not None and _suffix(Path(out)) not in TABLE_SUFFIXES:
        raise InputError(
            "out",
            f"{out}: unknown file type {_suffix(Path(out)) or '(none)'!r}, expected one of {TABLE_SUFFIXES}",
        )
    label = _label(contexts, "contexts")
    frame = read_table(contexts, argument="contexts")
    keep_columns = [keep_columns] if isinstance(keep_columns, str) else list(keep_columns)
    _require_columns(frame, keep_columns, argument="keep_columns", where=label)
    context, unseen, unseen_rows = _encode_contexts(policy.encoding, frame, argument="contexts", label=label)
    n = _n_rows(frame, policy.encoding.context_columns[0])
    say(
        f"{'sampling slates' if explore else 'top'} {k} of {policy.n_items} items for {n} contexts from {label}"
    )
    if unseen_rows:
        say(
            f"  {unseen_rows} row(s) had a value not in the training vocabulary, given the out-of-vocabulary "
            "id 0: " + ", ".join(f"{c!s} {r}" for c, r in unseen.items())
        )
    context_emb = policy.embed_contexts(context)
    item_emb = policy.embed_items()
    if explore:
        index, _ = policy.explore(jax.random.key(seed), context, k)
        index = np.asarray(index)
        scores = np.asarray(jnp.einsum("nd,nkd->nk", context_emb, item_emb[index]))
    else:
        scores, index = _top_k(
            context_emb,
            item_emb,
            k=k,
            chunk_size=min(ITEM_CHUNK_SIZE, policy.n_items),
            context_chunk_size=CONTEXT_CHUNK_SIZE if n > CONTEXT_CHUNK_SIZE else None,
        )
        scores, index = np.asarray(scores), np.asarray(index)
    ids = policy.item_ids[index]
    columns: dict[str, Any] = {"row": np.arange(n)}
    for column in keep_columns:
        columns[str(column)] = np.asarray(frame[column])
    for j in range(k):
        columns[f"item_{j + 1}"] = ids[:, j]
        columns[f"score_{j + 1}"] = scores[:, j]
    table = pd.DataFrame(columns)
    if out is not None:
        write_table(table, out, argument="out")
        say(f"wrote {out}")
    return Recommendations(
        table=table,
        item_index=index,
        item_ids=ids,
        scores=scores,
        unseen_rows=int(unseen_rows),
        unseen_columns={str(c): v for c, v in unseen.items()},
        explore=bool(explore),
    )


def export(model: Any, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes a saved model's serving files into ``out`` (:meth:`~towerjax.saved.SavedPolicy.export`).

    Raises:
      InputError: naming ``model`` or ``out``.
    """
    if isinstance(model, str | os.PathLike):
        try:
            policy = load_model(model)
        except InputError as err:
            raise InputError("model", err.message) from None
    else:
        policy = model.policy if isinstance(model, FitResult) else model
    try:
        return policy.export(out, overwrite=overwrite)
    except InputError as err:
        if err.argument == "directory":
            raise InputError("out", err.message) from None
        raise
