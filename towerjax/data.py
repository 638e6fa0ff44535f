"""Logged bandit feedback: the container every estimator and trainer reads (SPEC 1)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.checks import InputError

__all__ = ["LoggedData"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LoggedData:
    """Logged bandit feedback ``{(x_i, a_i, r_i, p_i)}`` collected by a behaviour policy.

    A JAX pytree, so it passes through ``jit`` and ``vmap`` (a leading ``[S]`` axis on
    every array is a batch of ``S`` datasets). The plain constructor does no checking
    and is what code inside ``jit`` uses; build from user arrays with
    :meth:`from_arrays`, which validates.

    Attributes:
      context: ``[n, d_x]`` context (user) features ``x``.
      action_context: ``[A, d_a]`` action (item) features ``e_a``.
      action: ``[n]`` int32 logged action ``a_i``.
      reward: ``[n]`` observed reward ``r_i``.
      pscore: ``[n]`` logged propensity ``p_i = pi_0(a_i | x_i)`` in ``(0, 1]``.
      pi_b: optional ``[n, A]`` full behaviour distribution ``pi_0(. | x_i)``.
      expected_reward: optional ``[n, A]`` true ``q(x_i, .)`` (synthetic data only).
    """

    context: jax.Array
    action_context: jax.Array
    action: jax.Array
    reward: jax.Array
    pscore: jax.Array
    pi_b: jax.Array | None = None
    expected_reward: jax.Array | None = None

    @property
    def n_rounds(self) -> int:
        """Number of logged events ``n``."""
        return self.action.shape[-1]

    @property
    def n_actions(self) -> int:
        """Number of actions ``A``."""
        return self.action_context.shape[-2]

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
    ) -> LoggedData:
        """Validates user arrays and builds the container.

        Raises:
          InputError: (a ``ValueError``) naming the argument, for a wrong rank or length, a
            non-finite value, an action outside ``[0, A)``, a propensity outside ``(0, 1]``,
            or a ``pi_b`` whose rows do not sum to one.
          TypeError: for a non-integer ``action``.
        """
        context = _as_float(context, "context", ndim=2)
        action_context = _as_float(action_context, "action_context", ndim=2)
        n, n_actions = context.shape[0], action_context.shape[0]
        if n == 0:
            raise InputError("context", "expected at least one logged event, got 0 rows")
        if n_actions < 2:
            raise InputError("action_context", f"expected at least 2 actions (rows), got {n_actions}")

        action = np.asarray(action)
        if action.ndim != 1 or action.shape[0] != n:
            raise InputError("action", f"expected shape ({n},) to match context, got {action.shape}")
        if not np.issubdtype(action.dtype, np.integer):
            if np.issubdtype(action.dtype, np.floating) and np.all(action == np.round(action)):
                action = action.astype(np.int64)
            else:
                raise TypeError(f"action: expected integer action indices, got dtype {action.dtype}")
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

        return cls(
            context=jnp.asarray(context, jnp.float32),
            action_context=jnp.asarray(action_context, jnp.float32),
            action=jnp.asarray(action, jnp.int32),
            reward=jnp.asarray(reward, jnp.float32),
            pscore=jnp.asarray(pscore, jnp.float32),
            pi_b=None if pi_b is None else jnp.asarray(pi_b, jnp.float32),
            expected_reward=(None if expected_reward is None else jnp.asarray(expected_reward, jnp.float32)),
        )

    @classmethod
    def from_obp(cls, feedback: dict[str, Any]) -> LoggedData:
        """Builds from the dict of Open Bandit Pipeline's ``obtain_batch_bandit_feedback``.

        ``pi_b`` may be ``(n, A, 1)`` (OBP's layout) or ``(n, A)``. Slates with several
        positions are not supported yet and raise ``ValueError``.
        """
        if not isinstance(feedback, dict):
            raise TypeError(f"feedback: expected a dict, got {type(feedback).__name__}")
        missing = [k for k in ("context", "action", "reward", "pscore") if k not in feedback]
        if missing:
            raise InputError("feedback", f"missing required keys {missing}")
        n_actions = feedback.get("n_actions")
        action_context = feedback.get("action_context")
        if action_context is None:
            if n_actions is None:
                raise InputError("feedback", "needs 'action_context' or 'n_actions'")
            action_context = np.eye(int(n_actions))
        position = feedback.get("position")
        if position is not None and np.any(np.asarray(position) != 0):
            raise InputError("feedback['position']", "only single-position logs (all 0) are supported")
        pi_b = feedback.get("pi_b")
        if pi_b is not None:
            pi_b = np.asarray(pi_b)
            if pi_b.ndim == 3:
                if pi_b.shape[2] != 1:
                    raise InputError(
                        "feedback['pi_b']", f"expected (n, A, 1) for a single position, got {pi_b.shape}"
                    )
                pi_b = pi_b[:, :, 0]
        return cls.from_arrays(
            context=feedback["context"],
            action_context=action_context,
            action=feedback["action"],
            reward=feedback["reward"],
            pscore=feedback["pscore"],
            pi_b=pi_b,
            expected_reward=feedback.get("expected_reward"),
        )

    def to_obp(self) -> dict[str, Any]:
        """Returns Open Bandit Pipeline's bandit-feedback dict (numpy arrays, ``pi_b (n, A, 1)``)."""
        if self.action.ndim != 1:
            raise ValueError(
                f"to_obp: expected a single dataset, got a batch with action shape {self.action.shape}"
            )
        return {
            "n_rounds": self.n_rounds,
            "n_actions": self.n_actions,
            "context": np.asarray(self.context),
            "action_context": np.asarray(self.action_context),
            "action": np.asarray(self.action),
            "position": None,
            "reward": np.asarray(self.reward),
            "expected_reward": None if self.expected_reward is None else np.asarray(self.expected_reward),
            "pi_b": None if self.pi_b is None else np.asarray(self.pi_b)[:, :, None],
            "pscore": np.asarray(self.pscore),
        }


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
