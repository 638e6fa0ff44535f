"""What a search says of its chosen policy (SPEC 9): the verdict lines and the report table as text.

:func:`~towerjax.training.search.train_search` builds the report table's rows; this module turns
the chosen row into a verdict and the table into the lines ``towerjax train --logs`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from towerjax.training.search import Search

__all__ = ["search_summary", "verdict_lines"]


def verdict_lines(row: dict, search: Search, epoch: int) -> tuple[str, list[str]]:
    """``(verdict, lines)`` for the chosen policy's report row (SPEC 9): ``"better"``, ``"not better"``
    than the logging policy by two paired standard errors, or ``"initial"``; a warning below
    ``search.min_report_ess`` effective report rows."""
    d = row["difference"]
    estimate = row[search.criterion]
    lines = [
        f"chosen: {row['name'].removeprefix('chosen: ')}; on the report rows its {search.criterion} value is "
        f"{estimate['value']:.4g} (95% interval {estimate['wald_low']:.4g} to {estimate['wald_high']:.4g}), "
        f"{d['value']:+.4g} against the logging policy (paired, s.e. {d['stderr']:.2g})"
    ]
    if epoch == 0:
        verdict = "initial"
        lines.append(
            "no trained candidate beat the initial (untrained) policy on the selection rows: the kept "
            "policy is the initial one; these logs do not support a better policy with this search"
        )
    elif d["value"] - 2 * d["stderr"] > 0:
        verdict = "better"
        lines.append("better than the logging policy by more than two standard errors on the report rows")
    else:
        verdict = "not better"
        lines.append(
            "not better than the logging policy by two standard errors on the report rows: "
            "the logs do not show that the chosen policy beats what you run now"
        )
    if row["ess"] < search.min_report_ess:
        lines.append(
            f"warning: the report rows' effective sample size for the chosen policy is {row['ess']:.0f} "
            f"(below {search.min_report_ess:g}): a few rows carry its estimate, so the interval is not reliable"
        )
    return verdict, lines


def search_summary(table: Sequence[dict], lines: Sequence[str], criterion: str) -> str:
    """The report table (one line per row: selection bound, estimates on the report rows with
    intervals, difference to logging, ESS) and the verdict lines."""
    out = [
        f"{'policy':<44} {'select':>8} {criterion + ' (report rows, 95%)':>28} {'vs logging':>18} {'ESS':>7}"
    ]
    for row in table:
        e, d = row[criterion], row["difference"]
        interval = f"{e['value']:.4f} [{e['wald_low']:.4f}, {e['wald_high']:.4f}]"
        lower = "" if math.isnan(row["select_lower"]) else f"{row['select_lower']:.4f}"
        out.append(
            f"{row['name'][:44]:<44} {lower:>8} {interval:>28} {d['value']:+.4f} ± {1.96 * d['stderr']:.4f} "
            f"{row['ess']:>7.0f}"
        )
    return "\n".join(out + list(lines))
