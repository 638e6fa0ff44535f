"""Propensities of rating-style logs (MovieLens, Yahoo! R3, Coat): the logging policy that observation
propensities ``P(O = 1 | u, i)`` amount to (:func:`rating_logging_policy`) and each observed
rating's propensity as a logged round (:func:`rating_pscore`).
"""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, as_float_array, as_int_array

__all__ = ["rating_logging_policy", "rating_pscore"]


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
    user = as_int_array(user, "user", n)
    item = as_int_array(item, "item", n)
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
    propensity = as_float_array(value, "observation_propensity", ndim=2)
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
