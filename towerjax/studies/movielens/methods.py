"""The MovieLens study's generators: each method's objective and training run, and its evaluation."""

from __future__ import annotations

import jax
import numpy as np

from towerjax.checks import InputError
from towerjax.objectives import IPS, Naive, Objective, TwoStage
from towerjax.studies.movielens.config import EMBEDDING_MODE, METHODS, MovieLensStudyConfig
from towerjax.studies.movielens.environment import SeedInputs
from towerjax.studies.movielens.ranking import generator_evaluator
from towerjax.training import TrainConfig, train_seeds

__all__ = ["method_objective", "train_config", "train_method"]


def method_objective(method: str, config: MovieLensStudyConfig) -> Objective:
    """The objective of a method: CE is :class:`~towerjax.objectives.Naive`, 1-IPS
    :class:`~towerjax.objectives.IPS` and 2-IPS :class:`~towerjax.objectives.TwoStage`, the
    IPS weights clipped and self-normalised as ``config`` says."""
    if method == "CE":
        return Naive()
    if method == "1-IPS":
        return IPS(clip=config.clip, self_normalize=config.self_normalize, entropy=0.0)
    if method == "2-IPS":
        return TwoStage(
            candidates=config.candidates,
            num_samples=config.num_samples,
            alpha=config.alpha,
            clip=config.clip,
            self_normalize=config.self_normalize,
        )
    raise InputError("method", f"expected one of {METHODS}, got {method!r}")


def train_config(method: str, config: MovieLensStudyConfig, n_events: int) -> TrainConfig:
    """The :class:`~towerjax.training.TrainConfig` of ``method`` on ``n_events`` logged events (the batch at most ``n_events``)."""
    return TrainConfig(
        objective=method_objective(method, config),
        hidden_sizes=config.hidden_sizes,
        embedding_size=config.embedding_size,
        activation=config.activation,
        temperature=1.0,
        optimizer="adamw",
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        embedding_weight_decay=None,  # the id tables decay at weight_decay too
        embedding_mode=EMBEDDING_MODE,
        batch_size=min(config.batch_size, n_events),
        epochs=config.epochs,
        evaluate_train=False,
        validation_fraction=0.0,
        select=None,
    )


def train_method(
    method: str, inputs: SeedInputs, config: MovieLensStudyConfig, *, devices: int | None = None
) -> dict:
    """Trains one method's generator on every seed's logs and evaluates it: one study cell.

    One :func:`towerjax.training.train_seeds` call over the ``S`` seeds (sharded over local
    devices, at most ``devices``), then the one- and two-stage evaluation of each seed's
    generator against that seed's labels. 2-IPS reads the ranker's scores of each event's
    user as ``q_hat [S, n, I]``.

    Memory: the seeds' logs are materialised, per seed ``4 n (4 + I)`` bytes (three ids and
    the age per event, 0.3 MB; ``q_hat`` 127 MB at the default sizes; the items' features
    0.15 MB), and ``train_seeds`` holds a second, re-laid-out copy. The whole default study
    peaked at 4.6 GB resident (the one-hot towers of earlier versions: 6.3 GB).

    Returns:
      A JSON-ready dict: ``metrics[evaluation][metric]`` (``[S]`` floats, one per seed),
      ``loss`` (``[S][E]``, the mean training loss of each epoch), ``seconds_compile`` and
      ``seconds_train``.
    """
    n_events = inputs.logs.n_rounds
    run_config = train_config(method, config, n_events)
    q_hat = None
    if run_config.objective.needs_q_hat:
        q_hat = inputs.env["ranker"][inputs.user]
    result, timing = train_seeds(
        run_config,
        seeds=inputs.seeds,
        seed=inputs.train_seed,
        devices=devices,
        data=inputs.logs,
        q_hat=q_hat,
        per_seed_data=True,
    )
    del q_hat  # free it before the evaluation
    metrics = generator_evaluator(config)(result.params, inputs.labels, inputs.env)
    return {
        "metrics": jax.tree.map(lambda a: np.asarray(a, np.float64).tolist(), jax.device_get(metrics)),
        "loss": np.asarray(result.loss, np.float64).tolist(),
        "seconds_compile": timing["seconds_compile"],
        "seconds_train": timing["seconds_train"],
    }
