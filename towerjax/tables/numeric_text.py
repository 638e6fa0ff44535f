"""Numbers stored as text: telling such a column apart, parsing it, and the messages about it.

A text column that looks numeric (numbers stored as strings, perhaps with a marker such as
``"n/a"``) is never made categorical silently: under ``numeric_strings="error"`` it is a
problem naming the column (:func:`numeric_text_message`), ``"parse"`` reads it as numbers
(:func:`parse_numeric_text`, reporting the rows that are not numbers) and ``"categorical"``
embeds its distinct values as ids. The reward and propensity columns must be numbers:
:func:`numeric_1d` reads them, naming the first row that is not a number, its value and how
many more there are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from towerjax.tables.access import MISSING_MARKERS, TableView, is_missing, rows_message, show, show_value
from towerjax.tables.columns import check_length, first_unhashable, is_real, missing_mask, read_column
from towerjax.tables.errors import Problems
from towerjax.tables.vocabulary import factorize

__all__ = ["numeric_1d", "numeric_text", "numeric_text_message", "parse_numeric_text"]

# The first character (after leading spaces) of text that float() or a missing marker may accept.
_NUMBER_STARTS = ("", *"+-.0123456789iInN?#")


def numeric_text(codes: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """A text column that looks numeric, parsed: ``(floats, rows that are not numbers, any text number)``.

    ``codes`` and ``uniques`` are the column factorized
    (:func:`~towerjax.tables.vocabulary.factorize`). A column looks numeric when at least one
    value is a number (a number, or text that parses as one) and numbers are at least as many
    as other text; missing values and markers (``"n/a"``, ``""``, ...) count as neither.
    ``None`` when it does not. Each distinct value is parsed once, and text that cannot start a
    number or a marker (``"u123"``) is not parsed at all.
    """
    if len(uniques) == 0:
        return None
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    parsed = _parse_numbers(uniques)
    is_number = np.fromiter((isinstance(p, float) for p in parsed), bool, len(parsed))
    is_other = np.fromiter((p is None for p in parsed), bool, len(parsed))
    n_numbers, n_other = int(counts[is_number].sum()), int(counts[is_other].sum())
    if n_numbers == 0 or n_other > n_numbers:
        return None
    unique_floats = np.array([p if isinstance(p, float) else np.nan for p in parsed])
    valid = codes >= 0
    safe = np.maximum(codes, 0)
    floats = np.where(valid, unique_floats[safe], np.nan)
    not_numbers = np.flatnonzero(~valid | ~is_number[safe])
    text_number = any(
        isinstance(p, float) and isinstance(v, (str, bytes))
        for v, p in zip(uniques.tolist(), parsed, strict=True)
    )
    return floats, not_numbers, text_number


def _parse_numbers(uniques: np.ndarray) -> list[float | str | None]:
    """:func:`_parse_number` of each distinct value; text whose first character cannot
    start a number or a marker is ``None`` without being parsed (a vectorised screen)."""
    values = uniques.tolist()
    if not values or not all(isinstance(v, str) for v in values):
        return [_parse_number(v) for v in values]
    first = np.char.lstrip(np.asarray(values, dtype=str)).astype("U1")  # "" for empty text
    out: list[float | str | None] = [None] * len(values)
    for i in np.flatnonzero(np.isin(first, _NUMBER_STARTS)).tolist():
        out[i] = _parse_number(values[i])
    return out


def _parse_number(value: Any) -> float | str | None:
    """``value`` as a float (a number or numeric text), ``"missing"`` (missing or a marker), or None."""
    if is_missing(value):
        return "missing"
    if is_real(value):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lower() in MISSING_MARKERS:
        return "missing"
    try:
        return float(text)
    except ValueError:
        return None


def numeric_text_message(
    table: TableView, column: Any, values: np.ndarray, text: tuple[np.ndarray, np.ndarray, bool], role: str
) -> str:
    """The problem of a numeric-looking text column under ``numeric_strings="error"``: the
    first row that is not a number, its value and how many more (when there are such rows)."""
    floats, not_numbers, text_number = text
    first = int(np.flatnonzero(~np.isnan(floats))[0])
    example = f"{table.row(first)} is {show(values[first])}"
    categorical = f"numeric_strings='categorical' to embed it as ids (a mapping such as {{{column!r}: 'parse'}} sets one column)"
    if len(not_numbers):
        stored = "numbers stored as text" if text_number else "numbers"
        return (
            rows_message(
                f"{role} {column!r}", table, not_numbers, show_value(values[not_numbers[0]]), "a number"
            )
            + f"; its other values are {stored} ({example}): fill or drop those rows and pass "
            f"numeric_strings='parse' to read it as numbers, or {categorical}"
        )
    return (
        f"{role} {column!r}: holds numbers stored as text ({example}), which as a categorical column "
        f"would be one id per distinct value; pass numeric_strings='parse' to read it as numbers, or {categorical}"
    )


def parse_numeric_text(
    table: TableView,
    column: Any,
    values: np.ndarray,
    text: tuple[np.ndarray, np.ndarray, bool],
    role: str,
    problems: Problems,
) -> np.ndarray | None:
    """The parsed floats of a numeric-looking text column; reports the rows that are not numbers."""
    floats, not_numbers, _ = text
    if len(not_numbers):
        problems.add(
            column,
            rows_message(
                f"{role} {column!r}",
                table,
                not_numbers,
                show_value(values[not_numbers[0]]),
                "a number (this column is parsed as numbers; fill or drop these rows)",
            ),
        )
        return None
    return floats


def numeric_1d(table: TableView, column: Any, n: int, problems: Problems, role: str) -> np.ndarray | None:
    """``[n]`` float64 values of a column of numbers (missing values NaN).

    A reward or propensity can only be a number, so numbers stored as text (a CSV column
    with one bad cell, a Parquet string column) are read as numbers whatever
    ``numeric_strings`` says (it decides what a feature column becomes). Reports a value that
    is not a number by its first row and value and how many more rows hold one (``reward
    column 'r': row 5 is 'abc', expected a number (and 2 more: rows 9, 12)``), an unreadable
    column, a 2-d one or a wrong length.
    """
    kind, values, _ = read_column(table, column)
    if values is None or kind not in ("numeric", "categorical"):
        problems.add(column, f"{role} {column!r}: has {kind}, expected numbers")
        return None
    if values.ndim != 1:
        problems.add(column, f"{role} {column!r}: expected a 1-d column, got shape {values.shape}")
        return None
    if not check_length(values, n, column, role, table, problems):
        return None
    if kind == "numeric":
        return values
    return _text_as_numbers(table, column, values, role, problems)


def _text_as_numbers(
    table: TableView, column: Any, values: np.ndarray, role: str, problems: Problems
) -> np.ndarray | None:
    """``[n]`` floats of a reward or propensity column that holds text (NaN where missing or
    a missing marker); reports the rows that are not numbers."""
    prefix = f"{role} {column!r}"
    try:
        codes, uniques = factorize(values, missing_mask(values))
    except TypeError:
        bad = first_unhashable(values)
        problems.add(column, f"{prefix}: {table.row(bad)} is {show(values[bad])}, expected a number")
        return None
    if len(uniques) == 0:
        return np.full(len(values), np.nan)
    parsed = _parse_numbers(uniques)
    present, safe = codes >= 0, np.maximum(codes, 0)
    not_number = np.fromiter((p is None for p in parsed), bool, len(parsed))
    bad_rows = np.flatnonzero(present & not_number[safe])
    if bad_rows.size:
        problems.add(column, rows_message(prefix, table, bad_rows, show(values[bad_rows[0]]), "a number"))
        return None
    unique_floats = np.array([p if isinstance(p, float) else np.nan for p in parsed])
    return np.where(present, unique_floats[safe], np.nan)
