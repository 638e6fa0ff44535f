"""The MovieLens study's report: the comparison with Ma et al.'s table and the Markdown tables."""

from __future__ import annotations

import math

import numpy as np

from towerjax.evaluation import mean_se
from towerjax.metrics import metric_names
from towerjax.studies.movielens.config import EVALUATIONS, PAPER_PRECISION_AT_5

__all__ = ["compare_with_paper", "format_movielens"]


def _order(values: dict[str, float]) -> str:
    names = sorted(values, key=lambda m: -values[m])
    return " > ".join(names)


def compare_with_paper(result: dict) -> dict:
    """Our Precision@5 ordering of the methods against Ma et al.'s ML-1M table, per evaluation,
    with each pair's paired difference (mean ± se over seeds)."""
    methods = result["methods"]
    if "precision@5" not in next(iter(methods.values()))["one-stage"]:
        return {}
    out = {}
    for evaluation in EVALUATIONS:
        ours = {m: methods[m][evaluation]["precision@5"]["mean"] for m in methods}
        paper = {m: PAPER_PRECISION_AT_5[evaluation][m] for m in methods}
        pairs = {}
        names = list(methods)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                diff = np.subtract(
                    methods[b][evaluation]["precision@5"]["values"],
                    methods[a][evaluation]["precision@5"]["values"],
                )
                mean, se = mean_se(diff)
                pairs[f"{b} - {a}"] = {"mean": mean, "se": se}
        out[evaluation] = {
            "ours": _order(ours),
            "paper": _order(paper),
            "same_order": _order(ours) == _order(paper),
            "paired_differences": pairs,
        }
    return out


def _cell(stats: dict) -> str:
    se = stats["se"]
    return (
        f"{100 * stats['mean']:.2f} ± {100 * se:.2f}" if not math.isnan(se) else f"{100 * stats['mean']:.2f}"
    )


def format_movielens(result: dict) -> str:
    """Markdown: the environment, one table per evaluation (percent, mean ± se over seeds),
    and the comparison with Ma et al.'s MovieLens-1M Precision@5."""
    config = result["config"]
    names = metric_names(tuple(config["ks"]))
    env = result["environment"]
    lines = [
        f"MovieLens-100K two-stage study (Ma et al. 2020 protocol): {result['seeds']} seeds (seed "
        f"{result['seed']}), {env['n_users']} users x {env['n_items']} items, "
        f"{config['events_per_user'] * env['n_users']} logged events per seed; candidates k = "
        f"{config['candidates']}, 2-IPS T = {config['num_samples']}, alpha = {config['alpha']}.",
        f"Simulator mean q {env['mean_q']:.3f} (best 5 per user {env['oracle_top5_q']:.3f}); logging "
        f"value {env['logging_value']:.3f}, ~{env['logging_effective_items']:.0f} effective items, max "
        f"propensity {env['logging_max_propensity']:.3f}. Values in percent, mean ± standard error.",
    ]
    header = "| method | " + " | ".join(names) + " |"
    rule = "|---" * (len(names) + 1) + "|"
    for evaluation in EVALUATIONS:
        title = (
            "generator's top-k"
            if evaluation == "one-stage"
            else (f"ranker re-ranks the generator's top {config['candidates']}")
        )
        lines += ["", f"### {evaluation} ({title})", "", header, rule]
        for method, stats in result["methods"].items():
            lines.append(f"| {method} | " + " | ".join(_cell(stats[evaluation][m]) for m in names) + " |")
        for ref, stats in result["references"].items():
            lines.append(f"| *{ref}* | " + " | ".join(_cell(stats[evaluation][m]) for m in names) + " |")
    comparison = result.get("comparison") or {}
    if comparison:
        lines += [
            "",
            "### Precision@5 against Ma et al. (MovieLens-1M)",
            "",
            "| evaluation | "
            + " | ".join(f"{m} (ours / paper)" for m in result["methods"])
            + " | our order | paper's order |",
            "|---" * (len(result["methods"]) + 3) + "|",
        ]
        for evaluation, comp in comparison.items():
            cells = [
                f"{_cell(result['methods'][m][evaluation]['precision@5'])} / {PAPER_PRECISION_AT_5[evaluation][m]}"
                for m in result["methods"]
            ]
            lines.append(f"| {evaluation} | " + " | ".join(cells) + f" | {comp['ours']} | {comp['paper']} |")
        lines += ["", "Paired differences of Precision@5 (percentage points, mean ± se over seeds):"]
        for evaluation, comp in comparison.items():
            diffs = ", ".join(f"{pair} {_cell(stats)}" for pair, stats in comp["paired_differences"].items())
            lines.append(f"- {evaluation}: {diffs}")
    seconds = result.get("seconds", {})
    if seconds:
        timing = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        lines += ["", f"Time: {timing}."]
    return "\n".join(lines)
