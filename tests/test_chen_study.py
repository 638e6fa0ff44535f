"""Chen et al. (2019) stateless simulations (SPEC 5.3): the closed-form limits and the learners."""

import numpy as np
import pytest

from towerjax.studies.chen import chen_simulations, expected_policy, run_chen_study, topk_optimum


def test_topk_optimum_is_the_stationary_point():
    pi = topk_optimum(np.array([10.0, 9.0] + [1.0] * 8), 2)
    np.testing.assert_allclose(pi[:2], [0.5263, 0.4737], atol=1e-3)
    assert pi.sum() == pytest.approx(1.0) and np.all(pi[2:] == 0)


def test_chen_simulations_reach_their_published_outcomes():
    rows = {row["simulation"]: row for row in run_chen_study(seed=0, steps=3000)}
    naive = np.array(rows["a/naive"]["learned_pi"])
    r, beta = np.arange(1, 11), (11 - np.arange(1, 11)) / 55
    assert np.abs(naive - r * beta / np.sum(r * beta)).sum() < 0.05
    assert rows["a/ips"]["learned_pi"][9] > 0.9
    assert rows["b/ips"]["learned_pi"][0] > 0.9
    assert rows["b/topk"]["learned_pi"][1] >= 0.2
    for sim in chen_simulations():
        np.testing.assert_allclose(rows[sim.name]["expected_pi"], expected_policy(sim))
