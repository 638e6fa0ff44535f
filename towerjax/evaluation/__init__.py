"""Off-policy evaluation of a policy from single-position logs (SPEC 7).

:func:`off_policy_estimates` gives Open Bandit Pipeline's estimators, under its
``estimator_name`` s, each as an :class:`Estimate`: a value, a standard error, a 95% Wald
interval, a 95% bootstrap percentile interval and the diagnostics of the importance weights
it relies on (:func:`weight_diagnostics`). :func:`towerjax.jsonio.plain` makes any nested result
JSON-strict. The true value on data with known ``q`` is :func:`towerjax.policy.policy_value`.

Every estimator is a function ``g`` of the column means ``m`` of a per-row table ``C [n, K]``
(``w r``, ``w``, ``dm``, ``w res``, ...). So one jitted computation gives all of them at once:
the values ``g(m)``; the standard errors by the delta method, from the per-row influence
``(C_i - m) . grad g(m)`` (for a plain mean, the row's term minus the mean); and the bootstrap,
where resample ``b`` is ``g(counts_b @ C / n)`` with ``counts_b`` the rows' multiplicities.

Modules: :mod:`~towerjax.evaluation.results` (the result types), :mod:`~towerjax.evaluation.estimators`
(the column form, per-row terms, paired differences, training's validation estimates),
:mod:`~towerjax.evaluation.off_policy` (the checked host entry points) and
:mod:`~towerjax.evaluation.slate` (the slate estimators on multi-position logs, SPEC 10),
:mod:`~towerjax.evaluation.selection` (SLOPE's choice within an estimator family) and
:mod:`~towerjax.evaluation.bounds` (the empirical-Bernstein lower bound).
"""

from towerjax.evaluation.bounds import bernstein_lower_bound
from towerjax.evaluation.estimators import (
    ALIASES,
    ESTIMATORS,
    Lambdas,
    estimates_from_terms,
    estimator_terms,
    paired_difference,
    summarize_terms,
    validation_estimates,
)
from towerjax.evaluation.off_policy import (
    ROW_SUM_TOLERANCE,
    chosen_estimate,
    off_policy_estimates,
    off_policy_lower_bound,
    off_policy_terms,
)
from towerjax.evaluation.results import (
    Z_95,
    Estimate,
    WeightDiagnostics,
    mean_se,
    normal_interval,
    wald_estimate,
    weight_diagnostics,
)
from towerjax.evaluation.selection import FAMILIES, RULES, Choice, choose_estimator, slope, slope_mse
from towerjax.evaluation.slate import SLATE_ESTIMATORS, slate_estimates, slate_estimator_terms, slate_terms

__all__ = [
    "ALIASES",
    "ESTIMATORS",
    "FAMILIES",
    "ROW_SUM_TOLERANCE",
    "RULES",
    "SLATE_ESTIMATORS",
    "Z_95",
    "Choice",
    "Estimate",
    "Lambdas",
    "WeightDiagnostics",
    "bernstein_lower_bound",
    "choose_estimator",
    "chosen_estimate",
    "estimates_from_terms",
    "estimator_terms",
    "mean_se",
    "normal_interval",
    "off_policy_estimates",
    "off_policy_lower_bound",
    "off_policy_terms",
    "paired_difference",
    "slate_estimates",
    "slate_estimator_terms",
    "slate_terms",
    "slope",
    "slope_mse",
    "summarize_terms",
    "validation_estimates",
    "wald_estimate",
    "weight_diagnostics",
]
