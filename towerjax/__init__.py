"""towerjax: off-policy learning of two-tower recommendation policies in JAX.

The names below are the public API, each documented in the README; everything else is
reachable through its module (``towerjax.losses``, ``towerjax.large_softmax``, ...).
"""

from towerjax import synthetic
from towerjax.adapter import FrameEncoding, FrameValidationError, logged_data_from_frame
from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.evaluation import Estimate, mean_se, off_policy_estimates
from towerjax.large_softmax import (
    chunked_log_prob,
    chunked_log_softmax,
    exact_value_sampled_grad,
    item_proposal,
    logged_column,
    popularity_log_q,
    sample_items,
    sampled_log_prob_from_ids,
    uniform_log_q,
)
from towerjax.losses import (
    dr_loss,
    importance_weight,
    ips_loss,
    naive_loss,
    regression_loss,
    topk_ips_loss,
)
from towerjax.objectives import DR, IPS, OBJECTIVES, SNIPS, Naive, Objective, Regression, TopK, TwoStage
from towerjax.policy import (
    log_policy,
    policy_value,
    sample_actions,
    sample_slate,
    slate_inclusion,
    slate_value,
)
from towerjax.retrieval import approx_top_k_items, boltzmann_slate, recall_at_k, top_k_items
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.towers import TwoTower
from towerjax.train import (
    Batch,
    SeedRunner,
    TrainConfig,
    TrainResult,
    compile_seeds,
    expose_cpu_cores,
    make_train,
    make_update_step,
    shard_batch,
    train_seeds,
)
from towerjax.two_stage import two_stage_ips_loss, two_stage_policy, two_stage_value

__version__ = "0.1.0"

__all__ = [
    "DR",
    "IPS",
    "OBJECTIVES",
    "SNIPS",
    "Batch",
    "Estimate",
    "FrameEncoding",
    "FrameValidationError",
    "InputError",
    "LoggedData",
    "Naive",
    "Objective",
    "Regression",
    "RewardModel",
    "RewardModelConfig",
    "SeedRunner",
    "TopK",
    "TrainConfig",
    "TrainResult",
    "TwoStage",
    "TwoTower",
    "approx_top_k_items",
    "boltzmann_slate",
    "chunked_log_prob",
    "chunked_log_softmax",
    "compile_seeds",
    "dr_loss",
    "exact_value_sampled_grad",
    "expose_cpu_cores",
    "importance_weight",
    "ips_loss",
    "item_proposal",
    "log_policy",
    "logged_column",
    "logged_data_from_frame",
    "make_train",
    "make_update_step",
    "mean_se",
    "naive_loss",
    "off_policy_estimates",
    "policy_value",
    "popularity_log_q",
    "recall_at_k",
    "regression_loss",
    "sample_actions",
    "sample_items",
    "sample_slate",
    "sampled_log_prob_from_ids",
    "shard_batch",
    "slate_inclusion",
    "slate_value",
    "synthetic",
    "top_k_items",
    "topk_ips_loss",
    "train_seeds",
    "two_stage_ips_loss",
    "two_stage_policy",
    "two_stage_value",
    "uniform_log_q",
]
