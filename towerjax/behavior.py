"""Behaviour-policy estimation for logs without propensities (Chen et al. 2019, §4.2).

A second softmax head over the same items, ``beta_hat(a|x) = softmax(sg(f(x)) V^T + c)``,
with its own item embeddings ``V [A, D]`` and biases ``c [A]``. It reads the context
tower's embedding through ``stop_gradient``, so fitting it by cross-entropy on the logged
``(x, a)`` pairs never changes the main towers; its probabilities of the logged actions
stand in for ``p_i`` in any loss (held out of every gradient).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError
from towerjax.rows import masked_mean, take_logged

__all__ = ["behavior_log_probs", "behavior_loss", "init_behavior_head", "logged_propensity"]


def init_behavior_head(key: jax.Array, n_actions: int, embedding_size: int) -> dict:
    """Parameters ``{"item": [A, D], "bias": [A]}`` of the behaviour head.

    They start at zero, so ``beta_hat`` starts uniform: the head is a linear softmax
    (a convex fit given the embedding) and random starting propensities would only bias
    the first importance weights. ``key`` is accepted for a uniform init signature.
    """
    del key
    return {"item": jnp.zeros((n_actions, embedding_size)), "bias": jnp.zeros((n_actions,))}


def behavior_log_probs(head: dict, context_embedding: ArrayLike) -> jax.Array:
    """``[B, A]`` ``log beta_hat(a|x)`` from ``[B, D]`` context embeddings (gradient stopped)."""
    embedding = jax.lax.stop_gradient(jnp.asarray(context_embedding))
    return jax.nn.log_softmax(embedding @ head["item"].T + head["bias"], axis=-1)


def behavior_loss(
    head: dict, context_embedding: ArrayLike, action: ArrayLike, *, mask: ArrayLike | None = None
) -> jax.Array:
    """Cross-entropy ``-mean_i log beta_hat(a_i|x_i)`` of the logged actions."""
    log_beta = behavior_log_probs(head, context_embedding)
    action = jnp.asarray(action)
    if action.shape != log_beta.shape[:1]:
        raise InputError(
            "action", f"expected shape {log_beta.shape[:1]} to match the embeddings, got {action.shape}"
        )
    return masked_mean(-take_logged(log_beta, action), mask)


def logged_propensity(head: dict, context_embedding: ArrayLike, action: ArrayLike) -> jax.Array:
    """``[B]`` ``sg(beta_hat(a_i|x_i))``: an estimated propensity for any loss's ``pscore``."""
    log_beta = behavior_log_probs(head, context_embedding)
    return jax.lax.stop_gradient(jnp.exp(take_logged(log_beta, jnp.asarray(action))))
