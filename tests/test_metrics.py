"""Ranking metrics: hand-computed values, means over users, cut-off checks, jit and vmap;
evaluation on randomised logs: the unbiased value and the metrics of each user's logged items."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.metrics import (
    logged_item_metrics,
    ndcg_at_k,
    precision_at_k,
    randomized_value,
    ranking_metrics,
    recall_at_k,
)

D2, D3 = 1 / math.log2(3), 1 / math.log2(4)  # discounts of ranks 2 and 3

LABELS = np.array(
    [
        [1, 0, 1, 0, 0],  # two relevant items: 0 and 2
        [0, 0, 0, 0, 0],  # none relevant
        [1, 1, 1, 1, 1],  # all relevant
        [0, 0, 0, 0, 1],  # one relevant, ranked third
    ],
    dtype=bool,
)


RANKED = np.array([[0, 1, 2], [3, 4, 0], [4, 3, 2], [0, 1, 4]])


def test_precision_at_k_hand_computed():
    np.testing.assert_allclose(precision_at_k(RANKED, LABELS, 1), [1, 0, 1, 0])
    np.testing.assert_allclose(precision_at_k(RANKED, LABELS, 2), [0.5, 0, 1, 0])
    np.testing.assert_allclose(precision_at_k(RANKED, LABELS, 3), [2 / 3, 0, 1, 1 / 3], rtol=1e-6)


def test_recall_at_k_hand_computed():
    np.testing.assert_allclose(recall_at_k(RANKED, LABELS, 2), [0.5, 0, 0.4, 0], rtol=1e-6)
    np.testing.assert_allclose(recall_at_k(RANKED, LABELS, 3), [1, 0, 0.6, 1], rtol=1e-6)


def test_ndcg_at_k_hand_computed():
    np.testing.assert_allclose(ndcg_at_k(RANKED, LABELS, 2), [1 / (1 + D2), 0, 1, 0], rtol=1e-6)
    expected = [(1 + D3) / (1 + D2), 0, 1, D3 / 1]
    np.testing.assert_allclose(ndcg_at_k(RANKED, LABELS, 3), expected, rtol=1e-6)


def test_ranking_metrics_are_means_over_users():
    out = ranking_metrics(RANKED, LABELS, (2, 3))
    assert set(out) == {f"{m}@{k}" for m in ("precision", "recall", "ndcg") for k in (2, 3)}
    np.testing.assert_allclose(out["precision@3"], np.mean([2 / 3, 0, 1, 1 / 3]), rtol=1e-6)
    np.testing.assert_allclose(out["recall@2"], np.mean([0.5, 0, 0.4, 0]), rtol=1e-6)


def test_metrics_reject_a_cutoff_beyond_the_list():
    with pytest.raises(InputError, match=r"^k:"):
        precision_at_k(RANKED, LABELS, 4)
    with pytest.raises(InputError, match=r"^k:"):
        ndcg_at_k(RANKED, LABELS, 0)
    with pytest.raises(InputError, match=r"^ranked:"):
        recall_at_k(RANKED[0], LABELS, 2)


@pytest.mark.parametrize("metric", [precision_at_k, recall_at_k, ndcg_at_k])
def test_metrics_under_jit_and_vmap_match_eager_and_a_loop(metric):
    eager = metric(RANKED, LABELS, 3)
    np.testing.assert_allclose(jax.jit(metric, static_argnums=2)(RANKED, LABELS, 3), eager)
    # A batch of two label sets: vmap equals a Python loop over them.
    labels = np.stack([LABELS, ~LABELS])
    batched = jax.vmap(lambda y: metric(RANKED, y, 3))(jnp.asarray(labels))
    looped = np.stack([metric(RANKED, y, 3) for y in labels])
    np.testing.assert_allclose(batched, looped)


# --------------------------------------------------------------------------- randomised logs


def test_randomized_value_hand_computed_and_default_propensity():
    pi = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]])
    action, reward = np.array([0, 1, 2]), np.array([1.0, 0.0, 2.0])
    terms = np.array([0.5 * 3 * 1.0, 0.0, 0.6 * 3 * 2.0])  # pi(a_i | x_i) / (1/3) * r_i
    value, stderr = randomized_value(pi, action, reward)
    np.testing.assert_allclose(value, terms.mean(), rtol=1e-6)
    np.testing.assert_allclose(stderr, terms.std(ddof=1) / math.sqrt(3), rtol=1e-5)
    explicit = randomized_value(pi, action, reward, np.full(3, 1 / 3))
    np.testing.assert_allclose(explicit.value, value, rtol=1e-6)
    np.testing.assert_allclose(explicit.stderr, stderr, rtol=1e-6)
    # The uniform policy's value on its own log is the mean reward.
    np.testing.assert_allclose(randomized_value(np.full((3, 3), 1 / 3), action, reward).value, 1.0, rtol=1e-6)
    assert np.isnan(randomized_value(pi[:1], action[:1], reward[:1]).stderr)


def test_randomized_value_is_unbiased_on_simulated_uniform_logs():
    """Mean over many uniform logs equals the exact value (4 s.e.); the reported s.e. matches the spread."""
    rng = np.random.default_rng(0)
    n_actions, n_contexts, n, draws = 4, 3, 200, 2000
    q = rng.uniform(0.05, 0.6, size=(n_contexts, n_actions))  # click probabilities
    policy = rng.dirichlet(np.full(n_actions, 0.5), size=n_contexts)  # a skewed evaluated policy
    exact = np.mean(np.sum(policy * q, axis=1))  # contexts uniform
    x = rng.integers(0, n_contexts, size=(draws, n))
    action = rng.integers(0, n_actions, size=(draws, n))
    reward = (rng.random((draws, n)) < q[x, action]).astype(np.float32)
    value, stderr = jax.vmap(randomized_value)(
        jnp.asarray(policy[x], jnp.float32), jnp.asarray(action), jnp.asarray(reward)
    )
    value, stderr = np.asarray(value, np.float64), np.asarray(stderr, np.float64)
    spread = value.std(ddof=1)
    assert abs(value.mean() - exact) < 4 * spread / math.sqrt(draws)
    assert abs(stderr.mean() / spread - 1) < 0.1


def test_randomized_value_under_jit_matches_eager():
    pi = np.array([[0.5, 0.5], [0.9, 0.1], [0.3, 0.7]])
    args = (pi, np.array([0, 1, 1]), np.array([1.0, 1.0, 0.0]), np.array([0.5, 0.5, 0.5]))
    eager = randomized_value(*args)
    jitted = jax.jit(randomized_value)(*args)
    np.testing.assert_allclose(jitted.value, eager.value, rtol=1e-6)
    np.testing.assert_allclose(jitted.stderr, eager.stderr, rtol=1e-6)


def test_randomized_value_names_the_bad_argument():
    pi, action, reward = np.full((3, 2), 0.5), np.array([0, 1, 0]), np.ones(3)
    with pytest.raises(InputError, match=r"^pi:"):
        randomized_value(pi[0], action, reward)
    with pytest.raises(InputError, match=r"^action:"):
        randomized_value(pi, action[:2], reward)
    with pytest.raises(InputError, match=r"^action:"):
        randomized_value(pi, np.array([0, 2, 0]), reward)
    with pytest.raises(InputError, match=r"^reward:"):
        randomized_value(pi, action, np.ones((3, 1)))
    with pytest.raises(InputError, match=r"^pscore:"):
        randomized_value(pi, action, reward, np.ones(4))


# Two users, four items. User 0 logged items 0, 1, 2 (item 1 relevant); user 1 logged items
# 0, 1, 2, 3 (items 2 and 3 relevant). Rows are deliberately interleaved.
USER = np.array([1, 0, 1, 0, 1, 1, 0])
ITEM = np.array([0, 0, 3, 1, 2, 1, 2])
REWARD = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
PERFECT = np.array([[0.1, 0.9, 0.2, 0.0], [0.2, 0.1, 0.8, 0.9]])  # relevant items on top


def _brute_force(scores, user, item, reward, k, graded=False):
    """Per-user P@k, NDCG@k averaged over all orders of the logged items consistent with the scores."""
    precision, ndcg, auc = [], [], []
    for u in np.unique(user):
        rows = np.flatnonzero(user == u)
        s, r = scores[u, item[rows]], reward[rows]
        y = (r > 0).astype(float)
        g = r if graded else y
        n = rows.size
        cut = min(k, n)
        discount = 1 / np.log2(np.arange(2, n + 2))
        ideal = np.sum(np.sort(g)[::-1][:cut] * discount[:cut])
        p_values, d_values = [], []
        for perm in itertools.permutations(range(n)):
            if np.all(np.diff(s[list(perm)]) <= 0):  # a best-first order of the scores
                p_values.append(np.sum(y[list(perm)][:cut]) / cut)
                d_values.append(np.sum(g[list(perm)][:cut] * discount[:cut]) / ideal if ideal > 0 else 0.0)
        precision.append(np.mean(p_values))
        ndcg.append(np.mean(d_values))
        pos, neg = s[y == 1], s[y == 0]
        if pos.size and neg.size:
            auc.append(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))
    return np.mean(precision), np.mean(ndcg), np.mean(auc) if auc else float("nan")


def test_logged_item_metrics_perfect_ranking():
    out = logged_item_metrics(PERFECT, USER, ITEM, REWARD, k=2)
    # P@2: user 0 has one relevant of 3 (1/2), user 1 two of 4 (2/2).
    assert out["precision@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["ndcg@2"] == pytest.approx(1.0)
    assert out["auc"] == pytest.approx(1.0)
    # k beyond every list: P@k is each user's share relevant.
    out = logged_item_metrics(PERFECT, USER, ITEM, REWARD, k=10)
    assert out["precision@10"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert out["ndcg@10"] == pytest.approx(1.0)
    assert (out["users"], out["users_with_relevant"], out["auc_users"], out["auc_skipped"]) == (2, 2, 2, 0)


def test_logged_item_metrics_reversed_ranking():
    out = logged_item_metrics(-PERFECT, USER, ITEM, REWARD, k=2)
    assert out["auc"] == pytest.approx(0.0)
    assert out["precision@2"] == pytest.approx(0.0)
    # NDCG@2 of user 0: relevant item last of 3 (outside the cut) -> 0; user 1: relevant at 3, 4 -> 0.
    assert out["ndcg@2"] == pytest.approx(0.0)
    out = logged_item_metrics(-PERFECT, USER, ITEM, REWARD, k=4)
    d = 1 / np.log2(np.arange(2, 6))
    expected_ndcg = (d[2] / d[0] + (d[2] + d[3]) / (d[0] + d[1])) / 2
    assert out["ndcg@4"] == pytest.approx(expected_ndcg)
    assert out["precision@4"] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_logged_item_metrics_hand_computed_mixed_ranking():
    # User 0: item 1 (relevant) second; user 1: order 3 (rel), 0, 2 (rel), 1.
    scores = np.array([[0.9, 0.5, 0.1, 0.0], [0.7, 0.1, 0.3, 0.8]])
    out = logged_item_metrics(scores, USER, ITEM, REWARD, k=2)
    assert out["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert out["ndcg@2"] == pytest.approx((D2 / 1 + 1 / (1 + D2)) / 2)
    # AUC: user 0 relevant beats 1 of 2 -> 1/2; user 1: item 3 beats both, item 2 beats item 1 -> 3/4.
    assert out["auc"] == pytest.approx((0.5 + 0.75) / 2)
    assert out["auc_se"] == pytest.approx(np.std([0.5, 0.75], ddof=1) / math.sqrt(2))
    np.testing.assert_allclose(
        [out["precision@2"], out["ndcg@2"], out["auc"]], _brute_force(scores, USER, ITEM, REWARD, 2)
    )


def test_logged_item_metrics_ties_are_expected_over_random_tie_breaks():
    constant = np.zeros((2, 4))
    out = logged_item_metrics(constant, USER, ITEM, REWARD, k=2)
    assert out["auc"] == pytest.approx(0.5)
    # All tied: every item is in the top 2 with probability 2 / n_u.
    assert out["precision@2"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    np.testing.assert_allclose(
        [out["precision@2"], out["ndcg@2"]], _brute_force(constant, USER, ITEM, REWARD, 2)[:2]
    )
    # Partial ties, graded rewards, several cut-offs: equal to the average over tie-breaking orders.
    rng = np.random.default_rng(1)
    user = np.repeat(np.arange(4), [5, 3, 6, 1])
    item = np.concatenate([rng.permutation(6)[:m] for m in (5, 3, 6, 1)])
    reward = rng.integers(0, 3, size=user.size).astype(float)
    scores = rng.integers(0, 3, size=(4, 6)).astype(float)  # many ties
    for k in (1, 2, 4):
        for graded in (False, True):
            out = logged_item_metrics(scores, user, item, reward, k=k, graded=graded)
            expected = _brute_force(scores, user, item, reward, k, graded)
            np.testing.assert_allclose([out[f"precision@{k}"], out[f"ndcg@{k}"], out["auc"]], expected)


def test_logged_item_metrics_do_not_depend_on_row_order():
    rng = np.random.default_rng(2)
    order = rng.permutation(USER.size)
    scores = np.array([[0.9, 0.5, 0.5, 0.0], [0.3, 0.1, 0.3, 0.8]])
    a = logged_item_metrics(scores, USER, ITEM, REWARD, k=2)
    b = logged_item_metrics(scores, USER[order], ITEM[order], REWARD[order], k=2)
    assert a == pytest.approx(b, nan_ok=True)


def test_logged_item_metrics_skip_users_with_one_class():
    user, item, reward = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 0, 1, 1]), np.array([1, 0, 0, 0, 1.0])
    out = logged_item_metrics(np.array([[1.0, 0.0]] * 3), user, item, reward, k=1)
    assert (out["users"], out["users_with_relevant"], out["auc_users"], out["auc_skipped"]) == (3, 2, 1, 2)
    assert out["auc"] == pytest.approx(1.0)
    assert np.isnan(out["auc_se"])
    # User 1 has no relevant item (P@1 = NDCG@1 = 0); user 2's only item is relevant.
    assert out["precision@1"] == pytest.approx(2 / 3)
    assert out["ndcg@1"] == pytest.approx(2 / 3)
    none = logged_item_metrics(np.zeros((1, 2)), [0, 0], [0, 1], [0.0, 0.0], k=1)
    assert np.isnan(none["auc"]) and none["auc_skipped"] == 1


def test_logged_item_metrics_name_the_bad_argument():
    with pytest.raises(InputError, match=r"^scores:"):
        logged_item_metrics(PERFECT[0], USER, ITEM, REWARD, k=2)
    with pytest.raises(InputError, match=r"^user:"):
        logged_item_metrics(PERFECT, USER[:, None], ITEM, REWARD, k=2)
    with pytest.raises(InputError, match=r"^user:"):
        logged_item_metrics(PERFECT, USER + 1, ITEM, REWARD, k=2)
    with pytest.raises(InputError, match=r"^item:"):
        logged_item_metrics(PERFECT, USER, ITEM[:-1], REWARD, k=2)
    with pytest.raises(InputError, match=r"^item:"):
        logged_item_metrics(PERFECT, USER, ITEM + 1, REWARD, k=2)
    with pytest.raises(InputError, match=r"^reward:"):
        logged_item_metrics(PERFECT, USER, ITEM, REWARD[:-1], k=2)
    with pytest.raises(InputError, match=r"^reward:"):
        logged_item_metrics(PERFECT, USER, ITEM, -REWARD, k=2, graded=True)
    with pytest.raises(InputError, match=r"^scores:"):
        logged_item_metrics(np.full((2, 4), np.nan), USER, ITEM, REWARD, k=2)
    with pytest.raises(InputError, match=r"^k:"):
        logged_item_metrics(PERFECT, USER, ITEM, REWARD, k=0)
