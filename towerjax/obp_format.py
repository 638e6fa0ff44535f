"""Open Bandit Pipeline's bandit-feedback dict: reading it into :class:`~towerjax.data.LoggedData`
(:func:`from_obp`, including the Open Bandit Dataset's multi-position, three-slot logs) and
writing one back (:func:`to_obp`). :meth:`LoggedData.from_obp` and :meth:`LoggedData.to_obp` call these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from towerjax.checks import InputError, as_float_array, as_int_array, check_choice
from towerjax.data import LoggedData
from towerjax.features import Features

__all__ = ["POSITION_HANDLINGS", "from_obp", "to_obp"]

POSITION_HANDLINGS = ("single", "pooled", "feature")


def from_obp(
    feedback: dict[str, Any],
    *,
    position_handling: str = "single",
    n_positions: int | None = None,
) -> LoggedData:
    """Builds from the dict of Open Bandit Pipeline's ``obtain_batch_bandit_feedback``.

    Positions. The Open Bandit Dataset shows ``K = 3`` items per impression, one per
    slot (position); its dict has one row per (impression, slot) pair, ``position [n]``
    (0-based) and ``pscore = pi_0(a_i | x_i, k_i)``, the probability of the logged item
    *in that slot*. Like OBP's own estimators (which read ``action_dist[i, a_i, k_i]``),
    the multi-position readings treat every row as its own round, under OBP's
    independence assumption: the click in slot ``k`` depends only on the context, the
    slot and the item shown there, not on the items in the other slots. Pooled IPS then
    estimates ``sum_k P(k) V_k(pi)``, the slot-frequency-weighted mean of the per-slot
    policy values. ``position_handling`` chooses the reading:

    - ``"single"`` (default): a single-position log: ``position`` absent, ``None`` or
      one value throughout. A log with several positions is an :class:`InputError`
      naming ``position_handling`` and these options.
    - ``"pooled"``: every row is a round and the context is unchanged, so one policy
      ``pi(a | x)`` serves every slot.
    - ``"feature"``: every row is a round and a one-hot of the slot (``K`` columns) is
      appended to the context, so the policy is position-aware, ``pi(a | x, k)``.

    ``position`` is carried (:attr:`LoggedData.position`) whenever the dict has one. To keep one
    slot only (a single-slot bandit with exact propensities), read with ``"pooled"``
    and call ``data.take_rows(data.position == k)``.

    Args:
      feedback: OBP's dict (keys ``context``, ``action``, ``reward``, ``pscore``, and
        ``action_context`` or ``n_actions``; optional ``pi_b``, ``expected_reward``,
        ``position``). ``pi_b`` and ``expected_reward`` may be ``(n, A)``, ``(n, A, 1)``
        or, with positions, OBP's ``(n, A, K)``, from which each row's own slot is taken.
      position_handling: ``"single"``, ``"pooled"`` or ``"feature"`` (above).
      n_positions: with ``"feature"``, the number of slots ``K`` (one-hot width);
        default ``max(position) + 1``. Pass it so a test log missing the last slot gets
        the training log's width.

    Raises:
      InputError: naming the key or argument, for a missing key, a multi-position log
        under ``"single"``, a missing ``position`` under ``"pooled"``/``"feature"``, or a
        ``pi_b`` layout that does not fit the positions; and everything
        :meth:`LoggedData.from_arrays` raises.
    """
    if not isinstance(feedback, dict):
        raise TypeError(f"feedback: expected a dict, got {type(feedback).__name__}")
    check_choice("position_handling", position_handling, POSITION_HANDLINGS)
    missing = [k for k in ("context", "action", "reward", "pscore") if k not in feedback]
    if missing:
        raise InputError("feedback", f"missing required keys {missing}")
    n_actions = feedback.get("n_actions")
    action_context = feedback.get("action_context")
    if action_context is None:
        if n_actions is None:
            raise InputError("feedback", "needs 'action_context' or 'n_actions'")
        action_context = np.eye(int(n_actions))
    n = np.shape(feedback["context"])[0] if np.ndim(feedback["context"]) else 0
    position = feedback.get("position")
    if position is not None:
        position = as_int_array(position, "feedback['position']", n)
        if position.size and position.min() < 0:
            raise InputError("feedback['position']", f"expected 0-based slots, got {position.min()}")
    slots = () if position is None else tuple(int(k) for k in np.unique(position))
    if position_handling == "single" and len(slots) > 1:
        raise InputError(
            "position_handling",
            f"feedback['position'] holds {len(slots)} positions {list(slots)}, a multi-position log "
            "(the Open Bandit Dataset shows 3 slots); pass position_handling='feature' (every row "
            "a round, a one-hot of the slot appended to the context: a policy pi(a | x, k)) or "
            "'pooled' (every row a round, context unchanged: one policy pi(a | x) for every slot)",
        )
    if position_handling != "single" and position is None:
        raise InputError(
            "feedback['position']",
            f"position_handling={position_handling!r} needs the slot of each row; "
            "use 'single' for a single-position log",
        )
    context = feedback["context"]
    if position_handling == "feature":
        width = max(slots, default=0) + 1
        if n_positions is not None:
            if isinstance(n_positions, bool) or not isinstance(n_positions, (int, np.integer)):
                raise TypeError(f"n_positions: expected an int, got {n_positions!r}")
            if n_positions < width:
                raise InputError(
                    "n_positions", f"expected at least {width} (largest position + 1), got {n_positions}"
                )
            width = int(n_positions)
        context = as_float_array(context, "context", ndim=2)
        context = np.concatenate([context, np.eye(width)[position]], axis=1)
    return LoggedData.from_arrays(
        context=context,
        action_context=action_context,
        action=feedback["action"],
        reward=feedback["reward"],
        pscore=feedback["pscore"],
        pi_b=_slot_matrix(feedback.get("pi_b"), "pi_b", position),
        expected_reward=_slot_matrix(feedback.get("expected_reward"), "expected_reward", position),
        position=position,
    )


def to_obp(data: LoggedData) -> dict[str, Any]:
    """Returns Open Bandit Pipeline's bandit-feedback dict (numpy arrays, ``pi_b (n, A, 1)``).

    The context is exported as held (with a slot one-hot if read with
    ``position_handling="feature"``; read it back with ``"pooled"``). A log with several
    positions and a ``pi_b`` cannot be exported: OBP's ``(n, A, K)`` layout needs every
    slot's distribution and only each row's own is held.
    """
    if data.action.ndim != 1:
        raise ValueError(
            f"to_obp: expected a single dataset, got a batch with action shape {data.action.shape}"
        )
    for name in ("context", "action_context"):
        if isinstance(getattr(data, name), Features):
            raise InputError(name, "OBP's dict holds dense feature matrices; these logs hold embedded ids")
    position = None if data.position is None else np.asarray(data.position)
    if position is not None and np.any(position != 0):
        for name in ("pi_b", "expected_reward"):
            if getattr(data, name) is not None:
                raise InputError(
                    name,
                    "a multi-position log holds only each row's own slot's distribution, but OBP's "
                    f"(n, A, K) layout needs every slot's; drop it first "
                    f"(dataclasses.replace(data, {name}=None))",
                )

    return {
        "n_rounds": data.n_rounds,
        "n_actions": data.n_actions,
        "context": np.asarray(data.context),
        "action_context": np.asarray(data.action_context),
        "action": np.asarray(data.action),
        "position": position,
        "reward": np.asarray(data.reward),
        "expected_reward": None if data.expected_reward is None else np.asarray(data.expected_reward),
        "pi_b": None if data.pi_b is None else np.asarray(data.pi_b)[:, :, None],
        "pscore": np.asarray(data.pscore),
    }


def _slot_matrix(value: Any, name: str, position: np.ndarray | None) -> np.ndarray | None:
    """OBP's ``(n, A)``, ``(n, A, 1)`` or ``(n, A, K)`` per-slot array as each row's own slot ``(n, A)``."""
    if value is None:
        return None
    value = np.asarray(value)
    if value.ndim != 3:
        return value
    where = f"feedback[{name!r}]"
    if position is None:
        if value.shape[2] != 1:
            raise InputError(where, f"expected (n, A, 1) for a single position, got {value.shape}")
        return value[:, :, 0]
    if value.shape[2] == 1:
        if np.unique(position).size > 1:
            raise InputError(
                where,
                f"expected (n, A, K) with a slice per position, got {value.shape} for several positions",
            )
        return value[:, :, 0]
    if value.shape[0] != position.shape[0] or value.shape[2] <= position.max():
        raise InputError(
            where,
            f"expected (n, A, K) with n = {position.shape[0]} and K > {position.max()}, got {value.shape}",
        )
    return value[np.arange(position.shape[0]), :, position]
