"""Position-based IPS on position rows: multi-position logs with no whole list (SPEC 10, issue 25).

A position row ``i`` is ``(x_i, a_i, k_i, r_i, p_i)``: the item ``a_i`` shown in slot ``k_i`` for the
context ``x_i``, its click ``r_i`` and the logger's *marginal* probability of that item in that slot,
``p_i = pi_0(a_i at k_i | x_i)``. The Open Bandit Dataset's sample is such a log: its rows are
(impression, slot) pairs sampled independently, so no complete list is observed. Under the
position-based (independence) assumption, the click in slot ``k`` depends on ``x``, ``k`` and the
item there only, and a list policy ``pi``'s value ``V(pi) = sum_k E[r_k]`` is estimated by the
independent (item-position) IPS, slot by slot,

.. math::
  \\hat V_\\mathrm{IIPS} = \\sum_{k=1}^K \\frac{1}{n_k} \\sum_{i: k_i = k} w_i r_i, \\quad
  \\hat V_\\mathrm{SNIIPS} = \\sum_{k=1}^K \\frac{\\sum_{i: k_i = k} w_i r_i}{\\sum_{i: k_i = k} w_i}, \\quad
  w_i = \\frac{P_\\pi(a_i \\text{ at } k_i | x_i)}{p_i}

with ``P_pi`` the list policy's position marginal (:func:`position_row_marginals`; Li et al., KDD
2018). The estimators that need whole lists (standard IPS, reward-interaction IPS, cascade DR:
:mod:`towerjax.evaluation.slate`) do not apply to such logs. The logger's own on-policy list value is
the ``w = 1`` case (``p_i`` as the target marginal): the sum over slots of each slot's click rate.

Both estimates are functions of the column means of one per-row table (``1[k_i = k] w_i r_i``,
``1[k_i = k] w_i``, ``1[k_i = k]`` for each slot), in :mod:`towerjax.evaluation`'s column form: standard
errors by the delta method, a bootstrap that resamples rows (all slots together, each slot's mean
a ratio of the resample's column means), per-row terms for paired differences.
:func:`position_row_loss` is their policy gradient for a Plackett-Luce list policy (a
``stop_gradient`` weight times ``log P_pi``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_choice, check_positive, check_positive_int, check_temperature
from towerjax.evaluation.estimators import column_mean_intervals
from towerjax.evaluation.results import Estimate, normal_interval, weight_diagnostics
from towerjax.list_objectives import logged_position_marginals
from towerjax.list_policy import prefix_position_marginals
from towerjax.rows import safe_ratio

__all__ = [
    "POSITION_ROW_ESTIMATORS",
    "POSITION_ROW_OBJECTIVES",
    "position_row_estimates",
    "position_row_loss",
    "position_row_marginals",
    "position_row_terms",
]

POSITION_ROW_ESTIMATORS = ("iips", "sniips")
"""The estimates :func:`position_row_estimates` gives, in order."""

POSITION_ROW_OBJECTIVES = ("iips", "sniips", "naive")
"""The objectives :func:`position_row_loss` knows."""


def _check_rows(
    slot: ArrayLike, n_slots: int, **columns: ArrayLike
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``slot [N]`` int in ``[0, K)`` and the other ``[N]`` columns, checked (host values only)."""
    n_slots = check_positive_int("n_slots", n_slots)
    slot = jnp.asarray(slot)
    if slot.ndim != 1 or slot.shape[0] < 1 or not jnp.issubdtype(slot.dtype, jnp.integer):
        raise InputError("slot", f"expected shape [N] with N >= 1 of integers, got {slot.shape} {slot.dtype}")
    if not isinstance(slot, jax.core.Tracer):
        values = np.asarray(slot)
        if values.min() < 0 or values.max() >= n_slots:
            raise InputError("slot", f"expected slots in [0, {n_slots}), got {values.min()}..{values.max()}")
    out = {}
    for name, value in columns.items():
        value = jnp.asarray(value)
        if value.shape != slot.shape:
            raise InputError(name, f"expected shape {slot.shape} to match slot, got {value.shape}")
        out[name] = value
    return slot, out


def position_row_marginals(
    scores: ArrayLike,
    item: ArrayLike,
    slot: ArrayLike,
    n_slots: int,
    temperature: float = 1.0,
    *,
    key: jax.Array | None = None,
    n_samples: int = 64,
) -> jax.Array:
    """``[N]`` ``P_pi(a_i at k_i | x_i)`` of the Plackett-Luce list policy of ``scores``, differentiable.

    Slot 0 is the softmax. Without ``key``, every slot exactly, by summing over the ``A^(k-1)``
    prefixes (:func:`towerjax.list_policy.prefix_position_marginals`, memory ``[N, A^(K-1)]``); with
    ``key``, the unbiased Monte-Carlo estimate of :func:`towerjax.list_objectives.logged_position_marginals`
    (``n_samples`` lists a row; exact at slot 0), read at each row's slot.

    Args:
      scores: ``[N, A]`` scores ``s(x_i, .)``.
      item: ``[N]`` int logged items.
      slot: ``[N]`` int slots in ``[0, K)``.
      n_slots: ``K``, the list length.
      temperature: Plackett-Luce ``tau``.
      key: ``jax.random.key`` for the sampled marginals, or ``None`` for the exact ones.
      n_samples: lists sampled a row with ``key``.
    """
    scores = jnp.asarray(scores)
    slot, columns = _check_rows(slot, n_slots, item=item)
    item = columns["item"]
    if scores.ndim != 2 or scores.shape[0] != slot.shape[0]:
        raise InputError("scores", f"expected shape ({slot.shape[0]}, A) to match slot, got {scores.shape}")
    check_temperature(temperature)
    if key is None:
        marginals = prefix_position_marginals(scores, n_slots, temperature)  # [N, K, A]
        return marginals[jnp.arange(slot.shape[0]), slot, item]
    # logged_position_marginals reads column k of a list only at position k: put the item everywhere.
    lists = jnp.broadcast_to(item[:, None], (item.shape[0], n_slots))
    marginals = logged_position_marginals(scores, lists, temperature, key=key, n_samples=n_samples)  # [N, K]
    return jnp.take_along_axis(marginals, slot[:, None], axis=1)[:, 0]


def _table(slot: jax.Array, reward: jax.Array, w: jax.Array, n_slots: int) -> jax.Array:
    """``[N, 3K]`` columns ``1[k_i = k] w_i r_i``, ``1[k_i = k] w_i``, ``1[k_i = k]`` for each slot ``k``."""
    one_hot = jax.nn.one_hot(slot, n_slots, dtype=w.dtype)  # [N, K]
    return jnp.concatenate([one_hot * (w * reward)[:, None], one_hot * w[:, None], one_hot], axis=1)


def _estimates(means: jax.Array, n_slots: int) -> jax.Array:
    """``[3K]`` column means -> ``[2]`` (IIPS, SNIIPS): sums over slots of ``m_wr / m_1`` and ``m_wr / m_w``."""
    wr, w, count = means[:n_slots], means[n_slots : 2 * n_slots], means[2 * n_slots :]
    return jnp.stack([jnp.sum(safe_ratio(wr, count)), jnp.sum(safe_ratio(wr, w))])


@functools.partial(jax.jit, static_argnames=("n_slots",))
def _terms(slot, reward, w, *, n_slots):
    table = _table(slot, reward, w, n_slots)
    means = jnp.mean(table, axis=0)
    value = _estimates(means, n_slots)
    gradient = jax.jacfwd(_estimates)(means, n_slots)  # [2, 3K]
    return table, value, (table - means) @ gradient.T  # influence [N, 2]


@functools.partial(jax.jit, static_argnames=("n_slots", "n_bootstrap"))
def _intervals(slot, reward, w, key, *, n_slots, n_bootstrap):
    """Values, standard errors, bootstrap bounds (each ``[2]``) and the weights' diagnostics."""
    table, value, influence = _terms(slot, reward, w, n_slots=n_slots)
    estimates = functools.partial(_estimates, n_slots=n_slots)
    stderr, low, high = column_mean_intervals(table, estimates, influence, key, n_bootstrap)
    return value, stderr, low, high, weight_diagnostics(w)


def _checked_weights(slot, reward, pscore, target_marginal, n_slots):
    """The checked rows' ``slot``, ``reward`` and weights ``w = target_marginal / pscore``."""
    slot, columns = _check_rows(slot, n_slots, reward=reward, pscore=pscore, target_marginal=target_marginal)
    if not isinstance(slot, jax.core.Tracer):
        empty = sorted(set(range(n_slots)) - set(np.asarray(slot).tolist()))
        if empty:
            raise InputError("slot", f"expected rows in every slot of [0, {n_slots}), none in {empty}")
    if not isinstance(columns["pscore"], jax.core.Tracer) and not np.all(np.asarray(columns["pscore"]) > 0):
        raise InputError("pscore", "expected the logger's marginals > 0 on every row")
    w = columns["target_marginal"] / columns["pscore"]
    return slot, columns["reward"].astype(w.dtype), w


def position_row_terms(
    slot: ArrayLike, reward: ArrayLike, pscore: ArrayLike, target_marginal: ArrayLike, *, n_slots: int
) -> dict[str, jax.Array]:
    """Per-row terms ``phi [N]`` of IIPS and SNIIPS: their mean is the estimate, ``std(ddof=1) / sqrt(N)``
    its standard error (delta method), and two policies' terms on the same rows give their paired
    difference (:func:`towerjax.evaluation.paired_difference`). Differentiable in ``target_marginal``.

    ``phi_i = V + (C_i - m) . grad g(m)`` with ``C`` the ``[N, 3K]`` table of the module docstring; for
    a row of slot ``k``, IIPS's is ``V + (w_i r_i - V_k) / f_k`` with ``f_k = n_k / N``.

    Args:
      slot: ``[N]`` int slots in ``[0, K)``; every slot needs rows.
      reward: ``[N]`` rewards.
      pscore: ``[N]`` the logger's marginals ``pi_0(a_i at k_i | x_i) > 0``.
      target_marginal: ``[N]`` the target policy's ``P_pi(a_i at k_i | x_i)``; ``pscore`` itself gives
        the logger's on-policy list value (``w = 1``).
      n_slots: ``K``.

    Returns:
      ``{"iips": [N], "sniips": [N]}``.
    """
    _, value, influence = _terms(
        *_checked_weights(slot, reward, pscore, target_marginal, n_slots), n_slots=n_slots
    )
    terms = value + influence
    return {name: terms[:, e] for e, name in enumerate(POSITION_ROW_ESTIMATORS)}


def position_row_estimates(
    slot: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    target_marginal: ArrayLike,
    *,
    n_slots: int,
    key: jax.Array | None = None,
    n_bootstrap: int = 1000,
) -> dict[str, Estimate]:
    """IIPS and SNIIPS of a list policy's value on position rows, each an :class:`~towerjax.evaluation.Estimate`.

    The value is the sum over slots (module docstring), the standard error the delta method's
    (:func:`position_row_terms`), the Wald interval ``value +- 1.96 stderr``, and with ``key`` the 2.5%
    and 97.5% percentiles over ``n_bootstrap`` resamples of the ``N`` rows (drawn together, so a
    slot's row count varies between resamples; each slot's mean is then a ratio to that count).
    The diagnostics are those of all rows' weights ``w_i`` (mean 1 in expectation: each slot's is).

    Args:
      slot, reward, pscore, target_marginal, n_slots: as :func:`position_row_terms`.
      key: the bootstrap's ``jax.random.key``, or ``None`` (bootstrap bounds NaN).
      n_bootstrap: resamples.

    >>> out = position_row_estimates(jnp.array([0, 0, 1, 1]), jnp.array([1.0, 0.0, 0.0, 1.0]),
    ...                              jnp.full(4, 0.5), jnp.array([0.5, 0.5, 0.25, 0.75]), n_slots=2)
    >>> round(out["iips"].value, 4), round(out["sniips"].value, 4)  # 0.5 + 0.75, 0.5 + 0.75
    (1.25, 1.25)
    """
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    slot, reward, w = _checked_weights(slot, reward, pscore, target_marginal, n_slots)
    value, stderr, low, high, diagnostics = _intervals(
        slot, reward, w, key, n_slots=n_slots, n_bootstrap=n_bootstrap
    )
    note = f"sum over {n_slots} slots of each slot's estimate"
    out = {}
    for e, name in enumerate(POSITION_ROW_ESTIMATORS):
        v, se = float(value[e]), float(stderr[e])
        wald = normal_interval(v, se)
        out[name] = Estimate(v, se, *wald, float(low[e]), float(high[e]), diagnostics, note)
    return out


def position_row_loss(
    name: str,
    scores: ArrayLike,
    item: ArrayLike,
    slot: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike | None = None,
    *,
    n_slots: int,
    temperature: float = 1.0,
    cap: float | None = None,
    key: jax.Array | None = None,
    n_samples: int = 64,
) -> jax.Array:
    """Surrogate whose gradient is minus the IIPS (or SNIIPS) policy gradient on position rows.

    .. math::
      L_\\mathrm{iips} = -\\sum_k \\frac{1}{n_k} \\sum_{i: k_i = k} \\mathrm{sg}(w_i) r_i \\log P_\\pi(a_i \\text{ at } k_i | x_i),
      \\quad L_\\mathrm{sniips} = -\\sum_k \\frac{\\sum_{i: k_i = k} \\mathrm{sg}(w_i) (r_i - b_k) \\log P_i}{\\sum_{i: k_i = k} \\mathrm{sg}(w_i)}

    with ``b_k`` slot ``k``'s SNIIPS value (``sum w r / sum w``) and ``n_k`` its rows in the batch, so that
    ``grad L = -grad V_hat`` (``grad w = w grad log P``, Williams 1992) for the estimates of
    :func:`position_row_terms` on the batch. ``naive`` is ``iips`` with ``w = 1``: the click likelihood
    of the clicked items at their slots, no off-policy correction. ``cap`` clips the weights at ``cap``
    in the surrogate (as :class:`towerjax.objectives.IPS` does; then the gradient is no longer the
    estimate's). With ``key`` the marginals are sampled (:func:`position_row_marginals`) and ``log P``
    is replaced by ``P_hat / sg(P_hat)``: an unbiased gradient of the exact IIPS.
    A slot with no rows in the batch contributes 0.

    Args:
      name: one of :data:`POSITION_ROW_OBJECTIVES`.
      scores: ``[B, A]`` scores of the list policy being learned.
      item, slot, reward: ``[B]`` position rows.
      pscore: ``[B]`` the logger's marginals ``pi_0(a_i at k_i | x_i)`` (not used by ``naive``).
      n_slots: ``K``.
      temperature: Plackett-Luce ``tau``.
      cap: optional weight cap ``> 0``.
      key, n_samples: sampled marginals (:func:`position_row_marginals`); ``None`` for exact ones.

    References:
      Li et al., *Offline evaluation of ranking policies with click models*, KDD 2018 (IIPS);
      Swaminathan & Joachims, *The self-normalized estimator for counterfactual learning*, NeurIPS 2015.
    """
    check_choice("name", name, POSITION_ROW_OBJECTIVES)
    if cap is not None:
        cap = check_positive("cap", cap)
    if name != "naive" and pscore is None:
        raise InputError("pscore", f"expected the logger's marginals for {name!r}")
    pscore = jnp.ones_like(jnp.asarray(reward, float)) if pscore is None else pscore
    slot, columns = _check_rows(slot, n_slots, item=item, reward=reward, pscore=pscore)
    marginal = position_row_marginals(
        scores, columns["item"], slot, n_slots, temperature, key=key, n_samples=n_samples
    )
    tiny = jnp.finfo(marginal.dtype).tiny
    if key is None:
        log_marginal = jnp.log(jnp.maximum(marginal, tiny))
    else:  # grad log P_hat = grad P_hat / P_hat; finite where P_hat is 0
        log_marginal = marginal / jax.lax.stop_gradient(jnp.maximum(marginal, tiny))
    if name == "naive":
        w = jnp.ones_like(marginal)
    else:
        w = jax.lax.stop_gradient(marginal) / columns["pscore"]
    w = w if cap is None else jnp.minimum(w, cap)
    w = jax.lax.stop_gradient(w)
    reward = columns["reward"].astype(marginal.dtype)
    one_hot = jax.nn.one_hot(slot, n_slots, dtype=marginal.dtype)  # [B, K]
    if name == "sniips":
        total = w @ one_hot  # [K]
        baseline = safe_ratio((w * reward) @ one_hot, total)  # b_k
        centred = reward - one_hot @ baseline
        return -jnp.sum(safe_ratio((w * centred * log_marginal) @ one_hot, total))
    return -jnp.sum(safe_ratio((w * reward * log_marginal) @ one_hot, jnp.sum(one_hot, axis=0)))
