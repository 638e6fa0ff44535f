"""Figures of ``benchmarks/scale.py``'s results: step time and memory vs items, throughput vs seeds.

python benchmarks/plot_scale.py benchmarks/results/scale.json --out benchmarks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the JSON list written by scale.py --json")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"))
    args = parser.parse_args()
    records = json.loads(args.results.read_text())
    items = [r for r in records if r.get("kind") == "items"]
    seeds = sorted((r for r in records if r.get("kind") == "seeds"), key=lambda r: r["seeds"])

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
    for variant in dict.fromkeys(r["variant"] for r in items):
        rows = sorted((r for r in items if r["variant"] == variant), key=lambda r: r["num_items"])
        timed = [r for r in rows if r.get("seconds_per_step_median")]
        ax_time.plot(
            [r["num_items"] for r in timed],
            [r["seconds_per_step_median"] for r in timed],
            "o-",
            label=variant,
        )
        ax_mem.plot(
            [r["num_items"] for r in rows], [r["xla_peak_bytes"] / 1e9 for r in rows], "o-", label=variant
        )
    ax_mem.axhline(4.0, color="gray", ls="--", label="4 GB target")
    for ax, label in ((ax_time, "seconds per step (median)"), (ax_mem, "XLA peak memory (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("items A")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax_time.set_title("training step, batch 256 (full softmax vs M = 1024 samples)", fontsize=9)
    ax_mem.set_title("peak memory (full softmax at 1e6 compiled, not run)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "scale_items.png", dpi=80)

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([r["seeds"] for r in seeds], [r["seed_steps_per_second"] for r in seeds], "o-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vmapped seeds S")
    ax.set_ylabel("seed-steps per second (all seeds)")
    ax.set_ylim(bottom=0)
    ax.set_title("throughput vs seeds (2 CPU devices)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "scale_seeds.png", dpi=80)
    print(f"wrote {args.out / 'scale_items.png'} and {args.out / 'scale_seeds.png'}")


if __name__ == "__main__":
    main()
