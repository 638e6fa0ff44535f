"""MovieLens-100K, read from the RecBole atomic files in the wheel of ``recbole==1.2.1``.

The wheel carries ``recbole/dataset_example/ml-100k/ml-100k.{inter,user,item}``: tab
separated text whose header names each field with its type (``user_id:token``,
``rating:float``, ``class:token_seq`` with space-separated genres). The wheel is fetched
with :func:`fetch_movielens` (pip in a subprocess, sha256-checked, cached) and read with
the standard library; RecBole is never installed or imported.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from towerjax.datasets import _parse
from towerjax.datasets._wheel import RECBOLE_WHEEL, DatasetFileError, _Source, fetch_wheel

__all__ = ["MovieLens100K", "fetch_movielens", "load_movielens_100k"]

_ROOT = "recbole/dataset_example/ml-100k"


def fetch_movielens(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Downloads (once) and returns the cached wheel of ``recbole==1.2.1`` holding ML-100K.

    See :func:`~towerjax.datasets.fetch_wheel` for the cache location and the errors.
    """
    return fetch_wheel(RECBOLE_WHEEL.name, RECBOLE_WHEEL.version, RECBOLE_WHEEL.sha256, cache_dir)


@dataclasses.dataclass(frozen=True)
class MovieLens100K:
    """Ratings of ``U`` users on ``I`` items with user and item features.

    Users and items are in the order of the ``.user`` and ``.item`` files; interactions
    in the order of the ``.inter`` file.

    Attributes:
      user_ids: ``[U]`` user ids from the ``.user`` file (int64 when all are integers).
      item_ids: ``[I]`` item ids from the ``.item`` file.
      user: ``[n]`` each rating's user, as a row of ``user_ids``.
      item: ``[n]`` each rating's item, as a row of ``item_ids``.
      rating: ``[n]`` float64 ratings (1 to 5 in ML-100K).
      timestamp: ``[n]`` int64 Unix seconds.
      age, gender, occupation: ``[U]`` the raw user attributes.
      user_features: ``[U, d_u]`` age standardised over users (one column), then one-hot
        gender, then one-hot occupation (categories sorted).
      user_feature_names: the name of each column of ``user_features``.
      title: ``[I]`` movie titles.
      release_year: ``[I]`` float64, NaN where the file has no year (``unkonwn``, ``V``).
      genres: per item, its genres.
      item_features: ``[I, d_i]`` multi-hot genres (sorted), then the release year
        standardised over items with a year (0 where missing), then a 0/1
        ``release_year_missing`` column.
      item_feature_names: the name of each column of ``item_features``.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    occupation: np.ndarray
    user_features: np.ndarray
    user_feature_names: tuple[str, ...]
    title: np.ndarray
    release_year: np.ndarray
    genres: tuple[tuple[str, ...], ...]
    item_features: np.ndarray
    item_feature_names: tuple[str, ...]

    @property
    def n_users(self) -> int:
        """Number of users ``U``."""
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items ``I``."""
        return int(self.item_ids.shape[0])

    @property
    def n_ratings(self) -> int:
        """Number of ratings ``n``."""
        return int(self.rating.shape[0])

    def summary(self) -> str:
        """One line: users, items and ratings."""
        return f"movielens-100k: {self.n_users} users, {self.n_items} items, {self.n_ratings} ratings"


def load_movielens_100k(
    *,
    wheel: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MovieLens100K:
    """Reads MovieLens-100K from the RecBole wheel.

    Args:
      wheel: a wheel file to read instead of the cached one (not checksum-checked), or a
        directory holding ``ml-100k.inter``, ``ml-100k.user`` and ``ml-100k.item``
        (directly, or at their path inside the wheel).
      cache_dir: where :func:`fetch_movielens` keeps the wheel when ``wheel`` is not given.

    Raises:
      DatasetFileError: (a ``ValueError``) naming the file, and the column and row
        where relevant, for a missing, corrupt or malformed file.
      FetchError: when the wheel is not cached and pip cannot download it.
    """
    path = fetch_movielens(cache_dir) if wheel is None else wheel
    with _Source(path, f"MovieLens-100K atomic files from recbole=={RECBOLE_WHEEL.version}") as src:
        inter_text, inter_where = src.read(f"{_ROOT}/ml-100k.inter")
        user_text, user_where = src.read(f"{_ROOT}/ml-100k.user")
        item_text, item_where = src.read(f"{_ROOT}/ml-100k.item")
    users = _read_atomic(user_text, user_where, ["user_id", "age", "gender", "occupation"])
    items = _read_atomic(item_text, item_where, ["item_id", "release_year", "class"])
    inter = _read_atomic(inter_text, inter_where, ["user_id", "item_id", "rating", "timestamp"])

    user_ids, user_rows, age, user_features, user_feature_names = _user_table(users, user_where)
    item_ids, item_rows, release_year, genres, item_features, item_feature_names = _item_table(
        items, item_where
    )
    title = np.array(items.get("movie_title", [""] * len(item_ids)), dtype=object)

    user = _parse.lookup(
        _ids(inter["user_id"]), user_rows, inter_where, "user_id", f"the user file {user_where}"
    )
    item = _parse.lookup(
        _ids(inter["item_id"]), item_rows, inter_where, "item_id", f"the item file {item_where}"
    )
    rating = _parse.float_column(inter["rating"], inter_where, "rating")
    timestamp = _parse.int_column(inter["timestamp"], inter_where, "timestamp")

    return MovieLens100K(
        user_ids=user_ids,
        item_ids=item_ids,
        user=user,
        item=item,
        rating=rating,
        timestamp=timestamp,
        age=age,
        gender=np.array(users["gender"], dtype=object),
        occupation=np.array(users["occupation"], dtype=object),
        user_features=user_features,
        user_feature_names=user_feature_names,
        title=title,
        release_year=release_year,
        genres=genres,
        item_features=item_features,
        item_feature_names=item_feature_names,
    )


def _user_table(
    users: dict[str, list[str]], where: str
) -> tuple[np.ndarray, dict, np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(user_ids, row of each id, age, user_features [U, d_u], feature names)`` of the ``.user`` file.

    The features are age standardised over users, then one-hot gender and occupation.
    """
    user_ids = _ids(users["user_id"])
    user_rows = _parse.index_of(user_ids, where, "user_id")
    age = _parse.int_column(users["age"], where, "age")
    for column in ("gender", "occupation"):
        _parse.require_present(users[column], where, column)
    gender_hot, gender_names, _ = _parse.one_hot(users["gender"], "gender")
    occupation_hot, occupation_names, _ = _parse.one_hot(users["occupation"], "occupation")
    features = np.concatenate(
        [_standardise(age.astype(np.float64))[:, None], gender_hot, occupation_hot], axis=1
    )
    return user_ids, user_rows, age, features, ("age", *gender_names, *occupation_names)


def _item_table(
    items: dict[str, list[str]], where: str
) -> tuple[np.ndarray, dict, np.ndarray, tuple[tuple[str, ...], ...], np.ndarray, tuple[str, ...]]:
    """``(item_ids, row of each id, release_year, genres, item_features [I, d_i], names)`` of the ``.item`` file.

    The features are multi-hot genres (sorted), the release year standardised over the
    items that have one (0 where missing) and a 0/1 ``release_year_missing`` column.
    """
    item_ids = _ids(items["item_id"])
    item_rows = _parse.index_of(item_ids, where, "item_id")
    genres = tuple(tuple(g for g in value.split(" ") if g) for value in items["class"])
    genre_names = sorted({g for item in genres for g in item})
    genre_column = {g: j for j, g in enumerate(genre_names)}
    multi_hot = np.zeros((len(item_ids), len(genre_names)))
    for i, item in enumerate(genres):
        for g in item:
            multi_hot[i, genre_column[g]] = 1.0
    release_year = np.array([_year(v) for v in items["release_year"]], dtype=np.float64)
    missing = np.isnan(release_year)
    year_scaled = np.zeros(len(item_ids))
    if (~missing).any():
        year_scaled[~missing] = _standardise(release_year[~missing])
    features = np.concatenate([multi_hot, year_scaled[:, None], missing[:, None].astype(np.float64)], axis=1)
    names = (*(f"genre={g}" for g in genre_names), "release_year", "release_year_missing")
    return item_ids, item_rows, release_year, genres, features, names


def _read_atomic(text: str, where: str, required: list[str]) -> dict[str, list[str]]:
    """Columns of a RecBole atomic file (tab separated, header ``name:type``) by field name."""
    lines = text.split("\n")
    while lines and lines[-1].strip("\r") == "":
        lines.pop()
    if not lines:
        raise DatasetFileError(f"{where}: empty file, expected a header such as 'user_id:token'")
    header = lines[0].rstrip("\r").split("\t")
    names = []
    for field in header:
        name, sep, kind = field.partition(":")
        if not sep or not name or not kind:
            raise DatasetFileError(f"{where}: header field {field!r} is not of the form 'name:type'")
        names.append(name)
    missing = [c for c in required if c not in names]
    if missing:
        raise DatasetFileError(f"{where}: missing field(s) {missing}; the header has {names}")
    rows = [line.rstrip("\r").split("\t") for line in lines[1:]]
    if not rows:
        raise DatasetFileError(f"{where}: has a header but no data rows")
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise DatasetFileError(
                f"{where}: {_parse.row_ref(i)} has {len(row)} tab-separated fields, expected {len(names)}"
            )
    columns = list(zip(*rows, strict=True))
    return {name: list(columns[j]) for j, name in enumerate(names)}


def _ids(values: list[str]) -> np.ndarray:
    """Token ids as int64 when they are all integers, else as strings (object)."""
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return np.array(values, dtype=object)


def _year(value: str) -> float:
    return float(value) if value.strip().isdigit() else np.nan


def _standardise(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / (std if std > 0 else 1.0)
