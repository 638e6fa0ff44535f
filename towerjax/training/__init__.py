"""Training two-tower policies from logged feedback (SPEC 6).

Modules: :mod:`~towerjax.training.config` (:class:`TrainConfig`, training settings only),
:mod:`~towerjax.training.step` (a minibatch, the objective's loss, the optimiser and one
update), :mod:`~towerjax.training.sparse` (lazy updates of embedding tables, SPEC 6),
:mod:`~towerjax.training.memory` (a run's memory, checked before it starts), :mod:`~towerjax.training.loop` (``make_train(config, problem)`` returning
``train(key)``, and the functions it composes), :mod:`~towerjax.training.seeds` (many seeds as
one compiled call), :mod:`~towerjax.training.search` (candidates as a ``vmap`` axis, chosen and
reported honestly, SPEC 9) and :mod:`~towerjax.training.parallel` (devices, meshes and several
processes). The built-in synthetic problem a run draws without logs of its own is
:class:`towerjax.synthetic.SyntheticProblem`.
"""

from towerjax.training.config import (
    EMBEDDING_OPTIMIZERS,
    LEGACY_SYNTHETIC_FIELDS,
    OPTIMIZERS,
    PROPOSALS,
    SELECTIONS,
    VALIDATION_DR_PAIRS,
    TrainConfig,
)
from towerjax.training.loop import TrainResult, make_train, validation_rows
from towerjax.training.memory import check_run_memory, run_memory
from towerjax.training.parallel import batch_mesh, expose_cpu_cores, seed_sharding, shard_batch
from towerjax.training.search import Candidate, Search, SearchResult, split_three, train_search
from towerjax.training.seeds import (
    EpochLines,
    NonFiniteError,
    SeedRunner,
    TrainingInterrupted,
    check_finite,
    compile_seeds,
    train_seeds,
)
from towerjax.training.step import (
    Batch,
    is_embedding,
    make_optimizer,
    make_update_step,
    objective_loss,
    sampled_objective_loss,
)

__all__ = [
    "EMBEDDING_OPTIMIZERS",
    "LEGACY_SYNTHETIC_FIELDS",
    "OPTIMIZERS",
    "PROPOSALS",
    "SELECTIONS",
    "VALIDATION_DR_PAIRS",
    "Batch",
    "Candidate",
    "EpochLines",
    "NonFiniteError",
    "Search",
    "SearchResult",
    "SeedRunner",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "batch_mesh",
    "check_finite",
    "check_run_memory",
    "compile_seeds",
    "expose_cpu_cores",
    "is_embedding",
    "make_optimizer",
    "make_train",
    "make_update_step",
    "objective_loss",
    "run_memory",
    "sampled_objective_loss",
    "seed_sharding",
    "shard_batch",
    "split_three",
    "train_search",
    "train_seeds",
    "validation_rows",
]
