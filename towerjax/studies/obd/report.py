"""The OBD study's Markdown table."""

from __future__ import annotations

import math

__all__ = ["format_obd"]


def format_obd(result: dict) -> str:
    """Markdown table of :func:`run_obd_study`'s result; click rates in percent."""

    def cell(entry: dict, signed: bool = False) -> str:
        fmt = "{:+.3f}" if signed else "{:.3f}"
        lo, hi = (fmt.format(100 * c) for c in entry["ci"])
        return f"{fmt.format(100 * entry['value'])} [{lo}, {hi}]"

    def verdict(*entries: dict) -> str:
        """Says yes when every normal interval excludes 0 and every permutation p < 0.05, else why not."""
        ci = [e["significant"] for e in entries]
        p = [e.get("p_permutation", float("nan")) for e in entries]
        p_text = "/".join(f"{v:.2f}" for v in p)
        perm = [v < 0.05 for v in p if not math.isnan(v)]
        if all(ci) and all(perm):
            return f"yes (p={p_text})" if perm else "yes"
        if not any(ci) and not any(perm):
            return f"no (p={p_text})" if perm else "no"
        if all(ci):
            return f"no: CI excludes 0, but permutation p={p_text}"
        return f"no: {'a CI excludes' if any(ci) else 'CI includes'} 0, permutation p={p_text}"

    lines = [
        "| policy | IPS (%) [95% CI] | SNIPS (%) [95% CI] | IPS − uniform (pp) [95% CI] "
        "| SNIPS − uniform (pp) [95% CI] | significant? (perm. p IPS/SNIPS) |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in result["learners"].items():
        diff = entry["difference"]
        lines.append(
            f"| {name} | {cell(entry['ips'])} | {cell(entry['snips'])} | {cell(diff['ips'], True)} "
            f"| {cell(diff['snips'], True)} | {verdict(diff['ips'], diff['snips'])} |"
        )
    uniform, bts = result["uniform"], result["bts"]
    lines.append(f"| uniform (random log's CTR) | {cell(uniform)} | — | 0 | 0 | — |")
    lines.append(
        f"| bts (its own log's CTR) | {cell(bts)} | — | {cell(bts['difference'], True)} (unpaired) "
        f"| — | {verdict(bts['difference'])} |"
    )
    rows, clicks = result["rows"], result["clicks"]
    lines.append("")
    lines.append(
        f"Campaign `{result['campaign']}`, {result['seeds']} seeds, positions `{result['position_handling']}`; "
        f"random log rows per slot {rows['random']} (clicks {clicks['random']}), "
        f"bts rows {rows['bts']} (clicks {clicks['bts']}). Values are the mean of the per-slot values; "
        "a learner's is that of its seed-averaged policy. Normal 95% intervals from the random rows' "
        "per-row terms (delta method for SNIPS); differences paired on the same random rows, "
        "bts unpaired. Significant = the interval excludes 0 and the permutation test (clicks shuffled "
        f"over each slot's rows, {result.get('permutations', 0)} draws) gives p < 0.05; "
        "no multiple-comparison correction."
    )
    return "\n".join(lines)
