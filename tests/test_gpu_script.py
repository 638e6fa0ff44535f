"""benchmarks/gpu.sh: its CPU dry run writes the speed lines, the figures and the results table,
a rerun skips the finished work, and a run out of time leaves the rest for the next one."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gpu_run():
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "benchmarks" / "gpu_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(out: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "TOWERJAX_GPU_OUT": str(out),
        "TOWERJAX_GPU_FIGURES": "3,4",  # quick sizes: figure 4's batch 10 is figure 3's 10 actions, reused
        "TOWERJAX_GPU_BUDGET_S": "300",
    }
    env.pop("OUT", None)
    return subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_dry_run_writes_speed_figures_and_table_and_a_rerun_skips_finished_work(tmp_path):
    out = tmp_path / "gpu"
    first = _script(out)
    assert first.returncode == 0, first.stdout + first.stderr
    speed = [json.loads(line) for line in (out / "speed.jsonl").read_text().splitlines()]
    assert speed and all(r["kind"] == "towerjax" and r["backend"] == "cpu" for r in speed)
    for name in ("figure3.png", "figure3.md", "figure4.png", "results.md", "blog/rows.jsonl", "gpu.log"):
        assert (out / name).stat().st_size > 0, name
    results = (out / "results.md").read_text()
    assert "Dry run" in results and "Status: complete" in results
    assert "| n_actions | regression |" in results and "| batch_size | regression |" in results
    assert "2 seeds, 2/device at once" in results  # the speed table
    assert "2 cells, 0 already done" in first.stdout

    rows, lines = out / "blog" / "rows.jsonl", (out / "speed.jsonl").stat().st_mtime_ns
    before = rows.stat().st_mtime_ns
    second = _script(out)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "speed: already done" in second.stdout
    assert "2 cells, 2 already done" in second.stdout and "blog: " not in second.stdout  # nothing trained
    assert rows.stat().st_mtime_ns == before and (out / "speed.jsonl").stat().st_mtime_ns == lines
    assert (out / "gpu.log").read_text().count("DRY RUN") == 2  # the log keeps both runs


def test_a_cell_that_cannot_finish_by_the_deadline_is_left_for_the_next_run(tmp_path, capsys):
    gpu_run = _gpu_run()
    assert gpu_run.coarse_to_fine((10, 50, 100, 200, 500, 1000, 2000, 5000)) == (
        10,
        5000,
        200,
        50,
        1000,
        100,
        500,
        2000,
    )
    clock = gpu_run._Clock(time.time() + 60, {(3, 10, "ips"): 30.0, (3, 500, "dr"): 90.0})
    assert clock.estimate((3, 10, "dr")) == 30.0  # the same x, another learner
    assert clock.estimate((3, 2000, "ips")) == 90.0  # the nearest x on a log scale
    assert clock.estimate((1, 500, "ips")) == 0.0  # nothing known of figure 1: try it

    status = gpu_run.main(["study", "--out", str(tmp_path), "--deadline", str(time.time() - 1), "--dry-run"])
    assert status == 0
    assert "4 of 4 cells left at the deadline" in capsys.readouterr().out
    assert not (tmp_path / "blog" / "rows.jsonl").exists()  # nothing trained, nothing written
    assert "**incomplete**, 4 of 4 cells left" in (tmp_path / "results.md").read_text()
