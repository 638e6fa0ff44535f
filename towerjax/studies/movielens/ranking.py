"""Ranking evaluation of the MovieLens study: one- and two-stage top-k metrics of score matrices."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.metrics import ranking_metrics
from towerjax.studies.movielens.config import MovieLensStudyConfig
from towerjax.studies.movielens.environment import SeedInputs

__all__ = ["evaluate_references", "generator_evaluator", "reference_evaluator"]


def _rankings(scores: jax.Array, ranker: jax.Array, candidates: int, k_max: int) -> dict[str, jax.Array]:
    """One-stage: the top ``k_max`` by ``scores``; two-stage: its top ``candidates`` re-ranked by ``ranker``."""
    _, top = jax.lax.top_k(scores, candidates)
    _, order = jax.lax.top_k(jnp.take_along_axis(ranker, top, axis=1), k_max)
    return {"one-stage": top[:, :k_max], "two-stage": jnp.take_along_axis(top, order, axis=1)}


def _evaluate(scores, ranker, labels, config: MovieLensStudyConfig) -> dict[str, dict[str, jax.Array]]:
    """``{evaluation: {metric: scalar}}`` of one score matrix ``[U, I]`` against ``labels [U, I]``."""
    ranked = _rankings(scores, ranker, config.candidates, max(config.ks))
    return {name: ranking_metrics(items, labels, config.ks) for name, items in ranked.items()}


@functools.cache
def generator_evaluator(config: MovieLensStudyConfig) -> Callable:
    """``(params [S], labels [S, U, I], env) -> {evaluation: {metric: [S]}}``, jitted once per config."""
    model = config.model

    def evaluate(params, labels, env):
        scores = model.scores(params, env["user_context"], env["item_context"])
        return _evaluate(scores, env["ranker"], labels, config)

    return jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)))


@functools.cache
def reference_evaluator(config: MovieLensStudyConfig) -> Callable:
    """``(labels [S, U, I], env) -> {reference: {evaluation: {metric: [S]}}}`` for the fixed score matrices."""

    def evaluate(labels, env):
        fields = {"logging": "logging_log_p", "ranker": "ranker", "oracle": "q"}
        return {name: _evaluate(env[field], env["ranker"], labels, config) for name, field in fields.items()}

    return jax.jit(jax.vmap(evaluate, in_axes=(0, None)))


def evaluate_references(inputs: SeedInputs, config: MovieLensStudyConfig) -> dict:
    """``{reference: {evaluation: {metric: [S] floats}}}`` for the logging policy's logits,
    the ranker's scores and the simulator's ``q`` (the oracle), against each seed's labels."""
    metrics = reference_evaluator(config)(inputs.labels, inputs.env)
    return jax.tree.map(lambda a: np.asarray(a, np.float64).tolist(), jax.device_get(metrics))
