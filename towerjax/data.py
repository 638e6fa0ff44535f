"""Logged bandit feedback: the container every estimator and trainer reads (SPEC 1).

:class:`LoggedData` holds one logged round per row. Two readers of other log shapes live
here too: :meth:`LoggedData.from_obp` reads Open Bandit Pipeline's dict, including the
Open Bandit Dataset's multi-position (three-slot) logs, and :func:`rating_pscore` turns
rating-style logs with observation propensities ``P(O = 1 | u, i)`` into per-round
propensities.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_choice
from towerjax.features import Features, num_rows, take

__all__ = ["POSITION_HANDLINGS", "LoggedData", "rating_logging_policy", "rating_pscore"]

POSITION_HANDLINGS = ("single", "pooled", "feature")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LoggedData:
    """Logged bandit feedback ``{(x_i, a_i, r_i, p_i)}`` collected by a behaviour policy.

    A JAX pytree, so it passes through ``jit`` and ``vmap`` (a leading ``[S]`` axis on
    every array is a batch of ``S`` datasets). The plain constructor does no checking
    and is what code inside ``jit`` uses; build from user arrays with
    :meth:`from_arrays`, which validates.

    Attributes:
      context: ``[n, d_x]`` context (user) features ``x``, or
        :class:`~towerjax.features.Features` (dense columns plus ``[n]`` integer ids such as
        a user id, each embedded by the context tower).
      action_context: ``[A, d_a]`` action (item) features ``e_a``, or
        :class:`~towerjax.features.Features` (e.g. the item id, ``arange(A)``).
      action: ``[n]`` int32 logged action ``a_i``.
      reward: ``[n]`` observed reward ``r_i``.
      pscore: ``[n]`` logged propensity ``p_i = pi_0(a_i | x_i)`` in ``(0, 1]``.
      pi_b: optional ``[n, A]`` full behaviour distribution ``pi_0(. | x_i)``.
      expected_reward: optional ``[n, A]`` true ``q(x_i, .)`` (synthetic data only).
      position: optional ``[n]`` int32 0-based slot ``k_i`` each row was shown in, for a
        multi-position log read with :meth:`from_obp`; then ``pscore``, ``pi_b`` and
        ``expected_reward`` are those of the row's own slot, ``pi_0(a_i | x_i, k_i)``.
        ``None`` (a single-position log) by default; estimators and trainers do not read it.
    """

    context: jax.Array | Features
    action_context: jax.Array | Features
    action: jax.Array
    reward: jax.Array
    pscore: jax.Array
    pi_b: jax.Array | None = None
    expected_reward: jax.Array | None = None
    position: jax.Array | None = None

    @property
    def n_rounds(self) -> int:
        """Number of logged events ``n``."""
        return self.action.shape[-1]

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return num_rows(self.action_context)

    def take_rows(self, rows: ArrayLike) -> LoggedData:
        """The logged events ``rows`` (``[m]`` indices or an ``[n]`` boolean mask), items unchanged.

        Every per-row array (``pi_b``, ``expected_reward`` and ``position`` too) is
        indexed; works under ``jit`` for integer ``rows``. For example one slot of a
        multi-position log: ``data.take_rows(data.position == 0)``.
        """

        def rows_of(value):
            return None if value is None else value[rows]

        return dataclasses.replace(
            self,
            context=take(self.context, rows),
            action=self.action[rows],
            reward=self.reward[rows],
            pscore=self.pscore[rows],
            pi_b=rows_of(self.pi_b),
            expected_reward=rows_of(self.expected_reward),
            position=rows_of(self.position),
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        context: Any,
        action_context: Any,
        action: Any,
        reward: Any,
        pscore: Any,
        pi_b: Any = None,
        expected_reward: Any = None,
        position: Any = None,
    ) -> LoggedData:
        """Validates user arrays and builds the container.

        Raises:
          InputError: (a ``ValueError``) naming the argument, for a wrong rank or length, a
            non-finite value, an action outside ``[0, A)``, a propensity outside ``(0, 1]``,
            a ``pi_b`` whose rows do not sum to one, or a negative ``position``.
          TypeError: for a non-integer ``action`` or ``position``.
        """
        context = _as_features(context, "context")
        action_context = _as_features(action_context, "action_context")
        n, n_actions = num_rows(context), num_rows(action_context)
        if n == 0:
            raise InputError("context", "expected at least one logged event, got 0 rows")
        if n_actions < 2:
            raise InputError("action_context", f"expected at least 2 actions (rows), got {n_actions}")

        action = _as_int(action, "action", n)
        bad = np.flatnonzero((action < 0) | (action >= n_actions))
        if bad.size:
            raise InputError(
                "action",
                f"expected indices in [0, {n_actions}) (rows of action_context), "
                f"got {action[bad[0]]} at row {bad[0]}",
            )

        reward = _as_float(reward, "reward", ndim=1, length=n)
        pscore = _as_float(pscore, "pscore", ndim=1, length=n)
        bad = np.flatnonzero(~((pscore > 0) & (pscore <= 1)))
        if bad.size:
            raise InputError(
                "pscore", f"expected propensities in (0, 1], got {pscore[bad[0]]} at row {bad[0]}"
            )

        if pi_b is not None:
            pi_b = _as_float(pi_b, "pi_b", ndim=2, shape=(n, n_actions))
            if np.any(pi_b < 0) or not np.allclose(pi_b.sum(axis=1), 1.0, atol=1e-4):
                raise InputError("pi_b", "expected each row to be a probability distribution over actions")
        if expected_reward is not None:
            expected_reward = _as_float(expected_reward, "expected_reward", ndim=2, shape=(n, n_actions))
        if position is not None:
            position = _as_int(position, "position", n)
            bad = np.flatnonzero(position < 0)
            if bad.size:
                raise InputError(
                    "position", f"expected 0-based slots (>= 0), got {position[bad[0]]} at row {bad[0]}"
                )

        return cls(
            context=context,
            action_context=action_context,
            action=jnp.asarray(action, jnp.int32),
            reward=jnp.asarray(reward, jnp.float32),
            pscore=jnp.asarray(pscore, jnp.float32),
            pi_b=None if pi_b is None else jnp.asarray(pi_b, jnp.float32),
            expected_reward=(None if expected_reward is None else jnp.asarray(expected_reward, jnp.float32)),
            position=None if position is None else jnp.asarray(position, jnp.int32),
        )

    @classmethod
    def from_obp(
        cls,
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

        ``position`` is carried (:attr:`position`) whenever the dict has one. To keep one
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
            :meth:`from_arrays` raises.
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
            position = _as_int(position, "feedback['position']", n)
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
            context = _as_float(context, "context", ndim=2)
            context = np.concatenate([context, np.eye(width)[position]], axis=1)
        return cls.from_arrays(
            context=context,
            action_context=action_context,
            action=feedback["action"],
            reward=feedback["reward"],
            pscore=feedback["pscore"],
            pi_b=_slot_matrix(feedback.get("pi_b"), "pi_b", position),
            expected_reward=_slot_matrix(feedback.get("expected_reward"), "expected_reward", position),
            position=position,
        )

    def to_obp(self) -> dict[str, Any]:
        """Returns Open Bandit Pipeline's bandit-feedback dict (numpy arrays, ``pi_b (n, A, 1)``).

        The context is exported as held (with a slot one-hot if read with
        ``position_handling="feature"``; read it back with ``"pooled"``). A log with several
        positions and a ``pi_b`` cannot be exported: OBP's ``(n, A, K)`` layout needs every
        slot's distribution and only each row's own is held.
        """
        if self.action.ndim != 1:
            raise ValueError(
                f"to_obp: expected a single dataset, got a batch with action shape {self.action.shape}"
            )
        for name in ("context", "action_context"):
            if isinstance(getattr(self, name), Features):
                raise InputError(
                    name, "OBP's dict holds dense feature matrices; these logs hold embedded ids"
                )
        position = None if self.position is None else np.asarray(self.position)
        if position is not None and np.any(position != 0):
            for name in ("pi_b", "expected_reward"):
                if getattr(self, name) is not None:
                    raise InputError(
                        name,
                        "a multi-position log holds only each row's own slot's distribution, but OBP's "
                        f"(n, A, K) layout needs every slot's; drop it first "
                        f"(dataclasses.replace(data, {name}=None))",
                    )

        return {
            "n_rounds": self.n_rounds,
            "n_actions": self.n_actions,
            "context": np.asarray(self.context),
            "action_context": np.asarray(self.action_context),
            "action": np.asarray(self.action),
            "position": position,
            "reward": np.asarray(self.reward),
            "expected_reward": None if self.expected_reward is None else np.asarray(self.expected_reward),
            "pi_b": None if self.pi_b is None else np.asarray(self.pi_b)[:, :, None],
            "pscore": np.asarray(self.pscore),
        }


def _as_features(value: Any, name: str) -> jax.Array | Features:
    """A dense ``[rows, d]`` float32 array (checked), or :class:`Features` as given."""
    if isinstance(value, Features):
        if value.dense.ndim != 2 or any(ids.shape != (value.n_rows,) for ids in value.ids.values()):
            raise InputError(name, "expected Features with dense [rows, d] and [rows] id arrays")
        return value
    return jnp.asarray(_as_float(value, name, ndim=2), jnp.float32)


def rating_logging_policy(observation_propensity: ArrayLike) -> np.ndarray:
    """``[U, A] -> [U, A]``: the logging policy that rating-style logs amount to.

    .. math::

        \\pi_0(i \\mid u) = \\frac{P(O_{ui} = 1)}{S_u}, \\qquad S_u = \\sum_{j=1}^{A} P(O_{uj} = 1),

    with ``S_u`` the user's expected number of observed ratings (the sum runs over every
    item, observed or not). See :func:`rating_pscore` for when this is the right reading.
    ``pi_b`` of :meth:`LoggedData.from_arrays` for ratings ``(user, item)`` is
    ``rating_logging_policy(P)[user]``.

    Args:
      observation_propensity: ``[U, A]`` ``P(O = 1 | u, i)`` for every user and item, in
        ``[0, 1]``, each row with a positive sum.
    """
    propensity = _observation_propensity(observation_propensity)
    return propensity / propensity.sum(axis=1, keepdims=True)


def rating_pscore(observation_propensity: ArrayLike, user: ArrayLike, item: ArrayLike) -> np.ndarray:
    """``[U, A], [n], [n] -> [n]``: per-round propensities of rating-style logs.

    Rating-style logs (MovieLens, Yahoo! R3, Coat) hold many rows per user, one per
    observed rating, and the debiasing literature models which ratings are observed by
    observation propensities ``P_ui = P(O_ui = 1 | u, i)`` (MNAR data; Schnabel et al.
    2016). Each observed rating ``(u, i, r_ui)`` becomes one logged round with context
    ``x_u``, action ``i``, reward ``r_ui`` and propensity

    .. math::

        p_{ui} = \\pi_0(i \\mid u) = \\frac{P_{ui}}{S_u}, \\qquad S_u = \\sum_{j=1}^{A} P_{uj}.

    Why not ``p = P_ui`` itself: towerjax's estimators average ``w_i r_i`` with
    ``w_i = pi(a_i | x_i) / p_i`` over the ``n`` rows, so ``p`` must be a probability over
    items per round. With ``O_ui ~ Bernoulli(P_ui)`` and a fixed rating matrix,
    ``E[sum_{observed (u, i)} pi(i | u) r_ui / p_ui] = sum_u S_u sum_i pi(i | u) r_ui``
    and ``E[n] = sum_u S_u``, so IPS (a ratio of these, consistent as users are added)
    and SNIPS (``E[sum w] = sum_u S_u`` too) estimate

    .. math::

        V(\\pi) = \\frac{\\sum_u S_u \\sum_i \\pi(i \\mid u)\\, r_{ui}}{\\sum_u S_u},

    the policy value over users weighted by their expected number of ratings (the users
    as the log's rounds meet them). Dividing by ``P_ui`` instead, as Schnabel et al.'s
    estimate of the mean over all ``U * A`` cells does, would scale towerjax's per-row mean
    by about ``U / n`` and give no probability in ``(0, 1]``. Assumptions: ``P`` is the
    true observation probability (it may depend on the rating, MNAR, but must be known
    or estimated well), positive wherever ``pi`` puts mass, and observations are
    independent across items given the user.

    Args:
      observation_propensity: ``[U, A]`` ``P(O = 1 | u, i)`` for every user and item,
        in ``[0, 1]`` (positive at each observed ``(user, item)``).
      user: ``[n]`` the user index (row of ``observation_propensity``) of each rating.
      item: ``[n]`` the item index (column) of each rating, the logged action.

    Returns:
      ``[n]`` float64 ``P[user, item] / P[user].sum()``, for ``pscore`` of
      :meth:`LoggedData.from_arrays`.

    Raises:
      InputError: naming the argument, for a wrong shape, a value outside ``[0, 1]``,
        an index out of range, or a zero propensity at an observed rating.

    References:
      Schnabel, Swaminathan, Singh, Chandak, Joachims, "Recommendations as Treatments:
      Debiasing Learning and Evaluation", ICML 2016.

    >>> P = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    >>> rating_pscore(P, user=[0, 0, 1], item=[0, 2, 2])
    array([0.5 , 0.25, 0.8 ])
    """
    propensity = _observation_propensity(observation_propensity)
    n_users, n_items = propensity.shape
    user = np.asarray(user)
    n = user.shape[0] if user.ndim == 1 else -1
    user = _as_int(user, "user", n)
    item = _as_int(item, "item", n)
    for name, index, size, what in (("user", user, n_users, "rows"), ("item", item, n_items, "columns")):
        bad = np.flatnonzero((index < 0) | (index >= size))
        if bad.size:
            raise InputError(
                name,
                f"expected indices in [0, {size}) ({what} of observation_propensity), "
                f"got {index[bad[0]]} at row {bad[0]}",
            )
    observed = propensity[user, item]
    bad = np.flatnonzero(observed <= 0)
    if bad.size:
        raise InputError(
            "observation_propensity",
            f"is 0 at user {user[bad[0]]}, item {item[bad[0]]} (row {bad[0]}), which was observed",
        )
    return observed / propensity.sum(axis=1)[user]


def _observation_propensity(value: ArrayLike) -> np.ndarray:
    """``[U, A]`` observation propensities in ``[0, 1]`` with positive row sums, or an InputError."""
    propensity = _as_float(value, "observation_propensity", ndim=2)
    if propensity.size == 0:
        raise InputError(
            "observation_propensity", f"expected a non-empty [U, A] array, got {propensity.shape}"
        )
    bad = np.argwhere((propensity < 0) | (propensity > 1))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise InputError(
            "observation_propensity", f"expected values in [0, 1], got {propensity[where]} at {where}"
        )
    empty = np.flatnonzero(propensity.sum(axis=1) <= 0)
    if empty.size:
        raise InputError("observation_propensity", f"user {empty[0]} has every propensity 0")
    return propensity


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


def _as_int(value: Any, name: str, length: int) -> np.ndarray:
    """An ``[length]`` int64 array (whole floats accepted), or an InputError/TypeError naming ``name``."""
    array = np.asarray(value)
    if array.ndim != 1 or array.shape[0] != length:
        raise InputError(name, f"expected shape ({length},) to match context, got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)):
            return array.astype(np.int64)
        raise TypeError(f"{name}: expected integer indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _as_float(
    value: Any,
    name: str,
    *,
    ndim: int,
    length: int | None = None,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """A finite float numpy array of the given rank, or an InputError naming ``name``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a numeric array ({err})") from None
    if array.ndim != ndim:
        raise InputError(name, f"expected a {ndim}-d array, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise InputError(name, f"expected length {length} to match context, got {array.shape[0]}")
    if shape is not None and array.shape != shape:
        raise InputError(name, f"expected shape {shape}, got {array.shape}")
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise InputError(name, f"expected finite values, got {array[where]} at index {where}")
    return array
