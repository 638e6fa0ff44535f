"""Ranking metrics: hand-computed values, means over users, cut-off checks, jit and vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.metrics import ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k

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
