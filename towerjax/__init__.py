"""towerjax: off-policy learning of two-tower recommendation policies in JAX."""

from towerjax.adapter import FrameEncoding, logged_data_from_frame
from towerjax.data import LoggedData
from towerjax.evaluation import Estimate, off_policy_estimates
from towerjax.large_softmax import (
    ItemProposal,
    chunked_log_prob,
    chunked_log_softmax,
    chunked_logsumexp,
    exact_value_sampled_grad,
    item_proposal,
    logged_column,
    popularity_log_q,
    sample_items,
    sampled_log_prob,
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
    transform_weights,
)
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
from towerjax.train import Batch, TrainConfig, TrainResult, make_train, make_update_step, train_seeds
from towerjax.two_stage import two_stage_ips_loss, two_stage_policy, two_stage_value

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Estimate",
    "FrameEncoding",
    "ItemProposal",
    "LoggedData",
    "RewardModel",
    "RewardModelConfig",
    "TrainConfig",
    "TrainResult",
    "TwoTower",
    "approx_top_k_items",
    "boltzmann_slate",
    "chunked_log_prob",
    "chunked_log_softmax",
    "chunked_logsumexp",
    "dr_loss",
    "exact_value_sampled_grad",
    "importance_weight",
    "ips_loss",
    "item_proposal",
    "log_policy",
    "logged_column",
    "logged_data_from_frame",
    "make_train",
    "make_update_step",
    "naive_loss",
    "off_policy_estimates",
    "policy_value",
    "popularity_log_q",
    "recall_at_k",
    "regression_loss",
    "sample_actions",
    "sample_items",
    "sample_slate",
    "sampled_log_prob",
    "sampled_log_prob_from_ids",
    "slate_inclusion",
    "slate_value",
    "top_k_items",
    "topk_ips_loss",
    "train_seeds",
    "transform_weights",
    "two_stage_ips_loss",
    "two_stage_policy",
    "two_stage_value",
    "uniform_log_q",
]
