"""Logged bandit feedback: the container every estimator and trainer reads (SPEC 1).

:class:`LoggedData` holds one logged round per row. Open Bandit Pipeline's dict is read and
written by :mod:`towerjax.obp_format` (:meth:`LoggedData.from_obp`, :meth:`LoggedData.to_obp`);
rating-style logs get their propensities from :mod:`towerjax.propensities`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, as_float_array, as_int_array
from towerjax.features import Features, num_rows, take

__all__ = ["LoggedData", "TrueModel"]


class TrueModel(Protocol):
    """Where a synthetic log's true rows come from (:attr:`LoggedData.problem`)."""

    def expected_reward(self, context: jax.Array) -> jax.Array:
        """``[m, A]`` ``q(x, .)`` of ``[m, d_x]`` contexts."""
        ...

    def behavior_policy(self, context: jax.Array) -> jax.Array:
        """``[m, A]`` ``pi_0(. | x)`` of ``[m, d_x]`` contexts."""
        ...


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
      problem: optional source of the true ``q`` and ``pi_0`` rows on demand, for synthetic
        logs too large to hold ``[n, A]`` arrays (:func:`towerjax.synthetic.sample_logged_data`
        sets it instead of ``pi_b`` and ``expected_reward`` above
        :data:`~towerjax.synthetic.DENSE_LOG_ELEMENTS` pairs): a pytree with
        ``expected_reward(context)`` and ``behavior_policy(context)`` giving ``[m, A]`` for
        ``[m, d_x]`` contexts (:class:`~towerjax.synthetic.ProblemInstance`). Shared by all
        rows, so :meth:`take_rows` keeps it. True values read ``expected_reward`` where it is
        given, else this.
    """

    context: jax.Array | Features
    action_context: jax.Array | Features
    action: jax.Array
    reward: jax.Array
    pscore: jax.Array
    pi_b: jax.Array | None = None
    expected_reward: jax.Array | None = None
    position: jax.Array | None = None
    problem: TrueModel | None = None

    @property
    def has_true_values(self) -> bool:
        """Whether the true ``q(x, a)`` is known: ``expected_reward``, or ``problem`` computes it."""
        return self.expected_reward is not None or self.problem is not None

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

        action = as_int_array(action, "action", n)
        bad = np.flatnonzero((action < 0) | (action >= n_actions))
        if bad.size:
            raise InputError(
                "action",
                f"expected indices in [0, {n_actions}) (rows of action_context), "
                f"got {action[bad[0]]} at row {bad[0]}",
            )

        reward = as_float_array(reward, "reward", ndim=1, length=n)
        pscore = as_float_array(pscore, "pscore", ndim=1, length=n)
        bad = np.flatnonzero(~((pscore > 0) & (pscore <= 1)))
        if bad.size:
            raise InputError(
                "pscore", f"expected propensities in (0, 1], got {pscore[bad[0]]} at row {bad[0]}"
            )

        if pi_b is not None:
            pi_b = as_float_array(pi_b, "pi_b", ndim=2, shape=(n, n_actions))
            if np.any(pi_b < 0) or not np.allclose(pi_b.sum(axis=1), 1.0, atol=1e-4):
                raise InputError("pi_b", "expected each row to be a probability distribution over actions")
        if expected_reward is not None:
            expected_reward = as_float_array(expected_reward, "expected_reward", ndim=2, shape=(n, n_actions))
        if position is not None:
            position = as_int_array(position, "position", n)
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
        """Builds from the dict of Open Bandit Pipeline's ``obtain_batch_bandit_feedback``:
        :func:`towerjax.obp_format.from_obp`, which says how multi-position logs are read
        (``position_handling``: ``"single"``, ``"pooled"`` or ``"feature"``) and what it raises.
        """
        from towerjax.obp_format import from_obp  # the OBP format module builds LoggedData

        return from_obp(feedback, position_handling=position_handling, n_positions=n_positions)

    def to_obp(self) -> dict[str, Any]:
        """Returns Open Bandit Pipeline's bandit-feedback dict (numpy arrays, ``pi_b (n, A, 1)``):
        :func:`towerjax.obp_format.to_obp`."""
        from towerjax.obp_format import to_obp

        return to_obp(self)


def _as_features(value: Any, name: str) -> jax.Array | Features:
    """A dense ``[rows, d]`` float32 array (checked), or :class:`Features` as given."""
    if isinstance(value, Features):
        if value.dense.ndim != 2 or any(ids.shape != (value.n_rows,) for ids in value.ids.values()):
            raise InputError(name, "expected Features with dense [rows, d] and [rows] id arrays")
        return value
    return jnp.asarray(as_float_array(value, name, ndim=2), jnp.float32)
