"""Logged bandit feedback from a table: :func:`logged_data_from_frame` (SPEC 1).

One row per logged event (context columns, the logged item's id, the reward and the
propensity) plus an item table (one row per item, its id and features) become a validated
:class:`~towerjax.data.LoggedData`, with the :class:`~towerjax.tables.FrameEncoding` that built
its features. The steps: the role columns are checked present, the logged columns read
(:mod:`towerjax.tables.events`), the feature columns encoded (:mod:`towerjax.tables.encoder`)
under the :class:`~towerjax.tables.EncodingOptions` or a given encoding, and every problem
found raised together as one :class:`~towerjax.tables.FrameValidationError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.features import Features, default_embedding_dim
from towerjax.tables.access import TableView, rows_message, show
from towerjax.tables.columns import object_array
from towerjax.tables.encoder import encode_columns
from towerjax.tables.encoding import FrameEncoding, catalogue_ids, check_feature_names
from towerjax.tables.errors import Problems, UnseenRows, warn_unseen
from towerjax.tables.events import actions, item_index, propensities, rewards
from towerjax.tables.options import EncodingOptions, check_option_names, check_unknown, resolve_options

__all__ = ["logged_data_from_frame"]


def logged_data_from_frame(
    frame: Any,
    *,
    context_columns: Sequence[Hashable],
    action_column: Hashable,
    reward_column: Hashable,
    pscore_column: Hashable,
    item_table: Any,
    item_id_column: Hashable | None = None,
    item_feature_columns: Sequence[Hashable] | None = None,
    options: EncodingOptions | None = None,
    encoding: FrameEncoding | None = None,
    unknown: str = "warn",
    **option_fields: Any,
) -> tuple[LoggedData, FrameEncoding]:
    """Builds :class:`~towerjax.data.LoggedData` from a table of logged events.

    Args:
      frame: a pandas ``DataFrame`` or a mapping from column name to a 1-d array of
        length ``n >= 1`` (a numeric context column may also be an ``[n, k]`` array: ``k``
        features).
      context_columns: columns forming the context ``x`` (numeric columns dense, used as
        they are or standardised; categorical ones embedded ids).
      action_column: the logged item's id; mapped to the row of ``item_table`` with that
        id, which becomes the action index.
      reward_column: the observed reward (finite numbers).
      pscore_column: the logging propensity ``pi_0(a_i|x_i)``, each in ``(0, 1]``.
      item_table: a ``DataFrame`` or mapping with one row per item (at least 2).
      item_id_column: the column of ``item_table`` holding item ids; ``None`` uses the
        DataFrame's index, or for a mapping the row positions ``0..A-1``.
      item_feature_columns: the item-table columns forming ``e_a`` besides the item id;
        ``None`` means every column except ``item_id_column`` (possibly none).
      options: how the feature columns are encoded (:class:`~towerjax.tables.EncodingOptions`:
        categorical columns, ``min_count``, ``hash_buckets``, ``embedding_dims``,
        ``item_id_embedding``, ``numeric_strings``, ``standardize``); default
        ``EncodingOptions(**option_fields)``.
      encoding: a :class:`~towerjax.tables.FrameEncoding` returned earlier; its columns,
        vocabularies, hashing, widths, standardisation statistics and parsed columns are
        reused (of the options only ``numeric_strings`` applies), so a test frame's features
        line up with the training frame's.
      unknown: with ``encoding``, what a value not in a vocabulary (or an item id not in
        the encoding's catalogue) becomes: ``"warn"`` (id 0, and an
        :class:`~towerjax.tables.UnseenCategoryWarning` with the count of such rows),
        ``"ignore"`` (id 0, silently) or ``"error"`` (a problem naming the column and row).
      **option_fields: the fields of :class:`~towerjax.tables.EncodingOptions` as keywords
        (``categorical=["user_id"]``, ``numeric_strings="parse"``, ``standardize=["age"]``,
        ...), instead of ``options``.

    Returns:
      ``(data, encoding)``: the validated container and how its features were built.
      ``data.context`` is a ``[n, d_x]`` float array when no context column is categorical,
      else :class:`~towerjax.features.Features`; ``data.action_context`` likewise (Features
      whenever the item id is embedded).

    Raises:
      FrameValidationError: (an :class:`~towerjax.checks.InputError`, so a ``ValueError``)
        listing every problem found, each naming its column and row: a missing column, an
        empty table, a missing or out-of-range propensity, an action whose id is not in
        the item table, a non-finite number, numbers stored as text, an unhashable
        category, duplicate item ids.
      InputError: for a bad argument (an option field such as ``categorical``,
        ``min_count``, ``hash_buckets``, ``embedding_dims``, ``numeric_strings``,
        ``standardize``; ``unknown``; ``options`` given with option keywords; an
        ``encoding`` built for other columns).
      TypeError: for a keyword that is neither an argument nor an option field.
    """
    check_option_names(option_fields, "logged_data_from_frame")
    context_columns = _column_list("context_columns", context_columns)
    events, items = TableView(frame, "frame", "frame"), TableView(item_table, "item table", "item_table")
    if item_feature_columns is None:
        item_feature_columns = tuple(c for c in items.column_names() if c != item_id_column)
    roles = _Roles(
        context_columns,
        action_column,
        reward_column,
        pscore_column,
        item_id_column,
        _column_list("item_feature_columns", item_feature_columns),
    )
    check_unknown(unknown)
    options = resolve_options(options, option_fields)
    options.check_columns(roles.context + roles.item_features, item_id_column)
    if encoding is not None:
        _check_encoding_columns(encoding, roles)
    elif not options.item_id_embedding and not roles.item_features:
        raise InputError(
            "item_id_embedding",
            "the item table has no feature columns, so the item tower needs the item id (item_id_embedding=True)",
        )
    _check_columns_present(events, items, roles)

    problems = Problems()
    n, n_items = _table_lengths(events, items, roles, problems)
    ids, id_index, id_role = item_index(items, roles.item_id, n_items, problems)
    action = actions(events, roles.action, n, ids, id_index, id_role, problems)
    reward = rewards(events, roles.reward, n, problems)
    pscore = propensities(events, roles.pscore, n, problems)
    item_id_dim = None
    if encoding is not None:
        item_id_dim = encoding.item_id_dim
    elif options.item_id_embedding:
        item_id_dim = options.embedding_dim(item_id_column) if item_id_column is not None else None
        item_id_dim = item_id_dim or default_embedding_dim(n_items + 1)
    context, action_context, fitted, unseen = _encode_features(
        events, items, roles, (n, n_items), ids or (), item_id_dim, options, unknown, encoding, problems
    )
    problems.raise_if_any()
    if encoding is not None:
        _check_encoding_features(encoding, fitted)
    else:
        _check_embedding_dims(options, fitted)
    warn_unseen(unseen, unknown)
    data = LoggedData.from_arrays(
        context=context, action_context=action_context, action=action, reward=reward, pscore=pscore
    )
    return data, fitted


@dataclasses.dataclass(frozen=True)
class _Roles:
    """The column playing each role: the ``*_column(s)`` arguments, lists as tuples."""

    context: tuple[Hashable, ...]
    action: Hashable
    reward: Hashable
    pscore: Hashable
    item_id: Hashable | None
    item_features: tuple[Hashable, ...]


def _column_list(argument: str, columns: Sequence[Hashable]) -> tuple[Hashable, ...]:
    """``columns`` as a tuple; TypeError for a single string (a common slip for ``[name]``)."""
    if isinstance(columns, (str, bytes)):
        raise TypeError(f"{argument}: expected a sequence of column names, got the string {columns!r}")
    return tuple(columns)


def _check_encoding_columns(encoding: FrameEncoding, roles: _Roles) -> None:
    """InputError unless ``encoding`` was built for the same context and item feature columns."""
    for argument, columns, built_for in (
        ("context_columns", roles.context, encoding.context_columns),
        ("item_feature_columns", roles.item_features, encoding.item_feature_columns),
    ):
        if tuple(built_for) != columns:
            raise InputError("encoding", f"built for {argument} {list(built_for)}, got {list(columns)}")


def _check_columns_present(events: TableView, items: TableView, roles: _Roles) -> None:
    """FrameValidationError naming every column that an argument names but its table lacks."""
    problems = Problems()
    named = [
        ("action_column", roles.action),
        ("reward_column", roles.reward),
        ("pscore_column", roles.pscore),
        *(("context_columns", c) for c in roles.context),
    ]
    for role, c in named:
        if not events.has(c):
            problems.add(
                c, f"frame: missing column {c!r} (named by {role}); columns are {events.column_names()}"
            )
    item_missing = [c for c in roles.item_features if not items.has(c)]
    if roles.item_id is not None and not items.has(roles.item_id):
        item_missing.insert(0, roles.item_id)
    for c in item_missing:
        role = "item_id_column" if c == roles.item_id else "item_feature_columns"
        problems.add(
            c, f"item table: missing column {c!r} (named by {role}); columns are {items.column_names()}"
        )
    problems.raise_if_any()


def _table_lengths(events: TableView, items: TableView, roles: _Roles, problems: Problems) -> tuple[int, int]:
    """``(n, A)``: the rows of the action column and of the item table's id (or first) column.

    Raises FrameValidationError with the problems so far when either cannot be read.
    """
    n = events.length(roles.action, problems, "action column")
    n_items = None
    if roles.item_id is not None:
        n_items = items.length(roles.item_id, problems, "item table id column")
    if n_items is None:
        first = roles.item_features[0] if roles.item_features else None
        n_items = (
            items.index_length() if first is None else items.length(first, problems, "item table column")
        )
    if n is None or n_items is None:
        raise problems.error()
    if n == 0:
        problems.add(events.argument, "frame: has no rows, expected at least one logged event")
    if n_items < 2:
        problems.add(
            items.argument,
            f"item table: has {n_items} row{'' if n_items == 1 else 's'}, expected at least 2 items",
        )
    problems.raise_if_any()
    return n, n_items


def _encode_features(
    events: TableView,
    items: TableView,
    roles: _Roles,
    sizes: tuple[int, int],
    item_ids: tuple[Any, ...],
    item_id_dim: int | None,
    options: EncodingOptions,
    unknown: str,
    encoding: FrameEncoding | None,
    problems: Problems,
) -> tuple[np.ndarray | Features | None, np.ndarray | Features | None, FrameEncoding, list[UnseenRows]]:
    """The context and item tower inputs, the encoding that built them, and the unseen rows.

    Vocabularies, hashing, widths, statistics and parsed columns come from ``encoding``
    when given, else are fitted here. The inputs are ``None`` when a problem was found.
    """
    n, n_items = sizes
    known = (
        (None, None)
        if encoding is None
        else (encoding.known_columns("context"), encoding.known_columns("item"))
    )
    context = encode_columns(
        events, roles.context, n, "context column", "context", options, unknown, known[0], problems
    )
    item = encode_columns(
        items, roles.item_features, n_items, "item table column", "item", options, unknown, known[1], problems
    )
    unseen = context.unseen + item.unseen
    item_id_table = None
    if item_id_dim is not None:
        if encoding is None:
            item_id_table = (np.arange(1, n_items + 1, dtype=np.int32), n_items + 1, item_id_dim)
        else:
            label = "item table index" if roles.item_id is None else "item table id column"
            column = items.argument if roles.item_id is None else roles.item_id
            found = catalogue_ids(encoding, object_array(item_ids))
            bad = np.flatnonzero(found == 0)
            if bad.size:
                first = show(item_ids[bad[0]])
                if unknown == "error":
                    problems.add(
                        column,
                        rows_message(f"{label} {column!r}", items, bad, first, None)
                        + ", an item id not in the encoding; pass unknown='ignore' or 'warn' to give it id 0",
                    )
                else:
                    unseen.append(
                        UnseenRows("item", n_items, label, column, bad, f"{items.row(bad[0])} is {first}")
                    )
            item_id_table = (found, len(encoding.item_catalogue) + 1, item_id_dim)
    catalogue = (
        None if encoding is None or encoding.item_catalogue == tuple(item_ids) else encoding.item_catalogue
    )
    fitted = FrameEncoding(
        context_columns=roles.context,
        item_feature_columns=roles.item_features,
        context_feature_names=context.names,
        item_feature_names=item.names,
        item_ids=item_ids,
        context_categorical=context.categorical,
        item_categorical=item.categorical,
        item_id_dim=item_id_dim,
        item_id_vocabulary=catalogue,
        context_standardization=context.standardization,
        item_standardization=item.standardization,
        context_parsed_columns=context.parsed,
        item_parsed_columns=item.parsed,
        item_id_column=roles.item_id,
    )
    if problems.messages:
        return None, None, fitted, unseen
    return context.features(), item.features(item_id_table), fitted, unseen


def _check_encoding_features(encoding: FrameEncoding, fitted: FrameEncoding) -> None:
    """InputError unless the features built with ``encoding`` have its feature names and tables."""
    for role in ("context", "item"):
        check_feature_names(role, fitted.feature_names(role), encoding.feature_names(role))
        built = [c.table for c in fitted.categorical_columns(role)]
        expected = [c.table for c in encoding.categorical_columns(role)]
        if built != expected:
            raise InputError("encoding", f"{role} tables {built} differ from the encoding's {expected}")


def _check_embedding_dims(options: EncodingOptions, fitted: FrameEncoding) -> None:
    """InputError naming ``embedding_dims`` for a column that turned out not to be embedded."""
    embedded = {c.column for c in fitted.context_categorical + fitted.item_categorical}
    if fitted.item_id_dim is not None and fitted.item_id_column is not None:
        embedded.add(fitted.item_id_column)
    for column in options.embedding_dims or {}:
        if column not in embedded:
            raise InputError(
                "embedding_dims",
                f"names {column!r}, which is a numeric (dense) feature, not an embedded one; name it in "
                "categorical= to embed it as ids",
            )
