"""Tables and saved models in, tables out: the file side of the own-logs workflow.

Reading and writing ``.csv`` / ``.csv.gz`` / ``.parquet`` / ``.pq`` tables (or passing a
pandas ``DataFrame`` or a dict of arrays through), figure paths, the checks that a table has
the columns an argument names, loading a saved policy and encoding a table's contexts with its
encoding. Every problem is an :class:`~towerjax.checks.InputError` naming the argument, with a
one-line message naming the file and the column.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from towerjax.checks import InputError
from towerjax.outputs import check_output, write_file
from towerjax.serving import SavedPolicy, load_model
from towerjax.tables import FrameEncoding, FrameValidationError, UnseenCategoryWarning, is_dataframe

__all__ = [
    "IMAGE_SUFFIXES",
    "TABLE_SUFFIXES",
    "check_image_path",
    "read_table",
    "write_table",
]

TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
"""File name endings :func:`read_table` and :func:`write_table` understand."""

IMAGE_SUFFIXES = (".png", ".pdf", ".svg")
"""File name endings of the figures :func:`save_figure` writes."""

Progress = Callable[[str], None] | None
"""Where the workflow's functions say what they do: called with one line per step, or ``None``."""


def say_to(progress: Progress) -> Callable[[str], None]:
    """``progress``, or a function that drops its line when ``progress`` is ``None``."""
    return progress or (lambda line: None)


# --------------------------------------------------------------------------- files


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return next((s for s in TABLE_SUFFIXES if name.endswith(s)), path.suffix.lower())


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def check_table_path(path: str | os.PathLike, *, argument: str) -> Path:
    """``path`` as a table file name (one of :data:`TABLE_SUFFIXES`), or InputError naming ``argument``."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise InputError(
            argument, f"{path}: unknown file type {suffix or '(none)'!r}, expected one of {TABLE_SUFFIXES}"
        )
    return path


def read_table(source: Any, *, argument: str = "table") -> Any:
    """A table from a ``.csv`` / ``.csv.gz`` / ``.parquet`` / ``.pq`` path, or ``source`` itself.

    A pandas ``DataFrame`` or a mapping of column name to array is returned as it is. Files
    are read with pandas' defaults (``read_csv``, ``read_parquet``, the latter through pyarrow).

    Raises:
      InputError: naming ``argument``, for an unknown file ending, a missing, empty or
        unreadable file, or a table with no rows.
    """
    if is_dataframe(source) or isinstance(source, Mapping):
        return source
    if not isinstance(source, str | os.PathLike):
        raise InputError(
            argument,
            f"expected a path to a {'/'.join(TABLE_SUFFIXES)} file, a DataFrame or a dict of arrays, "
            f"got {type(source).__name__}",
        )
    path = check_table_path(source, argument=argument)
    if not path.is_file():
        raise InputError(argument, f"{path}: {'not a file' if path.exists() else 'no such file'}")
    if path.stat().st_size == 0:
        raise InputError(argument, f"{path}: the file is empty")
    import pandas as pd

    kind = "CSV" if _suffix(path).startswith(".csv") else "Parquet"
    try:
        frame = pd.read_csv(path) if kind == "CSV" else pd.read_parquet(path)
    except ImportError as err:
        raise InputError(argument, f"{path}: reading {kind} needs pyarrow ({_one_line(err)})") from None
    except Exception as err:  # pandas and pyarrow raise many types for a bad file
        raise InputError(argument, f"{path}: cannot be read as {kind} ({_one_line(err)})") from None
    if len(frame) == 0:
        raise InputError(argument, f"{path}: has no rows (columns: {listed(frame.columns)})")
    return frame


def write_table(table: Any, path: str | os.PathLike, *, argument: str = "out") -> Path:
    """Writes a DataFrame (or a dict of equal-length arrays) to ``.csv`` / ``.parquet`` by ``path``'s ending
    (through :func:`towerjax.outputs.write_file`: checked, and written whole or not at all).

    Raises:
      InputError: naming ``argument``, for an unknown ending or a path that cannot be written.
    """
    import pandas as pd

    path = check_output_table(path, argument=argument)
    frame = table if is_dataframe(table) else pd.DataFrame(dict(table))
    csv = _suffix(path).startswith(".csv")
    compression = "gzip" if _suffix(path) == ".csv.gz" else None
    try:
        write_file(
            path,
            (lambda to: frame.to_csv(to, index=False, compression=compression))
            if csv
            else (lambda to: frame.to_parquet(to, index=False)),
            argument=argument,
        )
    except ImportError as err:
        raise InputError(argument, f"{path}: writing Parquet needs pyarrow ({_one_line(err)})") from None
    return path


def check_output_table(path: str | os.PathLike, *, argument: str) -> Path:
    """``path`` as a table file towerjax can write (:func:`check_table_path` and
    :func:`towerjax.outputs.check_output`), checked before any work; creates nothing."""
    return check_output(check_table_path(path, argument=argument), argument=argument, folder=False)


def check_image_path(path: str | os.PathLike, *, argument: str = "plot") -> Path:
    """``path`` as a figure file towerjax can write (``.png``, ``.pdf``, ``.svg``;
    :func:`towerjax.outputs.check_output`), or InputError naming ``argument``. Creates nothing."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            argument,
            f"{path}: unknown image type {path.suffix or '(none)'!r}, expected one of {IMAGE_SUFFIXES}",
        )
    return check_output(path, argument=argument, folder=False)


def save_figure(figure: Any, path: str | os.PathLike, *, argument: str) -> None:
    """Saves a matplotlib ``figure`` to ``path`` (at 120 dpi); InputError naming ``argument``
    for an unknown image ending or a path that cannot be written."""
    path = check_image_path(path, argument=argument)
    write_file(path, lambda to: figure.savefig(to, dpi=120), argument=argument)


# --------------------------------------------------------------------------- columns


def source_label(source: Any, default: str) -> str:
    """How messages name a table or model: its path as given, else ``default``."""
    return str(source) if isinstance(source, str | os.PathLike) else default


def column_names(table: Any) -> list[Any]:
    """The column names of a DataFrame or a dict of arrays."""
    return list(table.columns) if is_dataframe(table) else list(table.keys())


def n_rows(table: Any, column: Hashable) -> int:
    """The rows of ``table`` (the length of ``column``)."""
    return len(table[column])


def listed(names: Sequence[Any], limit: int = 12) -> str:
    """``"a, b, c"``; past ``limit`` names, the first ``limit`` and ``"... (n in all)"``."""
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def require_columns(table: Any, columns: Sequence[Hashable], *, argument: str, where: str) -> None:
    """InputError naming ``argument`` for the first of ``columns`` not in ``table`` (described as ``where``)."""
    present = column_names(table)
    for column in columns:
        if column not in present:
            raise InputError(argument, f"column {column!r} is not in {where} (columns: {listed(present)})")


def frame_error(err: FrameValidationError, argument: str, label: str) -> InputError:
    """The tables layer's problems as one line naming the file ``label`` and, through its
    messages, the column and rows."""
    problems = [
        " ".join(p.split()).removeprefix("frame: ").removeprefix("item table: ") for p in err.problems
    ]
    text = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)
    return InputError(argument, f"{label}: {text}")


def catching_unseen(fn: Callable[[], Any]) -> tuple[Any, dict[Hashable, int], int]:
    """``(fn(), rows with an unseen category per column, rows with any)``.

    The tables layer's :class:`~towerjax.tables.UnseenCategoryWarning` are counted; other
    warnings pass on.
    """
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


def plain_id(value: Any) -> Any:
    """A table cell as a plain Python id: numpy scalars unwrapped, whole floats as ``int``."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def column_values(table: Any, column: Hashable) -> list[Any]:
    """A column of ``table`` as a Python list."""
    raw = table[column]
    return list(raw.tolist() if hasattr(raw, "tolist") else list(raw))


def object_column(raw: Any) -> np.ndarray:
    """A column as a 1-d numpy array (object dtype for anything but plain numbers)."""
    values = np.asarray(raw)
    return values if values.dtype.kind in "biuf" else values.astype(object)


# --------------------------------------------------------------------------- saved models


def load_policy(model: Any, argument: str = "model") -> SavedPolicy:
    """A :class:`~towerjax.serving.SavedPolicy` from a model directory (or the policy itself)
    that can encode tables: InputError naming ``argument`` otherwise."""
    if isinstance(model, SavedPolicy):
        policy = model
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
            f"{source_label(model, 'the policy')}: has no encoding.json, so its contexts cannot be built "
            "from a table (train it from a table: towerjax train --logs, or save_model(encoding=...))",
        )
    return policy


def encode_contexts(encoding: FrameEncoding, frame: Any, *, argument: str, label: str):
    """``(contexts (an array or Features), unseen counts per column, rows with an unseen value)``
    of the table ``frame`` (named ``label``), encoded with a model's ``encoding``."""
    require_columns(
        frame, encoding.context_columns, argument=argument, where=f"{label} (a context column of the model)"
    )
    try:
        return catching_unseen(lambda: encoding.encode_contexts(frame, unknown="warn"))
    except FrameValidationError as err:
        raise frame_error(err, argument, label) from None
