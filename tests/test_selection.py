"""SLOPE's choice within an estimator family and the empirical-Bernstein lower bound (SPEC 10)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import t as student_t

import towerjax as tj
from towerjax.checks import InputError
from towerjax.evaluation import Lambdas, estimator_terms
from towerjax.evaluation.bounds import default_clip, lower_bound_entry
from towerjax.evaluation.selection import (
    RULES,
    SLOPE_C,
    default_grid,
    estimate_entry,
    estimated_mse,
    family_terms,
    slope_mse,
)


def _terms(means, sds, n=400, seed=0):
    """``[L, n]`` terms with exactly the given means and sample standard deviations."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return np.stack([m + s * z for m, s in zip(means, sds, strict=True)])


def test_slope_takes_the_narrowest_estimate_consistent_with_every_wider_one():
    n = 400
    t95 = student_t.ppf(0.95, n - 1)
    # widths cnf = t * sd / sqrt(n): 0.1, 0.05, 0.025, 0.0125 (decreasing: less and less variance)
    sds = [w * math.sqrt(n) / t95 for w in (0.1, 0.05, 0.025, 0.0125)]
    agree = _terms([1.0, 1.02, 1.03, 1.035], sds)
    index, order, values, widths = tj.slope(agree)
    assert index == 3 and order.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(widths, [0.1, 0.05, 0.025, 0.0125], rtol=1e-9)
    np.testing.assert_allclose(values, [1.0, 1.02, 1.03, 1.035], rtol=1e-12)
    # the third departs from the second by 0.1 > 0.025 + C 0.05: SLOPE stops at the second
    biased = _terms([1.0, 1.02, 1.12, 1.13], sds)
    assert tj.slope(biased)[0] == 1
    # the test is pairwise against every earlier one: |1.0 - 1.2| > 0.05 + C 0.1 though 1.2 is close to 1.13
    assert tj.slope(_terms([1.0, 1.13, 1.2, 1.2], sds))[0] == 1
    # the boundary: |theta_j - theta_i| <= cnf_i + C cnf_j is accepted with equality (up to rounding)
    edge = 0.05 + SLOPE_C * 0.1
    assert tj.slope(_terms([1.0, 1.0 + edge - 1e-9], sds[:2]))[0] == 1
    assert tj.slope(_terms([1.0, 1.0 + edge + 1e-6], sds[:2]))[0] == 0
    # SLOPE visits by decreasing width, whatever the rows' order
    perm = [2, 0, 3, 1]
    index, order, _, _ = tj.slope(biased[perm])
    assert perm[index] == 1 and [perm[i] for i in order] == [0, 1, 2, 3]


def test_slope_mse_takes_the_smallest_estimated_mse_among_the_members_slope_admits():
    n = 400
    sd0 = 0.02 * math.sqrt(n) / student_t.ppf(0.95, n - 1)  # widths 0.02, 0.0196, 0.0192
    terms = _terms([1.0, 1.0, 1.04], [sd0, 0.98 * sd0, 0.96 * sd0])
    # every member agrees (0.04 <= 0.0192 + C 0.02), so SLOPE takes the narrowest, biased by 0.04 ...
    assert tj.slope(terms)[0] == 2
    # ... where its squared bias, net of the noise of its difference to the widest, outweighs its variance
    d = terms - terms[0]
    by_hand = np.maximum(d.mean(1) ** 2 - d.var(1, ddof=1) / n, 0) + terms.var(1, ddof=1) / n
    np.testing.assert_allclose(estimated_mse(terms, reference=0), by_hand, rtol=1e-12)
    index, order, _, _, mses = slope_mse(terms)
    assert index == 1 and order.tolist() == [0, 1, 2] and np.argmin(mses) == 1
    np.testing.assert_allclose(mses, by_hand, rtol=1e-12)
    # it never goes past SLOPE's choice: a member SLOPE stopped before is not admitted, however narrow
    stopped = _terms([1.0, 1.0, 1.2], [sd0, 0.98 * sd0, 0.01 * sd0])
    assert tj.slope(stopped)[0] == 1 and slope_mse(stopped)[0] in (0, 1)
    # choose_estimator: slope-mse by default, plain SLOPE by name
    rng = np.random.default_rng(4)
    w, r = rng.exponential(size=300) * 3, (rng.random(300) < 0.3).astype(float)
    caps = (math.inf, 8.0, 4.0, 2.0, 1.0)
    members = family_terms("ipw-cap", w, r, caps)
    default = tj.choose_estimator(w, r, lambdas=caps)
    plain = tj.choose_estimator(w, r, lambdas=caps, rule="slope")
    assert RULES == ("slope-mse", "slope") and (default.rule, plain.rule) == RULES
    assert default.lambda_ == caps[slope_mse(members)[0]] and plain.lambda_ == caps[tj.slope(members)[0]]
    assert "smallest estimated MSE" in default.reason and "smallest" not in plain.reason
    assert default.to_dict()["candidates"][0]["mse"] == pytest.approx(default.mses[0])
    with pytest.raises(InputError, match="rule"):
        tj.choose_estimator(w, r, rule="lepski")


def test_estimate_entry_is_the_choice_and_the_lower_bound_evaluate_reports():
    rng = np.random.default_rng(5)
    n = 200
    w, r = rng.exponential(size=n) * 2, (rng.random(n) < 0.4).astype(float)
    entry = estimate_entry(w, r)
    assert entry["the_estimate"] == tj.choose_estimator(w, r).to_dict()
    bound = entry["lower_bound"]
    assert bound["clip"] == default_clip(n) and bound["delta"] == 0.05 and "Bernstein" in bound["method"]
    assert bound["value"] == tj.bernstein_lower_bound(w, r, clip=default_clip(n))
    q = rng.random(n)
    assert estimate_entry(w, r, direct=q, q_logged=q)["the_estimate"]["family"] == "dr-os"
    assert lower_bound_entry(w, r * 2) is None and estimate_entry(w, r * 2)["lower_bound"] is None


def test_family_terms_are_the_estimators_terms():
    rng = np.random.default_rng(1)
    n = 50
    w = rng.exponential(size=n) * 2
    r = rng.random(n)
    direct, q_logged = rng.random(n), rng.random(n)
    caps = (math.inf, 3.0, 1.0)
    np.testing.assert_allclose(
        family_terms("ipw-cap", w, r, caps), [w * r, np.minimum(w, 3) * r, np.minimum(w, 1) * r]
    )
    for family in ("switch-dr", "dr-os"):
        rows = family_terms(family, w, r, (math.inf, 2.0), direct=direct, q_logged=q_logged)
        dr = estimator_terms(w, r, direct=direct, q_logged=q_logged, names=("dr",))["dr"]
        np.testing.assert_allclose(rows[0], dr, rtol=1e-5)
        two = estimator_terms(
            w, r, direct=direct, q_logged=q_logged, names=(family,), lambdas=Lambdas(2.0, 2.0, 0.0, 0.0)
        )[family]
        np.testing.assert_allclose(rows[1], two, rtol=1e-5)
    grid = default_grid("ipw-cap", np.array([8.0, 1.0]))
    assert grid[0] == math.inf and grid[1] == pytest.approx(8 / math.sqrt(2)) and min(grid) > 1
    assert default_grid("dr-os", np.array([8.0, 1.0]))[1] == pytest.approx(64 / math.sqrt(2))
    with pytest.raises(InputError, match="direct"):
        family_terms("dr-os", w, r, (1.0,))
    with pytest.raises(InputError, match="family"):
        family_terms("ipw-clip", w, r, (1.0,))


def test_chosen_estimate_reports_the_chosen_member_and_why():
    rng = np.random.default_rng(2)
    n, a = 500, 6
    pi = rng.dirichlet(np.full(a, 0.3), size=n)
    action = rng.integers(0, a, n)
    reward = (rng.random(n) < 0.4).astype(float)
    pscore = np.full(n, 1 / a)
    choice = tj.chosen_estimate(pi, action, reward, pscore)
    assert choice.family == "ipw-cap" and choice.lambdas[0] == math.inf
    w = pi[np.arange(n), action] / pscore
    chosen = np.minimum(w, choice.lambda_) * reward
    assert choice.estimate.value == pytest.approx(chosen.mean())
    assert choice.estimate.stderr == pytest.approx(chosen.std(ddof=1) / math.sqrt(n))
    assert f"lambda={choice.lambda_:.4g}" in choice.reason and "SLOPE" in choice.reason
    assert choice.to_dict()["name"] == choice.name and choice.to_dict()["candidates"][0]["lambda"] == "inf"
    # on-policy every cap above max w is ipw; with w = 1 every member is the same, so the narrowest
    same = tj.chosen_estimate(np.eye(a)[action], action, reward, np.ones(n))
    assert same.lambda_ == math.inf and same.estimate.value == pytest.approx(reward.mean())
    q_hat = rng.random((n, a))
    assert tj.chosen_estimate(pi, action, reward, pscore, q_hat).family == "dr-os"
    with pytest.raises(InputError, match="pscore"):
        tj.chosen_estimate(pi, action, reward, np.zeros(n))
    with pytest.raises(InputError, match="delta"):
        tj.chosen_estimate(pi, action, reward, pscore, delta=1.5)


def test_bernstein_lower_bound_formula_and_coverage():
    rng = np.random.default_rng(3)
    n = 300
    w, r = rng.exponential(size=n) * 1.5, rng.random(n)
    b, delta = 4.0, 0.1
    x = np.minimum(w, b) * r
    by_hand = (
        x.mean()
        - math.sqrt(2 * x.var(ddof=1) * math.log(2 / delta) / n)
        - 7 * b * math.log(2 / delta) / (3 * (n - 1))
    )
    assert tj.bernstein_lower_bound(w, r, clip=b, delta=delta) == pytest.approx(by_hand, rel=1e-12)
    # a valid 95% bound: below the truth in (far) more than 95% of 400 on-policy logs of Bernoulli(0.3)
    bounds = [tj.bernstein_lower_bound(np.ones(n), (rng.random(n) < 0.3).astype(float)) for _ in range(400)]
    assert np.mean(np.array(bounds) <= 0.3) >= 0.95
    pi = np.full((n, 3), 1 / 3)
    action = rng.integers(0, 3, n)
    assert tj.off_policy_lower_bound(pi, action, r, np.full(n, 1 / 3), clip=b) == pytest.approx(
        tj.bernstein_lower_bound(np.ones(n), r, clip=b)
    )
    with pytest.raises(InputError, match="reward"):
        tj.bernstein_lower_bound(w, r + 1)
    with pytest.raises(InputError, match="clip"):
        tj.bernstein_lower_bound(w, r, clip=0.0)
    with pytest.raises(InputError, match="terms"):
        tj.slope(np.ones((2, 1)))
    assert jnp.isfinite(tj.bernstein_lower_bound(w, r))
