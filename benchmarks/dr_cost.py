"""DR at the cost of IPS (issue 24 item 2): `towerjax train --logs` on a rating-style log.

``--write DIR``
    Writes ``DIR/logs.parquet``, a MovieLens-style log (numpy, seeded, vectorised): one row
    per event with ``user_id`` (int), two per-user dense columns ``age`` and ``activity``
    (so a context is its user), ``item_id``, ``reward`` in {0, 1} and ``pscore``. Planted
    structure: user and item factors ``u [U, 4]``, ``v [A, 4]``, item bias ``b``; the click
    probability is ``sigmoid(u . v + b - 3)``. The logging policy is a softmax of a noisy
    copy of the same scores at temperature 0.5 mixed with 20% uniform, and ``pscore`` is its
    exact probability of the logged item. The full size is 300,000 events, 15,000 users,
    1,000 items; ``--quick`` 30,000 events, 1,500 users, 1,000 items.

``--run DIR --objective X``
    Runs ``towerjax train --logs DIR/logs.parquet --out DIR/model-X --overwrite --categorical
    user_id --search none --objective X`` (all other settings the defaults) as a child and
    prints one JSON line: wall seconds, peak RSS (``os.wait4``'s ``ru_maxrss`` of the child,
    and ``VmHWM`` sampled every 50 ms), CPU seconds, the report's timings and estimates.
    ``--objective`` may be given several times (``--objective ips --objective dr``); with
    ``--rounds R`` the objectives run in ``R`` interleaved rounds and a last ``"kind":
    "summary"`` line gives each one's medians and the DR / IPS ratios.

Commands (the issue's check; progress on stderr, JSON lines on stdout)::

    python benchmarks/dr_cost.py --write /tmp/dr-cost
    python benchmarks/dr_cost.py --run /tmp/dr-cost --objective ips --objective dr
    python benchmarks/dr_cost.py --write /tmp/dr-cost-quick --quick
    python benchmarks/dr_cost.py --run /tmp/dr-cost-quick --objective ips --objective dr --rounds 3

Compare with other code by ``PYTHONPATH=/other/tree`` (the child inherits the environment).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
from harness import GB, RssSampler, emit, environment, log, median, sig, write_records

FULL = {"events": 300_000, "users": 15_000, "items": 1_000}
QUICK = {"events": 30_000, "users": 1_500, "items": 1_000}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR", help="write DIR/logs.parquet")
    mode.add_argument("--run", metavar="DIR", help="time `towerjax train --logs DIR/logs.parquet`")
    parser.add_argument("--quick", action="store_true", help="--write: the small log (30,000 events)")
    parser.add_argument("--seed", type=int, default=0, help="--write: random seed")
    parser.add_argument(
        "--objective", action="append", default=None, help="--run: objective (repeat for several) [ips]"
    )
    parser.add_argument("--rounds", type=int, default=1, help="--run: interleaved rounds [1]")
    parser.add_argument("--extra", default="", help="--run: extra flags for `towerjax train`")
    parser.add_argument("--json", default=None, help="also write all records here as one JSON list")
    parser.add_argument("--kill-above-gb", type=float, default=8.0, help="--run: kill a child above this RSS")
    parser.add_argument("--time-limit-s", type=float, default=3600.0, help="--run: kill a child after this")
    return parser.parse_args(argv)


def write_logs(directory: str, events: int, users: int, items: int, seed: int) -> dict:
    """Writes the log; returns its shape and the logging policy's true value."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    u = rng.normal(size=(users, 4)).astype(np.float32)
    v = rng.normal(size=(items, 4)).astype(np.float32)
    bias = rng.normal(scale=0.5, size=items).astype(np.float32)
    age = rng.integers(18, 70, size=users)
    activity = rng.gamma(2.0, 1.0, size=users).astype(np.float32)
    # Each user's share of the events: skewed as in rating logs (some users rate much more).
    user = rng.choice(users, size=events, p=activity / activity.sum())
    user[:users] = np.arange(users)  # every user id occurs
    logits = u @ v.T + bias - 3.0  # [U, A] true click logits
    noisy = logits + rng.normal(scale=1.0, size=logits.shape).astype(np.float32)
    z = noisy / 0.5
    pi_b = np.exp(z - z.max(axis=1, keepdims=True))
    pi_b = 0.8 * pi_b / pi_b.sum(axis=1, keepdims=True) + 0.2 / items  # [U, A]
    cdf = np.cumsum(pi_b, axis=1)
    item = (cdf[user] < rng.random(events)[:, None] * cdf[user, -1:]).sum(axis=1)
    item = np.minimum(item, items - 1)
    click = 1.0 / (1.0 + np.exp(-logits[user, item]))
    reward = (rng.random(events) < click).astype(np.int64)
    frame = pd.DataFrame(
        {
            "user_id": user.astype(np.int64),
            "age": age[user].astype(np.float64),
            "activity": activity[user].astype(np.float64),
            "item_id": item.astype(np.int64),
            "reward": reward,
            "pscore": pi_b[user, item].astype(np.float64),
        }
    )
    os.makedirs(directory, exist_ok=True)
    frame.to_parquet(os.path.join(directory, "logs.parquet"), index=False)
    q = 1.0 / (1.0 + np.exp(-logits))
    return {
        "events": events,
        "users": users,
        "items": items,
        "distinct_items_logged": int(np.unique(item).size),
        "reward_mean": float(reward.mean()),
        "behavior_value": float(np.mean(np.sum(pi_b[user] * q[user], axis=1))),
        "optimal_value": float(np.mean(q[user].max(axis=1))),
    }


def _command(directory: str, objective: str, extra: str) -> tuple[list[str], str]:
    executable = shutil.which("towerjax") or shutil.which("towerjax", path=os.path.dirname(sys.executable))
    base = (
        [executable]
        if executable
        else [sys.executable, "-c", "import sys; from towerjax.cli import main; sys.exit(main())"]
    )
    out = os.path.join(directory, f"model-{objective}")
    command = [
        *base,
        "train",
        "--logs",
        os.path.join(directory, "logs.parquet"),
        "--out",
        out,
        "--overwrite",
        "--categorical",
        "user_id",
        "--search",
        "none",
        "--objective",
        objective,
        *shlex.split(extra),
    ]
    return command, out


def run_one(args: argparse.Namespace, objective: str, round_index: int) -> dict:
    command, out = _command(args.run, objective, args.extra)
    if os.path.isdir(out):
        shutil.rmtree(out)
    log(f"round {round_index} {objective}: {shlex.join(command)}")
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = RssSampler(
        child.pid, interval=0.05, kill_above=args.kill_above_gb * GB, deadline=start + args.time_limit_s
    )
    sampler.start()
    lines = []
    for line in child.stdout:
        lines.append(f"[{time.perf_counter() - start:7.1f}s] {line.rstrip()}")
        print(lines[-1], file=sys.stderr, flush=True)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    sampler.stop()
    report = {}
    try:
        with open(os.path.join(out, "report.json")) as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        pass
    return {
        "kind": "run",
        "objective": objective,
        "round": round_index,
        "returncode": os.waitstatus_to_exitcode(status),
        "killed": sampler.killed,
        "seconds_wall": sig(seconds, 4),
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "sampled_peak_rss_bytes": sampler.hwm,
        "cpu_seconds": sig(usage.ru_utime + usage.ru_stime, 4),
        "pythonpath": os.environ.get("PYTHONPATH"),
        "timing": report.get("timing"),
        "validation": report.get("validation") or report.get("selected_validation"),
        "output_tail": lines[-6:],
    }


def run_cli(args: argparse.Namespace, records: list[dict]) -> None:
    objectives = args.objective or ["ips"]
    emit({**environment(), "objectives": objectives, "rounds": args.rounds}, records)
    runs: dict[str, list[dict]] = {name: [] for name in objectives}
    for round_index in range(args.rounds):
        for objective in objectives:
            record = run_one(args, objective, round_index)
            runs[objective].append(record)
            emit(record, records)
    summary = {"kind": "summary", "rounds": args.rounds}
    for name, recs in runs.items():
        summary[name] = {
            "seconds_wall": sig(median([r["seconds_wall"] for r in recs])),
            "peak_rss_bytes": median([r["peak_rss_bytes"] for r in recs]),
        }
    if "ips" in runs:
        for name in runs:
            if name != "ips":
                summary[f"{name}_over_ips"] = {
                    key: sig(summary[name][key] / summary["ips"][key], 3)
                    for key in ("seconds_wall", "peak_rss_bytes")
                }
    summary["goal"] = "dr_over_ips <= 1.5 in seconds_wall and peak_rss_bytes"
    emit(summary, records)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    records: list[dict] = []
    if args.write:
        shape = QUICK if args.quick else FULL
        start = time.perf_counter()
        info = write_logs(args.write, shape["events"], shape["users"], shape["items"], args.seed)
        emit(
            {"kind": "write", "dir": args.write, **info, "seconds": sig(time.perf_counter() - start)}, records
        )
    else:
        run_cli(args, records)
    if args.json:
        write_records(args.json, records)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
