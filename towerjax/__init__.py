"""towerjax: off-policy learning of two-tower recommendation policies in JAX."""

from towerjax.data import LoggedData
from towerjax.evaluation import Estimate, off_policy_estimates
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
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.towers import TwoTower
from towerjax.train import Batch, TrainConfig, TrainResult, make_train, make_update_step, train_seeds
from towerjax.two_stage import two_stage_ips_loss, two_stage_policy, two_stage_value

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Estimate",
    "LoggedData",
    "RewardModel",
    "RewardModelConfig",
    "TrainConfig",
    "TrainResult",
    "TwoTower",
    "dr_loss",
    "importance_weight",
    "ips_loss",
    "log_policy",
    "make_train",
    "make_update_step",
    "naive_loss",
    "off_policy_estimates",
    "policy_value",
    "regression_loss",
    "sample_actions",
    "sample_slate",
    "slate_inclusion",
    "slate_value",
    "topk_ips_loss",
    "train_seeds",
    "transform_weights",
    "two_stage_ips_loss",
    "two_stage_policy",
    "two_stage_value",
]
