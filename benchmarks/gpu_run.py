"""The steps of the GPU run (``benchmarks/gpu.sh``): device check, speed benchmark, the seed
study's figures within a deadline, and the report.

``python benchmarks/gpu_run.py device``
    prints ``jax.devices()``, fails unless JAX's backend is the required platform (exit 3)
    and the project's modules import (exit 4), and writes ``device.json``.
``python benchmarks/gpu_run.py speed [--dry-run] [--all-seeds-at-once] -- SPEED_ARGS``
    runs ``benchmarks/speed.py``'s ``main`` with ``SPEED_ARGS`` (its JSON lines on stdout);
    ``--dry-run`` shrinks the seed study's problem and towers so it runs in seconds on a CPU.
``python benchmarks/gpu_run.py study --out DIR --deadline UNIX_TIME [...]``
    runs the seed study's cells (figures in the given order, each grid coarse to fine) through
    :func:`towerjax.studies.runner.run_study` into ``DIR/blog`` (``rows.jsonl``: a restart skips
    the finished cells). A cell whose expected time (its nearest finished cell's) does not fit
    before the deadline is not started. The report is rewritten after every finished x value.
``python benchmarks/gpu_run.py report --out DIR``
    writes ``DIR/results.md`` and ``DIR/figureN.md`` / ``figureN.png`` of every figure's finished
    x values (all learners done), partial figures marked as such.

``--all-seeds-at-once`` trains every seed of a cell in one ``vmap``: the library groups seeds
two per device (``towerjax.training.seeds.SEEDS_PER_DEVICE_GROUP``, chosen for CPU caches), which on
one GPU would run a 12-seed cell as 6 sequential groups. The layout changes speed, not results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

BLOG_DIR = "blog"
PLAN_FILE = "plan.json"
DEVICE_FILE = "device.json"
SPEED_FILE = "speed.jsonl"
RESULTS_FILE = "results.md"
# The dry run: one x value per figure; figure 3's 10 actions, figure 1's 300 rounds and figure 4's
# batch 10 are one configuration at the quick sizes (trained once, reused twice).
DRY_VALUES = {3: (10,), 1: (300,), 2: (300,), 4: (10,)}
DRY_LEARNERS = ("regression",)  # the cheapest to compile
DRY_SPEED = dict(hidden_sizes=(8,), embedding_size=8)
DRY_SPEED_ARGS = ["--n-rounds", "100", "--n-test-rounds", "100"]  # the synthetic problem's sizes
PLATFORM_BACKENDS = {"cuda": "gpu", "rocm": "gpu"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _say(line: str) -> None:
    print(line, flush=True)


class OutOfBudget(Exception):
    """A cell whose expected time does not fit before the deadline."""


def coarse_to_fine(values) -> tuple[int, ...]:
    """The grid's ends first, then its midpoints by bisection: a cut-short run still spans the axis.

    >>> coarse_to_fine((10, 50, 100, 200, 500, 1000, 2000, 5000))
    (10, 5000, 200, 50, 1000, 100, 500, 2000)
    """
    values = tuple(values)
    if len(values) < 3:
        return values
    order, intervals = [0, len(values) - 1], [(0, len(values) - 1)]
    while intervals:
        low, high = intervals.pop(0)
        if high - low > 1:
            middle = (low + high) // 2
            order.append(middle)
            intervals += [(low, middle), (middle, high)]
    return tuple(values[i] for i in order)


def all_seeds_at_once() -> None:
    """Every seed of a call in one vmap (one group per device), instead of the CPU's two at a time."""
    import towerjax.training.seeds

    towerjax.training.seeds.SEEDS_PER_DEVICE_GROUP = 1 << 30


# --------------------------------------------------------------------------- device


def device(args: argparse.Namespace) -> int:
    import importlib

    for module in ("jax", "jaxlib", "flax", "optax", "matplotlib", "tqdm", "towerjax"):
        try:
            importlib.import_module(module)
        except ImportError as err:
            print(
                f"gpu.sh: error: cannot import {module} ({err}); the run installs nothing else",
                file=sys.stderr,
            )
            return 4
    import jax
    import jaxlib

    want = args.platform
    hint = (
        'is a CUDA build of jax installed (pip install -U "jax[cuda13]" or "jax[cuda12]")? '
        "On CPU: bash benchmarks/gpu.sh --dry-run"
    )
    try:
        devices = jax.devices()
    except Exception as err:  # RuntimeError, or an AssertionError when no plugin provides the platform
        print(
            f"gpu.sh: error: JAX cannot start a {want} backend ({type(err).__name__}: {err}); {hint}",
            file=sys.stderr,
        )
        return 3
    print(devices, flush=True)
    backend = jax.default_backend()
    if backend != PLATFORM_BACKENDS.get(want, want):
        print(f"gpu.sh: error: JAX's backend is {backend}, not {want}; {hint}", file=sys.stderr)
        return 3
    info = {
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "backend": backend,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }
    Path(args.out, DEVICE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    _say(f"device: {info['device_kind']} ({backend}), jax {info['jax']}")
    return 0


# --------------------------------------------------------------------------- speed


def speed(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import speed as speed_benchmark

    from towerjax.training import TrainConfig

    if args.dry_run:  # the seed study's learner at toy sizes: the same code, in seconds on a CPU
        seed_study = TrainConfig.seed_study.__func__
        TrainConfig.seed_study = classmethod(lambda cls, **kw: seed_study(cls, **{**DRY_SPEED, **kw}))
    if args.all_seeds_at_once:
        all_seeds_at_once()
    rest = args.speed_args[1:] if args.speed_args[:1] == ["--"] else args.speed_args
    sys.argv = ["benchmarks/speed.py", *(DRY_SPEED_ARGS if args.dry_run else []), *rest]
    return speed_benchmark.main()


# --------------------------------------------------------------------------- study


def _plan(args: argparse.Namespace) -> dict:
    from towerjax.studies.blog import FIGURES
    from towerjax.studies.headline import HEADLINE_LEARNERS

    figures = [int(f) for f in args.figures.split(",") if f]
    unknown = [f for f in figures if f not in FIGURES]
    if unknown or not figures:
        raise SystemExit(
            f"gpu_run.py: error: --figures: expected some of {sorted(FIGURES)}, got {args.figures!r}"
        )
    values = DRY_VALUES if args.dry_run else {n: coarse_to_fine(FIGURES[n].values) for n in FIGURES}
    return {
        "dry_run": args.dry_run,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "learners": list(DRY_LEARNERS if args.dry_run else HEADLINE_LEARNERS),
        "figures": {str(n): list(values[n]) for n in figures},  # in run order
    }


class _Clock:
    """The deadline and each finished cell's seconds (compile and training, all seeds)."""

    def __init__(self, deadline: float, seconds: dict):
        self.deadline = deadline
        self.seconds = dict(seconds)

    def left(self) -> float:
        return self.deadline - time.time()

    def estimate(self, cell) -> float:
        """The slowest finished cell at the same x, else the finished cell nearest in log(x); 0 if none."""
        number, x, _ = cell
        same = [s for (n, v, _), s in self.seconds.items() if n == number and v == x]
        if same:
            return max(same)
        known = [(abs(math.log(v / x)), s) for (n, v, _), s in self.seconds.items() if n == number]
        return min(known)[1] if known else 0.0


def _budgeted_study(options, clock: _Clock):
    from towerjax.studies.blog import BlogStudy

    class BudgetedStudy(BlogStudy):
        """The seed study's cells, each started only if it is expected to finish before the deadline."""

        def run_cell(self, cell):
            need, left = clock.estimate(cell), clock.left()
            if need > left:
                raise OutOfBudget(f"{self.label(cell)}: needs about {need:.0f}s, {max(left, 0):.0f}s left")
            rows = super().run_cell(cell)
            clock.seconds[cell] = rows[0]["seconds_cell"]
            return rows

        def render(self, rows, out):
            """Nothing: :func:`report` draws every figure from all of the folder's rows."""

    return BudgetedStudy(options)


def study(args: argparse.Namespace) -> int:
    from towerjax.checks import InputError
    from towerjax.studies.blog import StudyOptions
    from towerjax.studies.runner import ROWS_FILE, read_cells, run_study
    from towerjax.training import expose_cpu_cores

    expose_cpu_cores()  # as the command line does (CPU only; before JAX starts)
    if args.all_seeds_at_once:
        all_seeds_at_once()
    out = Path(args.out)
    plan = _plan(args)
    (out / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
    rows_path = out / BLOG_DIR / ROWS_FILE
    finished = read_cells(rows_path)
    clock = _Clock(args.deadline, {cell: rows[0]["seconds_cell"] for cell, rows in finished.items()})
    total = sum(len(v) for v in plan["figures"].values()) * len(plan["learners"])
    _say(
        f"study: figures {', '.join(plan['figures'])} in that order, {args.seeds} seeds, {args.epochs} epochs, "
        f"learners {', '.join(plan['learners'])}; {total} cells, {_done(plan, finished)} already done; "
        f"{clock.left():.0f}s left"
    )
    skipped, stale = 0, True  # stale: results.md may not show the folder's rows and this plan yet
    for number, values in plan["figures"].items():
        for x in values:
            options = StudyOptions(
                figures=(int(number),),
                seeds=args.seeds,
                epochs=args.epochs,
                quick=args.dry_run,
                values=(x,),
                learners=tuple(plan["learners"]),
            )
            cells = options.cells()
            if all(cell in finished for cell in cells):
                continue
            if clock.left() <= 0:
                skipped += sum(cell not in finished for cell in cells)
                continue
            try:
                run_study(_budgeted_study(options, clock), out / BLOG_DIR, progress=False, log=_say)
            except OutOfBudget as err:
                _say(f"not started: {err}")
            except InputError as err:
                print(f"gpu_run.py: error: {err}", file=sys.stderr)
                return 2
            count = len(finished)
            finished = read_cells(rows_path)
            skipped += sum(cell not in finished for cell in cells)
            if len(finished) > count:
                write_report(out)  # after every finished x value: a kill loses no table
                stale = False
    if stale:
        write_report(out)
    if skipped:
        _say(f"study: {skipped} of {total} cells left at the deadline; rerun the same command to resume")
    else:
        _say(f"study: all {total} cells done")
    return 0


def _done(plan: dict, finished: dict) -> int:
    return sum(
        (int(n), x, learner) in finished
        for n, values in plan["figures"].items()
        for x in values
        for learner in plan["learners"]
    )


# --------------------------------------------------------------------------- report


def _speed_table(path: Path) -> list[str]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    lines = [
        "| layout | backend | s / epoch | µs / step | seed-runs / hour | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        if r.get("kind") == "towerjax":
            lines.append(
                f"| {r['layout']} | {r['backend']} | {r['seconds_per_epoch_median']} | {r['us_per_step']} "
                f"| {r['seed_runs_per_hour']} | {r['seconds_compile']} |"
            )
    return lines


def write_report(out: Path) -> Path:
    """``results.md`` and each figure's finished x values as ``figureN.md`` / ``figureN.png`` in ``out``."""
    from towerjax.studies.blog import FIGURES, figure_table, plot_figure
    from towerjax.studies.runner import ROWS_FILE, read_cells

    out = Path(out)
    plan = json.loads((out / PLAN_FILE).read_text()) if (out / PLAN_FILE).exists() else None
    info = json.loads((out / DEVICE_FILE).read_text()) if (out / DEVICE_FILE).exists() else None
    finished = read_cells(out / BLOG_DIR / ROWS_FILE)
    lines = ["# GPU run: speed and the seed study's figures", ""]
    lines.append(f"Written by `benchmarks/gpu.sh` at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    if plan is not None and plan["dry_run"]:
        lines.append("**Dry run**: toy sizes on CPU to check the script, not results.")
    if info is not None:
        lines.append(
            f"Device: {info['device_kind']} ({info['backend']}; {', '.join(info['devices'])}), jax {info['jax']}."
        )
    lines.append("")
    if plan is not None:
        total = sum(len(v) for v in plan["figures"].values()) * len(plan["learners"])
        done = _done(plan, finished)
        status = (
            "complete"
            if done == total
            else f"**incomplete**, {total - done} of {total} cells left: rerun `bash benchmarks/gpu.sh` "
            "with the same output folder to resume"
        )
        lines += [
            f"Study: {plan['seeds']} seeds per cell, {plan['epochs']} epochs, learners "
            f"{', '.join(plan['learners'])}, every other setting the seed study's; figures run in the order "
            f"{', '.join(plan['figures'])}. Status: {status}.",
            "",
        ]
    lines += ["## Speed (`benchmarks/speed.py --no-reference`)", ""]
    speed_path = out / SPEED_FILE
    lines += _speed_table(speed_path) if speed_path.exists() else ["Not run yet."]
    for number in sorted(plan["figures"], key=int) if plan is not None else ():
        figure, grid, learners = FIGURES[int(number)], plan["figures"][number], plan["learners"]
        complete = [x for x in sorted(grid) if all((figure.number, x, lr) in finished for lr in learners)]
        lines += ["", f"## Figure {number}: {figure.title} ({figure.behavior} logging)", ""]
        if not complete:
            lines.append("No x value finished yet.")
            continue
        rows = [row for x in complete for lr in learners for row in finished[(figure.number, x, lr)]]
        table = figure_table(rows, figure)
        (out / f"figure{number}.md").write_text(table + "\n")
        plot_figure(rows, figure, out / f"figure{number}.png")
        if len(complete) < len(grid):
            lines.append(f"Partial: {figure.field} {complete} of {sorted(grid)}.")
            lines.append("")
        seconds = ", ".join(
            f"{x}: {max(finished[(figure.number, x, lr)][0]['seconds_cell'] for lr in learners):.0f}s"
            for x in complete
        )
        lines += [
            f"![figure {number}](figure{number}.png)",
            "",
            table,
            "",
            f"Seconds per cell (compile and all seeds' training; the slowest learner): {seconds}.",
        ]
    path = out / RESULTS_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def report(args: argparse.Namespace) -> int:
    _say(f"wrote {write_report(Path(args.out))}")
    return 0


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("device", help="print jax.devices(); fail unless the platform is there")
    check.add_argument("--platform", default="cuda", help="the JAX platform required (cuda, rocm, cpu, tpu)")
    check.add_argument("--out", type=Path, required=True)
    bench = commands.add_parser("speed", help="benchmarks/speed.py, toy sizes with --dry-run")
    bench.add_argument("--dry-run", action="store_true")
    bench.add_argument("--all-seeds-at-once", action="store_true")
    bench.add_argument("speed_args", nargs=argparse.REMAINDER, help="-- then speed.py's options")
    run = commands.add_parser("study", help="the seed study's figures, resumable, within a deadline")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--deadline", type=float, required=True, help="unix time: start no cell after it")
    run.add_argument("--figures", default="3,1,2,4", help="comma-separated, most important first")
    run.add_argument("--seeds", type=_positive_int, default=12)
    run.add_argument("--epochs", type=_positive_int, default=100)
    run.add_argument("--dry-run", action="store_true", help="toy sizes, one x value per figure")
    run.add_argument("--all-seeds-at-once", action="store_true")
    write = commands.add_parser("report", help="results.md and the figures")
    write.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if getattr(args, "out", None) is not None:
        os.makedirs(args.out, exist_ok=True)
    return {"device": device, "speed": speed, "study": study, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
