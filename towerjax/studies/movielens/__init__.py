"""The MovieLens-100K two-stage study (Ma et al., WWW 2020 protocol; SPEC 4 and 8): ``towerjax study movielens``.

CE (no off-policy correction), 1-IPS and 2-IPS two-tower candidate generators are trained
on logs simulated from a logistic matrix-factorisation fit of MovieLens-100K and scored
by Precision/Recall/NDCG@k in a one-stage (the generator's own top-k) and a two-stage
evaluation (a fixed ranker re-ranks the generator's top candidates), mean ± standard
error over seeds. The environment, every choice and the reference run are described in
``docs/studies/movielens.md``; results are in ``benchmarks/RESULTS.md``.

Modules: :mod:`~towerjax.studies.movielens.config` (settings), :mod:`.environment`
(simulator, logging policy, ranker, the seeds' logs and labels), :mod:`.ranking` (one- and
two-stage metrics), :mod:`.methods` (each method's objective and training), :mod:`.report`
(tables, comparison with the paper) and :mod:`.study` (the run and its command).
"""

from towerjax.studies.movielens.config import (
    EMBEDDING_MODE,
    EVALUATIONS,
    METHODS,
    MINIATURE,
    PAPER_PRECISION_AT_5,
    REFERENCES,
    MovieLensStudyConfig,
)
from towerjax.studies.movielens.environment import (
    Environment,
    SeedInputs,
    build_environment,
    fit_simulator,
    prepare_seeds,
    tower_inputs,
)
from towerjax.studies.movielens.methods import method_objective, train_config, train_method
from towerjax.studies.movielens.ranking import evaluate_references
from towerjax.studies.movielens.report import compare_with_paper, format_movielens
from towerjax.studies.movielens.study import add_parser, run_movielens_study

__all__ = [
    "EMBEDDING_MODE",
    "EVALUATIONS",
    "METHODS",
    "MINIATURE",
    "PAPER_PRECISION_AT_5",
    "REFERENCES",
    "Environment",
    "MovieLensStudyConfig",
    "SeedInputs",
    "add_parser",
    "build_environment",
    "compare_with_paper",
    "evaluate_references",
    "fit_simulator",
    "format_movielens",
    "method_objective",
    "prepare_seeds",
    "run_movielens_study",
    "tower_inputs",
    "train_config",
    "train_method",
]
