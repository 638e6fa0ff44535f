"""A seed sweep on the synthetic problem as ``towerjax train`` writes and prints it: the JSON
record of :func:`~towerjax.training.train_seeds`'s result and its summary lines."""

from __future__ import annotations

from towerjax.evaluation import mean_se
from towerjax.synthetic import SyntheticProblem
from towerjax.training.config import TrainConfig
from towerjax.training.loop import TrainResult

__all__ = ["seeds_record", "seeds_summary"]


def seeds_record(
    config: TrainConfig,
    problem: SyntheticProblem,
    result: TrainResult,
    timing: dict,
    *,
    seeds: int,
    seed: int,
) -> dict:
    """JSON-ready: the settings (``config``, ``problem``), ``seeds`` and root ``seed``, the
    timings of :func:`~towerjax.training.train_seeds`, each seed's values (final test and
    training values, initial, logging-policy, best-policy and selected values, the selected
    epoch and the final top-item share) and curves (test value, loss, validation estimates)
    from the stacked ``[S]`` ``result``."""
    return {
        "config": config.to_dict(),
        "problem": problem.to_dict(),
        "seeds": seeds,
        "seed": seed,
        **timing,
        "initial_value": result.initial_value.tolist(),
        "test_value": result.test_value[:, -1].tolist(),
        "train_value": result.train_value[:, -1].tolist(),
        "behavior_value": result.behavior_value.tolist(),
        "optimal_value": result.optimal_value.tolist(),
        "test_curve": result.test_value.tolist(),
        "loss_curve": result.loss.tolist(),
        "selected_value": result.selected_value.tolist(),
        "selected_epoch": result.selected_epoch.tolist(),
        "top_share": result.top_share[:, -1].tolist(),
        "validation_curves": {k: v.tolist() for k, v in result.validation.items()},
    }


def seeds_summary(record: dict) -> str:
    """Lines of a :func:`seeds_record`: the seed mean ± standard error of the initial,
    logging-policy, final test, selected (when the config selects an epoch) and best-policy
    values, then the compile and training times."""
    names = ["initial_value", "behavior_value", "test_value", "optimal_value"]
    if record["config"]["select"] is not None:
        names.insert(3, "selected_value")
    lines = []
    for name in names:
        mean, se = mean_se(record[name])
        spread = f" ± {se:.4f}" if se == se else " (one seed: no standard error)"
        lines.append(f"  {name:>15}: {mean:.4f}{spread}")
    rate = record["seed_steps"] / record["seconds_train"]
    lines.append(
        f"  compile {record['seconds_compile']:.1f}s, train {record['seconds_train']:.1f}s "
        + (f"({rate:.0f}" if rate >= 10 else f"({rate:.2g}")
        + f" seed-steps/s on {record['devices']} device(s))"
    )
    return "\n".join(lines)
