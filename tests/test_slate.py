"""Slate off-policy estimators (SPEC 10): on-policy identities, exact unbiasedness on an enumerable
problem, self-normalised and delta-method forms, diagnostics and input errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax import list_policy
from towerjax.evaluation import slate_estimator_terms

A, K, C = 4, 3, 3  # items, positions, contexts
ALPHA = np.array([1.0, 0.5, 0.25])
LISTS = list_policy.all_lists(A, K)  # [24, 3]
N_LISTS = len(LISTS)


def _propensities(scores, lists):
    """Whole-list, position-marginal and prefix probabilities ``[n], [n, K], [n, K]`` and the next-item
    distributions ``[n, K, A]`` of the Plackett-Luce policy on ``scores [n, A]`` for ``lists [n, K]``."""
    marginals = np.asarray(list_policy.exact_position_marginals(scores, lists.shape[1]))
    rows = np.arange(len(lists))[:, None]
    return (
        np.exp(np.asarray(towerjax.list_log_prob(scores, lists), np.float64)),
        marginals[rows, np.arange(lists.shape[1]), lists],
        np.exp(np.asarray(towerjax.prefix_log_probs(scores, lists), np.float64)),
        np.exp(np.asarray(towerjax.next_item_log_probs(scores, lists), np.float64)),
    )


def _enumerated_problem():
    """Every (context, list) pair as a row, with the logger's and the evaluated policy's propensities."""
    keys = jax.random.split(jax.random.key(0), 2)
    logger_scores = jax.random.normal(keys[0], (C, A))
    target_scores = 1.5 * jax.random.normal(keys[1], (C, A))
    lists = np.tile(LISTS, (C, 1))  # [C * L, K], context-major
    context = np.repeat(np.arange(C), N_LISTS)
    logger = _propensities(jnp.repeat(logger_scores, N_LISTS, 0), lists)
    target = _propensities(jnp.repeat(target_scores, N_LISTS, 0), lists)
    return lists, context, logger, target


LOGS = _enumerated_problem()


def _expected_rewards(structure, seed=1):
    """``q [C * L, K]``: the expected reward at each position of each row's list, of the given structure."""
    lists, context, _, _ = LOGS
    rng = np.random.default_rng(seed)
    if structure == "independent":  # position k's reward depends on (x, k, a_k) only
        table = rng.uniform(size=(C, K, A))
        return table[context[:, None], np.arange(K), lists]
    if structure == "cascade":  # on (x, a_1..a_k) only
        tables = [rng.uniform(size=(C,) + (A,) * (k + 1)) for k in range(K)]
        return np.stack([tables[k][(context, *lists[:, : k + 1].T)] for k in range(K)], axis=1)
    return rng.uniform(size=(len(lists), K))  # any interaction between the list's items


def _exact_mean(per_row, probs):
    """``mean_x sum_a probs(a | x) per_row(x, a)`` over the enumerated rows."""
    return float(np.sum(probs * per_row) / C)


def _terms(reward, names=None, **kwargs):
    lists, _, logger, target = LOGS
    return towerjax.slate_terms(
        lists,
        reward,
        pscore=logger[0],
        pscore_item_position=logger[1],
        pscore_cascade=logger[2],
        evaluation_policy_pscore=target[0],
        evaluation_policy_pscore_item_position=target[1],
        evaluation_policy_pscore_cascade=target[2],
        position_weight=ALPHA,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("structure", "unbiased"),
    [
        ("any", ("sips",)),
        ("cascade", ("sips", "rips", "cascade-dr")),
        ("independent", ("sips", "iips", "rips", "cascade-dr")),
    ],
)
def test_unbiased_for_the_exact_value_over_every_list(structure, unbiased):
    """``E_{a ~ pi_0} phi(a) = V(pi)`` computed exactly: each estimator's row terms, averaged with the
    logger's list probabilities, equal the evaluated policy's value under the rewards it assumes."""
    lists, context, logger, target = LOGS
    q = _expected_rewards(structure)
    truth = _exact_mean(q @ ALPHA, target[0])
    rng = np.random.default_rng(2)
    # q_hat_k(b) may be anything that depends on the context, the prefix above k and b only
    tables = [rng.uniform(size=(C,) + (A,) * (k + 1)) for k in range(K)]
    q_hat = np.stack([tables[k][(context, *lists[:, :k].T)] for k in range(K)], axis=1)  # [n, K, A]
    terms = _terms(q, q_hat=q_hat, evaluation_policy_action_dist=target[3])
    for name in unbiased:
        assert _exact_mean(terms[name], logger[0]) == pytest.approx(truth, rel=1e-5), name
    if structure == "any":  # the biased ones are measurably off here, so the check has teeth
        for name in ("iips", "rips"):
            assert abs(_exact_mean(terms[name], logger[0]) - truth) > 1e-3, name


def test_pseudo_inverse_is_unbiased_for_additive_rewards_and_an_independent_logger():
    """Swaminathan et al.'s setting: position k draws from its own items, independently of the others."""
    slots = [np.array([0, 1, 2]), np.array([3, 4, 5])]
    lists = np.array(list(itertools.product(*slots)))  # [9, 2], every list once
    rng = np.random.default_rng(4)
    logger_slot = [rng.dirichlet(np.ones(3)) for _ in slots]
    logger = logger_slot[0][lists[:, 0] % 3] * logger_slot[1][lists[:, 1] % 3]
    target = rng.dirichlet(np.ones(len(lists)))  # any list distribution, not independent
    logger_item = np.stack([logger_slot[k][lists[:, k] % 3] for k in range(2)], axis=1)
    target_item = np.stack([[target[lists[:, k] == a].sum() for a in lists[:, k]] for k in range(2)], axis=1)
    phi = rng.uniform(size=(2, 6))
    q = np.stack([phi[k, lists[:, k]] for k in range(2)], axis=1)  # additive: r = sum_k phi_k(a_k)
    alpha = np.array([1.0, 0.7])
    terms = towerjax.slate_terms(
        lists,
        q,
        pscore=logger,
        pscore_item_position=logger_item,
        evaluation_policy_pscore=target,
        evaluation_policy_pscore_item_position=target_item,
        position_weight=alpha,
    )
    truth = float(target @ (q @ alpha))
    assert float(logger @ terms["pseudo-inverse"]) == pytest.approx(truth, rel=1e-5)
    assert float(logger @ terms["iips"]) == pytest.approx(truth, rel=1e-5)


def test_on_policy_every_ips_form_is_the_average_logged_reward():
    lists, _, logger, _ = LOGS
    reward = np.random.default_rng(5).binomial(1, 0.4, size=(len(lists), K)).astype(float)
    est = towerjax.slate_estimates(
        lists,
        reward,
        pscore=logger[0],
        pscore_item_position=logger[1],
        pscore_cascade=logger[2],
        evaluation_policy_pscore=logger[0],
        evaluation_policy_pscore_item_position=logger[1],
        evaluation_policy_pscore_cascade=logger[2],
        position_weight=ALPHA,
        key=jax.random.key(0),
        n_bootstrap=200,
    )
    average = float(np.mean(reward @ ALPHA))
    for name in ("sips", "snsips", "iips", "sniips", "rips", "snrips", "pseudo-inverse"):
        assert est[name].value == pytest.approx(average, rel=1e-5), name
        assert est[name].diagnostics.ess == pytest.approx(len(lists), rel=1e-5)
        assert est[name].bootstrap_low <= est[name].value <= est[name].bootstrap_high


def test_definitions_standard_errors_and_diagnostics():
    lists, _, logger, target = LOGS
    reward = np.random.default_rng(6).uniform(size=(len(lists), K))
    kwargs = {
        "pscore": logger[0],
        "pscore_item_position": logger[1],
        "pscore_cascade": logger[2],
        "evaluation_policy_pscore": target[0],
        "evaluation_policy_pscore_item_position": target[1],
        "evaluation_policy_pscore_cascade": target[2],
        "position_weight": ALPHA,
    }
    est = towerjax.slate_estimates(lists, reward, **kwargs)
    terms = towerjax.slate_terms(lists, reward, **kwargs)
    n = len(lists)
    w, w_item, w_cascade = target[0] / logger[0], target[1] / logger[1], target[2] / logger[2]
    value = float(np.sum(w * (reward @ ALPHA)) / np.sum(w))
    assert est["snsips"].value == pytest.approx(value, rel=1e-5)
    influence = w * (reward @ ALPHA - value) / np.mean(w)  # the delta method's
    assert est["snsips"].stderr == pytest.approx(np.std(influence, ddof=1) / np.sqrt(n), rel=1e-4)
    per_position = np.sum(w_item * reward, 0) / np.sum(w_item, 0)
    assert est["sniips"].value == pytest.approx(float(per_position @ ALPHA), rel=1e-5)
    per_position = np.sum(w_cascade * reward, 0) / np.sum(w_cascade, 0)
    assert est["snrips"].value == pytest.approx(float(per_position @ ALPHA), rel=1e-5)
    # cascade-DR row by row: sum_k alpha_k [w_1:k (r_k - q_hat_k(a_k)) + w_1:k-1 sum_b pi(b | a_1:k-1) q_hat_k(b)]
    q_hat = np.random.default_rng(8).uniform(size=(n, K, A))
    dr = towerjax.slate_terms(lists, reward, **kwargs, q_hat=q_hat, evaluation_policy_action_dist=target[3])
    above = np.concatenate([np.ones((n, 1)), w_cascade[:, :-1]], axis=1)
    logged = q_hat[np.arange(n)[:, None], np.arange(K), lists]
    by_hand = (w_cascade * (reward - logged) + above * np.sum(target[3] * q_hat, -1)) @ ALPHA
    np.testing.assert_allclose(dr["cascade-dr"], by_hand, rtol=1e-5, atol=1e-4)
    for name, estimate in est.items():  # terms give the value and the standard error
        assert np.mean(terms[name]) == pytest.approx(estimate.value, rel=1e-5)
        assert np.std(terms[name], ddof=1) / np.sqrt(n) == pytest.approx(estimate.stderr, rel=1e-4)
        assert estimate.wald_low < estimate.value < estimate.wald_high
        assert np.isnan(estimate.bootstrap_low)  # no key, no bootstrap
    assert est["sips"].diagnostics == pytest.approx(tuple(towerjax.weight_diagnostics(w).to_dict().values()))
    last = towerjax.weight_diagnostics(w_cascade[:, -1])
    ess = [float(towerjax.weight_diagnostics(w_cascade[:, k]).ess) for k in range(K)]
    assert int(np.argmin(ess)) == K - 1 and est["rips"].diagnostics.ess == pytest.approx(float(last.ess))
    assert "position 3" in est["rips"].note
    assert "additive" in est["pseudo-inverse"].note


def test_the_terms_core_is_jit_and_vmap_able():
    lists, _, logger, target = LOGS
    reward = jnp.asarray(np.random.default_rng(7).uniform(size=(len(lists), K)))
    w = jnp.stack([target[2] / logger[2], logger[2] / logger[2]])  # two policies' prefix weights
    core = jax.jit(lambda w_c: slate_estimator_terms(reward, w_cascade=w_c, names=("rips", "snrips")))
    batched = jax.vmap(core)(w)
    for i in range(2):
        eager = slate_estimator_terms(reward, w_cascade=w[i], names=("rips", "snrips"))
        for name in ("rips", "snrips"):
            np.testing.assert_allclose(batched[name][i], eager[name], rtol=1e-5)


def test_errors_name_the_argument():
    lists = np.array([[0, 1], [2, 3], [1, 0]])
    reward = np.zeros((3, 2))
    p = np.full(3, 0.1)
    ok = {"pscore": p, "evaluation_policy_pscore": p}
    cases = [
        ("lists", dict(lists=np.array([[0, 1], [2, 2], [1, 0]])), "distinct items.*row 1"),
        ("lists", dict(lists=lists[:1], reward=reward[:1]), "at least 2 rows"),
        ("lists", dict(lists=lists.astype(float)), "integer"),
        ("reward", dict(reward=np.zeros((3, 3))), r"shape \(3, 2\)"),
        ("reward", dict(reward=np.full((3, 2), np.nan)), "finite"),
        ("pscore", dict(pscore=np.array([0.1, 0.0, 0.1])), r"in \(0, 1\]"),
        (
            "evaluation_policy_pscore",
            dict(evaluation_policy_pscore=np.array([0.1, -0.1, 0.1])),
            r"in \[0, 1\]",
        ),
        ("evaluation_policy_pscore", dict(evaluation_policy_pscore=None), "together with pscore"),
        ("pscore", dict(pscore=None, evaluation_policy_pscore=None), "at least one"),
        (
            "pscore_cascade",
            dict(
                pscore_cascade=np.array([[0.2, 0.3]] * 3),
                evaluation_policy_pscore_cascade=np.full((3, 2), 0.1),
            ),
            "do not increase",
        ),
        (
            "q_hat",
            dict(q_hat=np.zeros((3, 2, 4)), evaluation_policy_action_dist=np.full((3, 2, 4), 0.25)),
            "pscore_cascade",
        ),
        ("position_weight", dict(position_weight=np.array([1.0, -1.0])), ">= 0"),
        ("n_bootstrap", dict(n_bootstrap=0), "positive integer"),
    ]
    for argument, change, message in cases:
        kwargs = {"lists": lists, "reward": reward, **ok, **change}
        with pytest.raises(towerjax.InputError, match=rf"^{argument}: .*{message}"):
            towerjax.slate_estimates(**kwargs)
    cascade = {
        "pscore_cascade": np.full((3, 2), 0.1),
        "evaluation_policy_pscore_cascade": np.full((3, 2), 0.1),
    }
    dist = np.full((3, 2, 4), 0.25)
    with pytest.raises(towerjax.InputError, match=r"^evaluation_policy_action_dist: .*sum to 1"):
        towerjax.slate_terms(
            lists, reward, **cascade, q_hat=np.zeros((3, 2, 4)), evaluation_policy_action_dist=dist * 2
        )
    with pytest.raises(towerjax.InputError, match=r"^evaluation_policy_action_dist: .*already shown"):
        towerjax.slate_terms(
            lists, reward, **cascade, q_hat=np.zeros((3, 2, 4)), evaluation_policy_action_dist=dist
        )
    with pytest.raises(towerjax.InputError, match=r"^lists: .*to match q_hat"):
        towerjax.slate_terms(
            lists, reward, **cascade, q_hat=np.zeros((3, 2, 3)), evaluation_policy_action_dist=dist[..., :3]
        )
    with pytest.raises(towerjax.InputError, match=r"^names: "):
        slate_estimator_terms(jnp.zeros((3, 2)), w=jnp.ones(3), names=("rips",))
