"""The OBD study's data: a campaign's ``bts`` and ``random`` logs, aligned and read with :meth:`LoggedData.from_obp`.

Data alignment. The two logs' files encode categorical values by hashes. The user
features agree by name between the files (a category missing from ``bts`` is dropped
from the ``random`` context, and counted). The two ``item_context.csv`` files list the
same items in the same order with the same numeric feature, but every categorical item
feature has other hash labels in each file (no label is shared), so each file's one-hot
columns differ in name and order and item ``a``'s raw feature rows differ between the
logs. The study aligns them by category value:
:meth:`towerjax.datasets.OpenBanditData.align_items` maps each ``random`` label to the
``bts`` label of the same items (checked one to one per column) and re-expresses the
``random`` log in the ``bts`` item table, so an item id has the same features and the same
action index in training and evaluation. The result reports the number of categories
matched per column.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from towerjax.checks import InputError, check_choice
from towerjax.data import LoggedData
from towerjax.datasets import CAMPAIGNS, OpenBanditData, load_obd

__all__ = ["POSITION_HANDLINGS", "ObdData", "prepare_obd"]

POSITION_HANDLINGS = ("feature", "pooled", "separate")


@dataclasses.dataclass(frozen=True)
class ObdData:
    """The two logs of one campaign, read with :meth:`LoggedData.from_obp` and aligned.

    Attributes:
      train_log: the ``bts`` log as read.
      eval_log: the ``random`` log in the ``bts`` item table (:meth:`OpenBanditData.align_items`).
      n_slots: number of slots ``K``.
      position_handling: ``"feature"``, ``"pooled"`` or ``"separate"`` (:mod:`towerjax.studies.obd`).
      train: the ``bts`` log from ``from_obp`` (``position`` carried; a slot one-hot in the
        context with ``"feature"``).
      evaluation: the ``random`` log the same way, its context in ``train``'s column layout.
      train_sets: the training data: ``[train]`` (one policy for every slot) or, with
        ``"separate"``, one per slot.
      eval_sets: per slot ``k``, the ``random`` rows shown in slot ``k``.
      item_categories: per categorical item feature, ``{random label: bts label}``.
      unseen: random rows with a user category the ``bts`` log never saw.
    """

    train_log: OpenBanditData
    eval_log: OpenBanditData
    n_slots: int
    position_handling: str
    train: LoggedData
    evaluation: LoggedData
    train_sets: list[LoggedData]
    eval_sets: list[LoggedData]
    item_categories: dict[str, dict[str, str]]
    unseen: int

    @property
    def one_policy(self) -> bool:
        """Whether one policy (per seed) serves every slot."""
        return self.position_handling != "separate"

    @property
    def items(self) -> jax.Array:
        """``[A, F]`` the (``bts``) item features of both logs."""
        return self.train.action_context

    @property
    def eval_context(self) -> list[jax.Array]:
        """Per slot, ``[n_k, D]`` the random rows' contexts in the training layout."""
        return [e.context for e in self.eval_sets]

    @property
    def actions(self) -> list[np.ndarray]:
        return [np.asarray(e.action) for e in self.eval_sets]

    @property
    def rewards(self) -> list[np.ndarray]:
        return [np.asarray(e.reward, np.float64) for e in self.eval_sets]

    @property
    def pscores(self) -> list[np.ndarray]:
        return [np.asarray(e.pscore, np.float64) for e in self.eval_sets]

    def train_clicks(self, slot: int) -> np.ndarray:
        """The ``bts`` rows' clicks in ``slot``."""
        return np.asarray(self.train.reward, np.float64)[np.asarray(self.train.position) == slot]

    def summary(self) -> dict:
        """``{"n_slots", "n_actions", "rows", "clicks", "alignment"}`` of the study's result."""
        return {
            "n_slots": self.n_slots,
            "n_actions": self.train.n_actions,
            "rows": {
                "bts": [int(self.train_clicks(k).size) for k in range(self.n_slots)],
                "random": [int(r.size) for r in self.rewards],
            },
            "clicks": {
                "bts": [int(self.train_clicks(k).sum()) for k in range(self.n_slots)],
                "random": [int(r.sum()) for r in self.rewards],
            },
            "alignment": {
                "random_rows_with_unseen_user_categories": int(self.unseen),
                "item_categories_matched": {name: len(m) for name, m in self.item_categories.items()},
                "item_labels_equal_before": sum(
                    a == b for m in self.item_categories.values() for a, b in m.items()
                ),
            },
        }


def prepare_obd(
    campaign: str,
    position_handling: str = "feature",
    *,
    wheel: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ObdData:
    """Loads a campaign's ``bts`` and ``random`` logs, aligns them and reads them with
    :meth:`LoggedData.from_obp` (:mod:`towerjax.studies.obd`, Positions; :mod:`towerjax.studies.obd.data`).

    Raises:
      InputError: for an unknown ``campaign`` or ``position_handling``, or a log without
        rows in some slot.
      DatasetFileError: when the two item tables cannot be aligned (and as :func:`load_obd`).
    """
    check_choice("campaign", campaign, CAMPAIGNS)
    check_choice("position_handling", position_handling, POSITION_HANDLINGS)
    train_log = load_obd("bts", campaign, wheel=wheel, cache_dir=cache_dir)
    raw_eval_log = load_obd("random", campaign, wheel=wheel, cache_dir=cache_dir)
    item_categories = raw_eval_log.item_category_map(train_log)
    eval_log = raw_eval_log.align_items(train_log)
    n_slots = max(train_log.n_positions, eval_log.n_positions)
    for name, logs in (("bts", train_log), ("random", eval_log)):
        missing = [k for k in range(n_slots) if not np.any(logs.position == k)]
        if missing:
            raise InputError("campaign", f"the {name} log of {campaign!r} has no rows in slot(s) {missing}")
    eval_context, unseen = _aligned_context(eval_log, train_log)
    # "separate" splits the pooled reading by slot; "feature" appends the K-wide slot one-hot.
    reading = "pooled" if position_handling == "separate" else position_handling
    options = {"n_positions": n_slots} if reading == "feature" else {}
    train = LoggedData.from_obp(train_log.to_bandit_feedback(), position_handling=reading, **options)
    evaluation = LoggedData.from_obp(
        {**eval_log.to_bandit_feedback(), "context": eval_context}, position_handling=reading, **options
    )
    slots = range(n_slots)
    if position_handling == "separate":
        train_sets = [train.take_rows(np.asarray(train.position) == k) for k in slots]
    else:
        train_sets = [train]
    return ObdData(
        train_log=train_log,
        eval_log=eval_log,
        n_slots=n_slots,
        position_handling=position_handling,
        train=train,
        evaluation=evaluation,
        train_sets=train_sets,
        eval_sets=[evaluation.take_rows(np.asarray(evaluation.position) == k) for k in slots],
        item_categories=item_categories,
        unseen=unseen,
    )


def _aligned_context(source: OpenBanditData, target: OpenBanditData) -> tuple[np.ndarray, int]:
    """``source``'s context (user one-hot and affinities) in ``target``'s column layout.

    Columns are matched by name; a ``target`` column absent from ``source`` is 0, and a
    ``source`` category the training log never saw is dropped. Returns the context and
    the number of rows that had such an unseen category. The slot is not part of it:
    :meth:`LoggedData.from_obp` appends it (``"feature"``) to both logs alike.
    """
    names = source.context_feature_names(position_feature=False)
    values = source.context()
    column = {name: j for j, name in enumerate(names)}
    wanted = target.context_feature_names(position_feature=False)
    out = np.zeros((values.shape[0], len(wanted)))
    for j, name in enumerate(wanted):
        if name in column:
            out[:, j] = values[:, column[name]]
    extra = [column[name] for name in names if name not in set(wanted)]
    dropped = int(np.sum(np.any(values[:, extra] != 0, axis=1))) if extra else 0
    return out, dropped
