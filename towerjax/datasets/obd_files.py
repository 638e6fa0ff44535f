"""The Open Bandit Dataset sample as plain files for ``towerjax train`` / ``towerjax evaluate``.

:func:`export_obd` writes one campaign of the OBD sample (:func:`~towerjax.datasets.load_obd`)
into a directory, in the layout the commands for your own logs read:

- ``bts.csv``: the Bernoulli Thompson sampling log, to train on;
- ``random.csv``: the uniform random log, to evaluate on (``--randomized``);
- ``items.csv``: the item table (``bts``'s), which both logs refer to;
- ``README.txt``: what each file holds and the commands to run next.

A log file has one row per logged (impression, slot) event: the context columns as the
OBD files name them (``user_feature_0`` ... ``user_feature_3``, categorical, one hash label
per row; ``user-item_affinity_0`` ... numeric), then ``item_id``, ``position`` (the slot,
1, 2, 3 as in the OBD files), ``reward`` (the click, 0 or 1) and ``pscore`` (the logging
policy's probability of that item in that slot). The timestamp is left out: every column
but the item, reward, pscore and position columns is a context column by default.

The item table holds ``item_id`` and the ``item_feature_*`` columns (``item_feature_0``
numeric, the others categorical hash labels). The OBD files label the categories of each
log's item table with hashes salted per file, so the ``random`` log is first re-expressed in
the ``bts`` item table (:meth:`~towerjax.datasets.OpenBanditData.align_items`, which checks
that the two tables hold the same items and categories): one ``items.csv`` then serves
both logs, and a model trained on ``bts.csv`` reads the items of ``random.csv`` as the
same items.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from towerjax.checks import InputError, check_choice
from towerjax.datasets._wheel import DatasetFileError
from towerjax.datasets.obd import CAMPAIGNS, OpenBanditData, fetch_obd, load_obd

__all__ = ["OBD_FILES", "export_obd", "write_obd_files"]

OBD_FILES = ("bts.csv", "random.csv", "items.csv", "README.txt")
_LOG_COLUMNS = ("item_id", "position", "reward", "pscore")


def export_obd(
    directory: str | os.PathLike[str],
    campaign: str = "all",
    *,
    wheel: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Writes one OBD campaign's ``bts`` and ``random`` logs and item table as CSV files.

    Args:
      directory: where to write ``bts.csv``, ``random.csv``, ``items.csv`` and
        ``README.txt`` (created if missing; these four files are replaced).
      campaign: ``"all"``, ``"men"`` or ``"women"``.
      wheel, cache_dir: as for :func:`~towerjax.datasets.load_obd` (the wheel is fetched
        once into the cache when ``wheel`` is not given).

    Returns:
      ``{"bts": path, "random": path, "items": path, "readme": path}``.

    Raises:
      DatasetFileError: for a malformed dataset file, or item tables that do not match.
      FetchError: when the wheel is not cached and pip cannot download it.
      InputError: naming ``export`` when ``directory`` cannot be written.
    """
    check_choice("campaign", campaign, CAMPAIGNS)
    source = fetch_obd(cache_dir) if wheel is None else wheel
    bts = load_obd("bts", campaign, wheel=source)
    random = load_obd("random", campaign, wheel=source)
    return write_obd_files(directory, bts, random)


def write_obd_files(
    directory: str | os.PathLike[str], bts: OpenBanditData, random: OpenBanditData
) -> dict[str, Path]:
    """Writes the files of :func:`export_obd` from two loaded logs of one campaign.

    ``random`` is aligned to ``bts``'s item table first
    (:meth:`~towerjax.datasets.OpenBanditData.align_items`); ``items.csv`` is ``bts``'s table.
    """
    aligned = random.align_items(bts)
    item_ids = set(bts.item_ids.tolist())
    missing = sorted(set(aligned.item_id.tolist()) - item_ids)
    if missing:  # align_items re-indexes every logged id, so this is a broken invariant
        raise DatasetFileError(
            f"random/{random.campaign}: item ids {missing[:5]} are not in the bts item table"
        )
    folder = Path(directory)
    paths = {
        "bts": folder / "bts.csv",
        "random": folder / "random.csv",
        "items": folder / "items.csv",
        "readme": folder / "README.txt",
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv(paths["bts"], *_log_table(bts))
        _write_csv(paths["random"], *_log_table(aligned))
        _write_csv(paths["items"], *_item_table(bts))
        paths["readme"].write_text(_readme(folder, bts, aligned), encoding="utf-8")
    except OSError as err:
        raise InputError("export", f"cannot write to {str(folder)!r} ({err.strerror or err})") from None
    return paths


def _categories(names: tuple[str, ...], matrix: np.ndarray) -> dict[str, Any]:
    """Readable columns from one-hot blocks: ``{column: labels [n]}`` or ``{column: values [n]}``.

    A feature name ``column=label`` is one category of a one-hot block (each row's label is
    its block's hot column); a name without ``=`` is a numeric column kept as it is.
    """
    blocks: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        blocks.setdefault(name.partition("=")[0], []).append(j)
    out: dict[str, Any] = {}
    for column, indices in blocks.items():
        if "=" not in names[indices[0]]:
            out[column] = matrix[:, indices[0]].tolist()
            continue
        labels = np.array([names[j].partition("=")[2] for j in indices], dtype=object)
        block = matrix[:, indices]
        if block.size and not np.all(block.sum(axis=1) == 1):
            row = int(np.flatnonzero(block.sum(axis=1) != 1)[0])
            raise DatasetFileError(f"column {column!r}: row {row} is not one category of its one-hot block")
        out[column] = labels[block.argmax(axis=1)].tolist() if block.size else []
    return out


def _log_table(log: OpenBanditData) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a log file (module docstring)."""
    columns = _categories(log.user_feature_names, log.user_features)
    for j in range(log.user_item_affinity.shape[1]):
        columns[f"user-item_affinity_{j}"] = log.user_item_affinity[:, j].tolist()
    clash = sorted(set(columns) & set(_LOG_COLUMNS))
    if clash:
        raise DatasetFileError(f"{log.behavior_policy}/{log.campaign}: context column(s) {clash} clash")
    columns["item_id"] = log.item_id.tolist()
    columns["position"] = (log.position + 1).tolist()  # back to the files' 1-based slots
    columns["reward"] = log.click.tolist()
    columns["pscore"] = log.propensity_score.tolist()
    header = list(columns)
    return header, [list(row) for row in zip(*columns.values(), strict=True)]


def _item_table(log: OpenBanditData) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of ``items.csv``: ``item_id``, then the item feature columns.

    A table read without feature columns (each item its own ``item_id=<id>`` one-hot) is
    written as the ids alone.
    """
    features = _categories(log.item_feature_names, log.item_features)
    features.pop("item_id", None)
    columns = {"item_id": log.item_ids.tolist(), **features}
    return list(columns), [list(row) for row in zip(*columns.values(), strict=True)]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)  # floats as repr: the shortest text that reads back exactly


def _readme(folder: Path, bts: OpenBanditData, random: OpenBanditData) -> str:
    d = str(folder)
    n_user = len({n.partition("=")[0] for n in bts.user_feature_names})
    n_affinity = bts.user_item_affinity.shape[1]
    return f"""\
Open Bandit Dataset (small sample, obp 0.4.1), campaign {bts.campaign!r}, written by towerjax
(towerjax.datasets.obd_files.export_obd; towerjax data obd --export). The data are ZOZO's, under the
license of the Open Bandit Dataset (CC BY 4.0); Saito et al., "Open Bandit Dataset and
Pipeline", NeurIPS Datasets and Benchmarks 2021.

bts.csv     {bts.n_rounds} events logged by Bernoulli Thompson sampling: train on these.
random.csv  {random.n_rounds} events logged by the uniform random policy: evaluate on these
            (the unbiased value with --randomized).
items.csv   {bts.n_actions} items: item_id, item_feature_0 (numeric) and the categorical
            item_feature_* columns (hash labels). It is the bts log's item table; the random
            log's own table lists the same items with other hash labels, and its items were
            matched to this one, so both logs use this file.

A log row is one (impression, slot) event: the context columns user_feature_0 ...
user_feature_{n_user - 1} (categorical hash labels) and user-item_affinity_0 ...
user-item_affinity_{n_affinity - 1} (numeric), then item_id (the shown item, an id of items.csv),
position (its slot, 1 to {bts.n_positions}), reward (the click, 0 or 1) and pscore (the logging
policy's probability of showing that item in that slot). Rows of all slots are pooled;
--position-column keeps the slot out of the contexts.

Next:

  towerjax train --logs {d}/bts.csv --items {d}/items.csv --position-column position --out obd-model
  towerjax evaluate --model obd-model --logs {d}/random.csv --items {d}/items.csv --randomized

(evaluate reads only the model's context columns, so it needs no --position-column).
"""
