"""Numbers stored as text: telling such a column apart, parsing it, and the messages about it.

A text column that looks numeric (numbers stored as strings, perhaps with a marker such as
``"n/a"``) is never made categorical silently: under ``numeric_strings="error"`` it is a
problem naming the column (:func:`numeric_text_message`), ``"parse"`` reads it as numbers
(:func:`parse_numeric_text`, reporting the rows that are not numbers) and ``"categorical"``
embeds its distinct values as ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from towerjax.tables.access import MISSING_MARKERS, TableView, is_missing, rows_message, show, show_value
from towerjax.tables.columns import is_real
from towerjax.tables.errors import Problems

__all__ = ["numeric_text", "numeric_text_message", "parse_numeric_text"]

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
    """The problem of a numeric-looking text column under ``numeric_strings="error"``."""
    floats, not_numbers, text_number = text
    first = int(np.flatnonzero(~np.isnan(floats))[0])
    what = "numbers stored as text" if text_number else "numbers mixed with text"
    message = f"{role} {column!r}: holds {what} ({table.row(first)} is {show(values[first])}"
    if len(not_numbers):
        message += f"; {table.row(int(not_numbers[0]))} is {show_value(values[not_numbers[0]])}, not a number"
    return (
        message + "), which as a categorical column would be one id per distinct value; pass "
        "numeric_strings='parse' to read it as numbers, or numeric_strings='categorical' to embed "
        f"it as ids (a mapping such as {{{column!r}: 'parse'}} sets one column)"
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
