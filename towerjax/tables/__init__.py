"""Tables in: logged events and an item table (pandas DataFrames or dicts of numpy arrays) as
:class:`~towerjax.data.LoggedData`, with the :class:`FrameEncoding` that built its features.

:func:`logged_data_from_frame` turns one row per logged event (context columns, the logged
item's id, the reward and the propensity) plus an item table (one row per item, its id and
features) into a validated :class:`~towerjax.data.LoggedData`, and returns the
:class:`FrameEncoding` that built its features.

Features. Numeric columns are dense features, used as they are or standardised
(``standardize=``: ``(value - mean) / std`` with the training table's statistics).
Categorical columns (object, string or pandas category dtype, and any column named in
``categorical=``, such as an integer ``user_id``) become one ``[n]`` int32 id array each,
which the tower looks up in its own embedding table (:class:`~towerjax.features.Features`).
A text column that looks numeric (numbers stored as strings, perhaps with a marker such as
``"n/a"``) is never made categorical silently: it is an error naming the column unless
``numeric_strings=`` says to parse it or to treat it as categorical. How columns are
encoded is one value, :class:`EncodingOptions` (or its fields as keywords).

Ids. A categorical column's vocabulary holds the training values seen at least
``min_count`` times (:data:`CONTEXT_MIN_COUNT` for a context column, every value of an
item-table column) as ids ``1..V``; id ``0`` is the out-of-vocabulary bucket of unseen, rare
and missing values. ``hash_buckets={column: B}`` maps a value to ``1 + h(value) mod B``
instead (:func:`stable_hash_ids`: the same in every process). The item id is itself an
embedded feature of the item tower (table :data:`ITEM_ID_FEATURE`) unless
``item_id_embedding=False``.

Reuse and serving. Pass the :class:`FrameEncoding` back as ``encoding=`` to build a test log
the same way, save it with :meth:`FrameEncoding.to_dict` and load it with
:meth:`FrameEncoding.from_dict`, encode new rows with :meth:`FrameEncoding.encode_contexts` and
:meth:`FrameEncoding.encode_items` (an unseen value becomes id 0, counted in an
:class:`UnseenCategoryWarning`).

Every problem in the input is reported with its column and row (0-based position in the
table): all problems found are collected into one :class:`FrameValidationError` (an
:class:`~towerjax.checks.InputError`, so a ``ValueError``), one line each.

Modules: ``errors`` (the error, the warning, the problem collector), ``access`` (a table
seen through a few operations; :func:`is_dataframe`, :func:`is_missing`), ``columns`` (reading
one column), ``vocabulary`` (:class:`CategoricalColumn`, hashing, vocabularies),
``numeric_text`` (numbers stored as text), ``options`` (:class:`EncodingOptions`), ``encoder``
(one table's columns as features), ``encoding`` (:class:`FrameEncoding` and its JSON,
``json_values``), ``events`` (actions, rewards, propensities) and ``assembly``
(:func:`logged_data_from_frame`).
"""

from towerjax.tables.access import MISSING_MARKERS, is_dataframe, is_missing
from towerjax.tables.assembly import logged_data_from_frame
from towerjax.tables.encoding import FrameEncoding
from towerjax.tables.errors import FrameValidationError, UnseenCategoryWarning
from towerjax.tables.options import (
    NUMERIC_STRINGS,
    UNKNOWN,
    EncodingOptions,
    check_option_names,
    resolve_options,
)
from towerjax.tables.vocabulary import (
    CONTEXT_MIN_COUNT,
    ITEM_ID_FEATURE,
    CategoricalColumn,
    stable_hash,
    stable_hash_ids,
)

__all__ = [
    "CONTEXT_MIN_COUNT",
    "ITEM_ID_FEATURE",
    "MISSING_MARKERS",
    "NUMERIC_STRINGS",
    "UNKNOWN",
    "CategoricalColumn",
    "EncodingOptions",
    "FrameEncoding",
    "FrameValidationError",
    "UnseenCategoryWarning",
    "check_option_names",
    "is_dataframe",
    "is_missing",
    "logged_data_from_frame",
    "resolve_options",
    "stable_hash",
    "stable_hash_ids",
]
