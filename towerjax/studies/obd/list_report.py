"""The OBD three-position study's Markdown table (:func:`towerjax.studies.obd.lists.run_obd_list_study`)."""

from __future__ import annotations

__all__ = ["format_obd_lists"]


def _cell(entry: dict, signed: bool = False, key: str = "ci") -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    lo, hi = (fmt.format(100 * c) for c in entry[key])
    return f"{fmt.format(100 * entry['value'])} [{lo}, {hi}]"


def _verdict(iips: dict, sniips: dict) -> str:
    """Yes when both differences are significant (interval excludes 0 and permutation p < 0.05), else why not."""
    p = f"p={iips['p_permutation']:.2f}/{sniips['p_permutation']:.2f}"
    if iips["significant"] and sniips["significant"]:
        return f"yes ({p})"
    if iips["significant"] or sniips["significant"]:
        return f"IIPS or SNIIPS only ({p})"
    excludes = any(d["ci"][0] > 0 or d["ci"][1] < 0 for d in (iips, sniips))
    small_p = any(d["p_permutation"] < 0.05 for d in (iips, sniips))
    if excludes:
        return f"no: a CI excludes 0, {p}"
    return f"no: {p} but CIs include 0" if small_p else f"no ({p})"


def format_obd_lists(result: dict) -> str:
    """Markdown: per campaign, each policy's list value on each logger's held-out rows beside the logger's."""
    lines = [
        "| campaign | policy (trained on) | valued on | IIPS list value (%) [95% CI] | bootstrap CI "
        "| SNIIPS (%) [95% CI] | IIPS − logger (pp) [95% CI] | significant? (perm. p IIPS/SNIIPS) | ESS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    significant, compared = 0, 0
    for campaign, summary in result["campaigns"].items():
        for logger, entry in summary["loggers"].items():
            lo, hi = (f"{100 * c:.3f}" for c in entry["bootstrap_ci"])
            lines.append(
                f"| {campaign} | {logger} logger (on-policy) | {logger} | {_cell(entry)} | [{lo}, {hi}] | — | 0 | — | — |"
            )
        for row in result["policies"]:
            if row["campaign"] != campaign:
                continue
            for valued_on, values in row["values"].items():
                iips, sniips = values["iips"], values["sniips"]
                compared += 1
                significant += iips["difference"]["significant"] or sniips["difference"]["significant"]
                lo, hi = (f"{100 * c:.3f}" for c in iips["bootstrap_ci"])
                lines.append(
                    f"| {campaign} | {row['learner']} ({row['trained_on']}) | {valued_on} | {_cell(iips)} "
                    f"| [{lo}, {hi}] | {_cell(sniips)} | {_cell(iips['difference'], True)} "
                    f"| {_verdict(iips['difference'], sniips['difference'])} | {iips['diagnostics']['ess']:.0f} |"
                )
    held = "; ".join(
        f"{c}: held-out rows {s['heldout_rows']}, clicks {s['heldout_clicks']}"
        for c, s in result["campaigns"].items()
    )
    verdict = (
        f"**No difference to the logger is significant** ({compared} comparisons)."
        if significant == 0
        else f"**{significant} of {compared} comparisons are significant** (no multiple-comparison correction)."
    )
    lines += [
        "",
        f"{verdict} List value = the sum over the 3 slots of the slot's click rate (IIPS/SNIIPS on position "
        f"rows, exact Plackett-Luce position marginals); a policy's value is that of its {result['seeds']}-seed "
        f"mixture. Each logger's rows split at random, {result['heldout']:.0%} held out; {held}. Normal 95% "
        f"intervals by the delta method; bootstrap percentile intervals ({result['n_bootstrap']} row resamples). "
        "Differences paired on the same held-out rows; significant = the interval excludes 0 and the "
        f"permutation test ({result['permutations']} draws, clicks shuffled within each slot) gives p < 0.05. "
        "ESS: the effective sample size of the mixture's weights, `(sum w)^2 / sum w^2`, out of the held-out rows. "
        "SIPS, RIPS and cascade DR need whole lists, which these logs do not hold: not computed.",
    ]
    return "\n".join(lines)
