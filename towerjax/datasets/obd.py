"""The Open Bandit Dataset (OBD) small sample, read from the wheel of ``obp==0.4.1``.

The wheel carries 10,000 logged impressions for each behaviour policy (``random``,
``bts``) and campaign (``all``, ``men``, ``women``) at
``obp/dataset/obd/{policy}/{campaign}/{campaign}.csv``, with the item table
``item_context.csv`` beside it. The wheel is fetched with :func:`fetch_obd` (pip in a
subprocess, sha256-checked, cached) and read with the standard library: obp is never
installed or imported and pandas is not needed.

Positions. Each OBD impression shows three items in three slots; each CSV row is one
(impression, slot) pair, and its ``propensity_score`` is the behaviour policy's
probability of showing that item *in that slot*, ``pi_0(a | x, k)``. The file numbers
slots 1, 2, 3; :class:`OpenBanditData` stores them 0-based. :meth:`OpenBanditData.to_logged_data`
offers the two usual readings:

- ``position=k``: only the rows shown in slot ``k``, a single-slot bandit whose
  propensities are exactly ``pi_0(a | x, k)``;
- ``position=None`` (pooled): every row, with a one-hot of the slot appended to the
  context (``position_feature=True``), so a policy ``pi(a | x, k)`` can depend on the slot.
  Each row's propensity is still its own slot's, so an IPS average over the pooled rows
  estimates the slot-frequency-weighted mean of the per-slot values.

Item tables. Every log folder carries its own ``item_context.csv``, and the files encode
categorical item features by hashes salted per file: the ``bts`` and ``random`` tables of a
campaign list the same items (same ids, same order, same numeric ``item_feature_0``) but
every category has a different label in each, so their one-hot columns have other names
and another order, and a model trained on one table's features would read the other's as
different items. Since the labels themselves never agree, :meth:`OpenBanditData.align_items`
matches each category value through the items (the label item ``a`` carries here is the
label it carries there; the map must be one to one, and the numeric columns equal) and
returns the log re-expressed in a reference log's item table: the same features and the
same action index for the same item id. In the sample every categorical column of every
campaign maps one to one between ``bts`` and ``random``, and no label is shared.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from towerjax.checks import InputError, check_choice
from towerjax.data import LoggedData
from towerjax.datasets import _parse
from towerjax.datasets._wheel import OBP_WHEEL, DatasetFileError, _Source, fetch_wheel

__all__ = ["BEHAVIOR_POLICIES", "CAMPAIGNS", "OpenBanditData", "fetch_obd", "load_obd"]

BEHAVIOR_POLICIES = ("bts", "random")
CAMPAIGNS = ("all", "men", "women")
_ROOT = "obp/dataset/obd"


def fetch_obd(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Downloads (once) and returns the cached wheel of ``obp==0.4.1`` holding the OBD sample.

    See :func:`~towerjax.datasets.fetch_wheel` for the cache location and the errors.
    """
    return fetch_wheel(OBP_WHEEL.name, OBP_WHEEL.version, OBP_WHEEL.sha256, cache_dir)


@dataclasses.dataclass(frozen=True)
class OpenBanditData:
    """One OBD log: ``n`` (impression, slot) rows and the item table of ``A`` items.

    Attributes:
      behavior_policy: ``"bts"`` or ``"random"``.
      campaign: ``"all"``, ``"men"`` or ``"women"``.
      timestamp: ``[n]`` ``datetime64[us]`` in UTC, or ``None`` without a timestamp column.
      item_id: ``[n]`` the logged item's id, as in the file.
      action: ``[n]`` the logged item's row in the item table (``item_ids[action] == item_id``).
      position: ``[n]`` the slot, 0-based (the file's 1, 2, 3 become 0, 1, 2).
      click: ``[n]`` the reward, 0 or 1.
      propensity_score: ``[n]`` ``pi_0(item | x, slot)``, in ``(0, 1]``.
      user_features: ``[n, d_u]`` one-hot of the categorical ``user_feature_*`` columns.
      user_feature_names: ``"user_feature_0=<value>"`` for each column of ``user_features``.
      user_item_affinity: ``[n, k]`` the ``user-item_affinity_*`` columns, in index order.
      item_ids: ``[A]`` the item table's ids, in file order.
      item_features: ``[A, d_a]`` the item table's numeric ``item_feature_*`` columns kept
        as they are and categorical ones one-hot encoded, in column order.
      item_feature_names: the name of each column of ``item_features``.
      n_positions: the number of slots (largest slot + 1).
    """

    behavior_policy: str
    campaign: str
    timestamp: np.ndarray | None
    item_id: np.ndarray
    action: np.ndarray
    position: np.ndarray
    click: np.ndarray
    propensity_score: np.ndarray
    user_features: np.ndarray
    user_feature_names: tuple[str, ...]
    user_item_affinity: np.ndarray
    item_ids: np.ndarray
    item_features: np.ndarray
    item_feature_names: tuple[str, ...]
    n_positions: int

    @property
    def n_rounds(self) -> int:
        """Number of logged (impression, slot) rows."""
        return int(self.item_id.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of items in the item table."""
        return int(self.item_ids.shape[0])

    def summary(self) -> str:
        """One line: the log's name, rows, items, positions and click rate."""
        return (
            f"obd {self.behavior_policy}/{self.campaign}: {self.n_rounds} rows, {self.n_actions} items, "
            f"{self.n_positions} positions, click rate {self.click.mean():.4f}"
        )

    def context(self, *, affinity: bool = True) -> np.ndarray:
        """``[n, d_x]``: the user one-hot features, then (``affinity=True``) the affinity columns."""
        blocks = [self.user_features] + ([self.user_item_affinity] if affinity else [])
        return np.concatenate(blocks, axis=1)

    def context_feature_names(
        self, position: int | None = None, *, affinity: bool = True, position_feature: bool = True
    ) -> tuple[str, ...]:
        """The name of each context column :meth:`to_logged_data` builds with the same arguments."""
        names = list(self.user_feature_names)
        if affinity:
            names += [f"user-item_affinity_{j}" for j in range(self.user_item_affinity.shape[1])]
        if position is None and position_feature:
            names += [f"position={k}" for k in range(self.n_positions)]
        return tuple(names)

    def to_logged_data(
        self, position: int | None = None, *, affinity: bool = True, position_feature: bool = True
    ) -> LoggedData:
        """The log as :class:`~towerjax.data.LoggedData` (reward = click, pscore = propensity_score).

        Args:
          position: a 0-based slot to keep only the rows shown there (a single-slot
            bandit); ``None`` pools every row (see the module docstring).
          affinity: append the user-item affinity columns to the context.
          position_feature: when pooling, append a one-hot of the slot to the context.
        """
        context = self.context(affinity=affinity)
        if position is None:
            rows = np.arange(self.n_rounds)
            if position_feature:
                slot = np.eye(self.n_positions)[self.position]
                context = np.concatenate([context, slot], axis=1)
        else:
            if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
                raise TypeError(f"position: expected a 0-based slot (int) or None, got {position!r}")
            if not 0 <= position < self.n_positions:
                raise InputError("position", f"expected a slot in [0, {self.n_positions}), got {position}")
            rows = np.flatnonzero(self.position == position)
            if rows.size == 0:
                raise InputError("position", f"no logged rows in slot {position}")
        return LoggedData.from_arrays(
            context=context[rows],
            action_context=self.item_features,
            action=self.action[rows],
            reward=self.click[rows].astype(np.float64),
            pscore=self.propensity_score[rows],
        )

    def item_category_map(self, reference: OpenBanditData) -> dict[str, dict[str, str]]:
        """``{column: {label here: label in reference}}`` for each categorical item feature.

        Items are matched by ``item_id``; a category's label here maps to the label the
        same items carry in ``reference`` (module docstring, Item tables).

        Raises:
          DatasetFileError: naming both logs, when the tables list different item ids or
            other feature columns, a numeric column's values differ, or the labels do not
            correspond one to one (then the tables do not hold the same categories).
        """
        where = (
            f"item tables of {self.behavior_policy}/{self.campaign} and "
            f"{reference.behavior_policy}/{reference.campaign}"
        )
        if sorted(self.item_ids.tolist()) != sorted(reference.item_ids.tolist()):
            only_here = sorted(set(self.item_ids.tolist()) - set(reference.item_ids.tolist()))
            only_there = sorted(set(reference.item_ids.tolist()) - set(self.item_ids.tolist()))
            raise DatasetFileError(
                f"{where}: list different items ({self.n_actions} and {reference.n_actions}; "
                f"only in the first {only_here[:5]}, only in the second {only_there[:5]})"
            )
        rows = {i: r for r, i in enumerate(self.item_ids.tolist())}
        mine = self.item_features[[rows[i] for i in reference.item_ids.tolist()]]  # reference's item order
        columns, theirs = _item_columns(self.item_feature_names), _item_columns(reference.item_feature_names)
        if list(columns) != list(theirs):
            raise DatasetFileError(
                f"{where}: have other item feature columns ({list(columns)} and {list(theirs)})"
            )
        out = {}
        for name, (here, numeric) in columns.items():
            there, ref_numeric = theirs[name]
            if numeric != ref_numeric:
                raise DatasetFileError(f"{where}: column {name!r} is numeric in one table only")
            if numeric:
                if not np.allclose(mine[:, here[0]], reference.item_features[:, there[0]], rtol=1e-9, atol=0):
                    raise DatasetFileError(f"{where}: numeric column {name!r} differs for the same items")
                continue
            labels = [self.item_feature_names[j].split("=", 1)[1] for j in here]
            ref_labels = [reference.item_feature_names[j].split("=", 1)[1] for j in there]
            codes = mine[:, here].argmax(axis=1)
            ref_codes = reference.item_features[:, there].argmax(axis=1)
            forward: dict[str, str] = {}
            backward: dict[str, str] = {}
            for item, a, b in zip(reference.item_ids.tolist(), codes, ref_codes, strict=True):
                label, ref_label = labels[a], ref_labels[b]
                if forward.setdefault(label, ref_label) != ref_label:
                    raise DatasetFileError(
                        f"{where}: column {name!r} does not map one to one: {label!r} of the first "
                        f"is {forward[label]!r} and {ref_label!r} (item {item}) in the second"
                    )
                if backward.setdefault(ref_label, label) != label:
                    raise DatasetFileError(
                        f"{where}: column {name!r} does not map one to one: {ref_label!r} of the second "
                        f"is {backward[ref_label]!r} and {label!r} (item {item}) in the first"
                    )
            out[name] = forward
        return out

    def align_items(self, reference: OpenBanditData) -> OpenBanditData:
        """This log in ``reference``'s item table, each category matched (module docstring, Item tables).

        Returns a copy with ``reference``'s ``item_ids``, ``item_features`` and
        ``item_feature_names``, and ``action`` re-indexed into that table, so an item id
        has the same features and action index in both logs. The map is checked first
        (:meth:`item_category_map`, which raises :class:`DatasetFileError` if there is none).
        """
        self.item_category_map(reference)
        rows = {i: r for r, i in enumerate(reference.item_ids.tolist())}
        return dataclasses.replace(
            self,
            action=np.array([rows[i] for i in self.item_id.tolist()], dtype=self.action.dtype),
            item_ids=reference.item_ids,
            item_features=reference.item_features,
            item_feature_names=reference.item_feature_names,
        )

    def to_bandit_feedback(self, *, affinity: bool = True) -> dict[str, Any]:
        """Open Bandit Pipeline's bandit-feedback dict, ``position`` 0-based (SPEC 1 keys).

        The context is :meth:`context` (full one-hot, where obp 0.4.1 drops the first
        category of each user feature and leaves out the affinity columns), and the item
        features are one-hot where obp label-encodes them.
        """
        return {
            "n_rounds": self.n_rounds,
            "n_actions": self.n_actions,
            "context": self.context(affinity=affinity),
            "action_context": self.item_features,
            "action": self.action,
            "position": self.position,
            "reward": self.click,
            "pscore": self.propensity_score,
            "pi_b": None,
            "expected_reward": None,
        }


def load_obd(
    behavior_policy: str = "bts",
    campaign: str = "all",
    *,
    wheel: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> OpenBanditData:
    """Reads one OBD log (small sample) from the obp wheel.

    Args:
      behavior_policy: ``"bts"`` (Bernoulli Thompson sampling) or ``"random"``.
      campaign: ``"all"``, ``"men"`` or ``"women"``.
      wheel: a wheel file to read instead of the cached one (not checksum-checked), or a
        directory holding the same files: the root of an extracted wheel, or any folder
        containing ``{policy}/{campaign}/{campaign}.csv`` and its ``item_context.csv``
        (the full OBD release has this layout).
      cache_dir: where :func:`fetch_obd` keeps the wheel when ``wheel`` is not given.

    Raises:
      DatasetFileError: (a ``ValueError``) naming the file, and the column and row
        where relevant, for a missing, corrupt or malformed file.
      FetchError: when the wheel is not cached and pip cannot download it.
    """
    check_choice("behavior_policy", behavior_policy, BEHAVIOR_POLICIES)
    check_choice("campaign", campaign, CAMPAIGNS)
    path = fetch_obd(cache_dir) if wheel is None else wheel
    folder = f"{_ROOT}/{behavior_policy}/{campaign}"
    with _Source(
        path, f"Open Bandit Dataset ({behavior_policy}/{campaign}) from obp=={OBP_WHEEL.version}"
    ) as src:
        log_text, log_where = src.read(f"{folder}/{campaign}.csv", keep=3)
        item_text, item_where = src.read(f"{folder}/item_context.csv", keep=3)
    items = _read_csv(item_text, item_where)
    log = _read_csv(log_text, log_where)
    item_ids, item_rows, item_features, item_names = _item_table(items, item_where)
    _require(log, log_where, ["item_id", "position", "click", "propensity_score"])
    item_id = _parse.int_column(log["item_id"], log_where, "item_id")
    action = _parse.lookup(item_id, item_rows, log_where, "item_id", f"the item table {item_where}")
    position, click, pscore = _slot_click_propensity(log, log_where)
    n = len(item_id)
    user_features, user_names = _user_features(log, log_where, n)
    affinity_columns = _numbered(log, "user-item_affinity_")
    affinity = (
        np.stack([_parse.float_column(log[c], log_where, c) for c in affinity_columns], axis=1)
        if affinity_columns
        else np.zeros((n, 0))
    )
    timestamp = _timestamps(log["timestamp"], log_where) if "timestamp" in log else None

    return OpenBanditData(
        behavior_policy=behavior_policy,
        campaign=campaign,
        timestamp=timestamp,
        item_id=item_id,
        action=action,
        position=position,
        click=click,
        propensity_score=pscore,
        user_features=user_features,
        user_feature_names=user_names,
        user_item_affinity=affinity,
        item_ids=item_ids,
        item_features=item_features,
        item_feature_names=item_names,
        n_positions=int(position.max()) + 1 if n else 0,
    )


def _item_table(
    items: dict[str, list[str]], where: str
) -> tuple[np.ndarray, dict, np.ndarray, tuple[str, ...]]:
    """``(item_ids, row of each id, item_features [A, d_a], feature names)`` of ``item_context.csv``.

    Numeric ``item_feature_*`` columns are kept as they are, categorical ones one-hot
    encoded; without any, each item is its own one-hot feature.
    """
    _require(items, where, ["item_id"])
    item_ids = _parse.int_column(items["item_id"], where, "item_id")
    item_rows = _parse.index_of(item_ids, where, "item_id")
    blocks, names = [], []
    for column in _numbered(items, "item_feature_"):
        values = items[column]
        _parse.require_present(values, where, column)
        if _parse.is_numeric(values):
            blocks.append(_parse.float_column(values, where, column)[:, None])
            names.append(column)
        else:
            matrix, column_names, _ = _parse.one_hot(values, column)
            blocks.append(matrix)
            names.extend(column_names)
    if not blocks:
        return item_ids, item_rows, np.eye(len(item_ids)), tuple(f"item_id={i}" for i in item_ids.tolist())
    return item_ids, item_rows, np.concatenate(blocks, axis=1), tuple(names)


def _item_columns(names: tuple[str, ...]) -> dict[str, tuple[list[int], bool]]:
    """``{column: (indices into the item features, numeric?)}`` from the feature names.

    A numeric ``item_feature_k`` keeps its name; a categorical one became
    ``item_feature_k=<label>`` columns (as did ``item_id=<id>`` for a table without features).
    """
    out: dict[str, tuple[list[int], bool]] = {}
    for j, name in enumerate(names):
        column, sep, _ = name.partition("=")
        out.setdefault(column, ([], not sep))[0].append(j)
    return out


def _slot_click_propensity(
    log: dict[str, list[str]], where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The log's 0-based ``position``, ``click`` (0 or 1) and ``propensity_score`` in ``(0, 1]``."""
    slot = _parse.int_column(log["position"], where, "position")
    bad = np.flatnonzero(slot < 1)
    if bad.size:
        i = int(bad[0])
        raise DatasetFileError(
            f"{where}: column 'position', {_parse.row_ref(i)} is {log['position'][i]!r}, "
            "expected a 1-based slot (1, 2, 3, ...)"
        )
    click = _parse.int_column(log["click"], where, "click")
    bad = np.flatnonzero((click != 0) & (click != 1))
    if bad.size:
        i = int(bad[0])
        raise DatasetFileError(
            f"{where}: column 'click', {_parse.row_ref(i)} is {log['click'][i]!r}, expected 0 or 1"
        )
    pscore = _parse.float_column(log["propensity_score"], where, "propensity_score")
    bad = np.flatnonzero(~((pscore > 0) & (pscore <= 1)))
    if bad.size:
        i = int(bad[0])
        raise DatasetFileError(
            f"{where}: column 'propensity_score', {_parse.row_ref(i)} is "
            f"{log['propensity_score'][i]!r}, expected a value in (0, 1]"
        )
    return slot - 1, click, pscore


def _user_features(log: dict[str, list[str]], where: str, n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """``[n, d_u]`` one-hot of the categorical ``user_feature_*`` columns, and the column names."""
    blocks, names = [], []
    for column in _numbered(log, "user_feature_"):
        _parse.require_present(log[column], where, column)
        matrix, column_names, _ = _parse.one_hot(log[column], column)
        blocks.append(matrix)
        names.extend(column_names)
    return (np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))), tuple(names)


def _read_csv(text: str, where: str) -> dict[str, list[str]]:
    """Columns of a CSV file by header name; a leading unnamed index column is dropped."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise DatasetFileError(f"{where}: not a readable CSV file ({err})") from None
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise DatasetFileError(f"{where}: empty file, expected a CSV header and rows")
    header, body = rows[0], rows[1:]
    if not body:
        raise DatasetFileError(f"{where}: has a header but no data rows")
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise DatasetFileError(
                f"{where}: {_parse.row_ref(i)} has {len(row)} fields, expected {len(header)} as in the header"
            )
    columns = list(zip(*body, strict=True))
    return {name: list(columns[j]) for j, name in enumerate(header) if name != "" or j != 0}


def _require(table: dict[str, list[str]], where: str, names: list[str]) -> None:
    missing = [c for c in names if c not in table]
    if missing:
        raise DatasetFileError(f"{where}: missing column(s) {missing}; columns are {list(table)[:12]}")


def _numbered(table: dict[str, list[str]], prefix: str) -> list[str]:
    """Columns named ``prefix<k>``, ordered by ``k``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    found = [(int(m.group(1)), c) for c in table if (m := pattern.match(c))]
    return [c for _, c in sorted(found)]


def _timestamps(values: list[str], where: str) -> np.ndarray:
    """``datetime64[us]`` in UTC from ISO-8601 text such as ``2019-11-24 00:00:17.004101+00:00``."""
    if all(v.endswith("+00:00") for v in values):
        try:
            return np.array([v[:-6] for v in values], dtype="datetime64[us]")
        except ValueError:
            pass
    out = np.empty(len(values), dtype="datetime64[us]")
    for i, v in enumerate(values):
        try:
            stamp = dt.datetime.fromisoformat(v)
        except ValueError:
            raise DatasetFileError(
                f"{where}: column 'timestamp', {_parse.row_ref(i)} is {v!r}, expected an ISO-8601 time"
            ) from None
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
        out[i] = np.datetime64(stamp, "us")
    return out
