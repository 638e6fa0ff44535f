"""One resumable runner for every study: a study is a list of cells, each run into rows.

A study (:class:`Study`) declares

- :attr:`Study.name` and :meth:`Study.manifest`: which study and the options its rows
  depend on (a folder holding rows of other options is refused);
- :meth:`Study.cells`: its cells, hashable keys made of strings, numbers and tuples, in
  run order (checking every option first, so bad input fails before any work);
- :meth:`Study.run_cell`: one cell's rows, JSON-serialisable dicts (flat or nested);
- :meth:`Study.label` and :meth:`Study.summary`: one line about a cell and its rows;
- optionally :meth:`Study.reuse` (rows copied from an identical finished cell) and
  :meth:`Study.render` (tables and figures written from the rows).

:func:`run_study` runs the cells not yet in ``out/rows.jsonl``. Each finished cell is
appended as one line ``{"cell": key, "rows": [...]}`` in one flushed and fsynced write,
so a kill loses at most the cell in flight: a restart with the same ``out`` skips the
finished cells and drops a torn last line. Every cell depends only on its options and
seeds, so the resumed rows equal an uninterrupted run's. Without ``out`` the cells run
in memory (nothing written, nothing resumed).

The command-line helpers at the end are shared by the studies' ``towerjax`` subcommands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from tqdm.auto import tqdm

from towerjax import jsonio
from towerjax.checks import InputError
from towerjax.cli.arguments import check_out_dir

__all__ = [
    "MANIFEST_FILE",
    "ROWS_FILE",
    "Study",
    "append_cell",
    "check_json",
    "check_manifest",
    "dataset_command",
    "interrupted",
    "read_cells",
    "read_rows",
    "report",
    "run_study",
]

ROWS_FILE = "rows.jsonl"
MANIFEST_FILE = "study.json"


class Study:
    """What a study declares to :func:`run_study`; subclasses override the methods they need."""

    name: ClassVar[str] = ""

    def manifest(self) -> dict:
        """The options the rows depend on (JSON-serialisable); a resumed run must have the same."""
        return {}

    def cells(self) -> Sequence[Hashable]:
        """Every cell's key in run order; raises :class:`InputError` for bad options."""
        raise NotImplementedError

    def run_cell(self, cell: Hashable) -> list[dict]:
        """The rows of one cell."""
        raise NotImplementedError

    def label(self, cell: Hashable) -> str:
        """A short name of the cell (progress bar and log)."""
        return str(cell)

    def summary(self, cell: Hashable, rows: list[dict]) -> str:
        """One line about a finished cell's rows (log)."""
        return f"{len(rows)} row(s)"

    def reuse(self, cell: Hashable, finished: Mapping[Hashable, list[dict]]) -> list[dict] | None:
        """Rows for ``cell`` copied from an identical finished cell (any in the folder), or ``None``."""
        return None

    def render(self, rows: list[dict], out: Path) -> None:
        """Writes tables and figures of ``rows`` (every finished cell's, in cell order) into ``out``."""


def run_study(
    study: Study,
    out: Path | None = None,
    *,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    max_cells: int | None = None,
) -> list[dict]:
    """Runs the cells of ``study`` not yet finished in ``out``, then renders it into ``out``.

    Args:
      study: the study.
      out: its folder (created; rows in ``rows.jsonl``, options in ``study.json``), or
        ``None`` to run every cell in memory.
      progress: a tqdm progress bar of cells with an ETA (``None``: when stderr is a
        terminal; elsewhere ``None`` writes a line on stderr as each cell starts, followed by
        the cell's own progress, e.g. :func:`~towerjax.training.train_seeds`' epoch lines).
      log: receives one line per finished cell (and with ``out``, a first line saying how
        many cells are done); default: printed above the progress bar.
      max_cells: stop after that many new cells, as an interruption would (for tests).

    Returns:
      The rows of every finished cell of ``study.cells()``, in cell order.

    Raises:
      InputError: for bad options (from ``study.cells()``), or naming ``out`` when the
        folder holds rows of another study or other options.
    """
    cells = list(study.cells())  # checks every option before any work
    say = log or _print_above_bar
    finished: dict[Hashable, list[dict]] = {}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        check_manifest(out, study)
        path = out / ROWS_FILE
        finished = read_cells(path)
        done = sum(cell in finished for cell in cells)
        say(f"{study.name}: {len(cells)} cells ({done} already in {path})")
    todo = [cell for cell in cells if cell not in finished]
    bar = tqdm(
        total=len(cells),
        initial=len(cells) - len(todo),
        unit="cell",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    announce = progress is None and bar.disable  # no bar: a line as each cell starts
    try:
        for count, cell in enumerate(todo[:max_cells]):
            position = len(cells) - len(todo) + count + 1
            bar.set_postfix_str(study.label(cell))
            if announce:  # on stderr, with the cell's own progress lines
                print(f"[{position}/{len(cells)}] {study.label(cell)} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            rows = study.reuse(cell, finished)
            if rows is None:
                rows = study.run_cell(cell)
            rows = json.loads(jsonio.dumps(rows))  # as a resumed run reads them back
            if out is not None:
                append_cell(path, cell, rows)
            finished[cell] = rows
            seconds = time.perf_counter() - start
            say(
                f"[{position}/{len(cells)}] {study.label(cell)}: {study.summary(cell, rows)} ({seconds:.1f}s)"
            )
            bar.update(1)
    finally:
        bar.close()
    rows = [row for cell in cells for row in finished.get(cell, [])]
    if out is not None:
        study.render(rows, out)
    return rows


def _print_above_bar(line: str) -> None:
    tqdm.write(line)
    sys.stdout.flush()


def _key(value):
    """A cell key read back from JSON: lists become tuples again."""
    return tuple(_key(v) for v in value) if isinstance(value, list) else value


def read_cells(path: Path) -> dict[Hashable, list[dict]]:
    """The finished cells of a ``rows.jsonl`` (the first copy of each); a torn last line is ignored."""
    cells: dict[Hashable, list[dict]] = {}
    if not Path(path).exists():
        return cells
    text = Path(path).read_text()
    for line in text[: text.rfind("\n") + 1].splitlines():
        if line.strip():
            record = json.loads(line)
            cells.setdefault(_key(record["cell"]), record["rows"])
    return cells


def read_rows(path: Path) -> list[dict]:
    """Every row of a ``rows.jsonl``, cell after cell in file order (one copy of each cell)."""
    return [row for rows in read_cells(path).values() for row in rows]


def append_cell(path: Path, cell: Hashable, rows: list[dict]) -> None:
    """Appends one cell's rows as one line in one write, flushed to disk; drops a torn last line first."""
    path = Path(path)
    if path.exists():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
    line = jsonio.dumps({"cell": cell, "rows": rows}) + "\n"
    with open(path, "a") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def check_manifest(out: Path, study: Study) -> None:
    """Writes ``out/study.json``, or raises InputError naming ``out`` if it holds another study or options."""
    manifest = out / MANIFEST_FILE
    wanted = json.loads(jsonio.dumps({"study": study.name, **study.manifest()}))
    if not manifest.exists():
        manifest.write_text(jsonio.dumps(wanted, indent=2) + "\n")
        return
    try:
        found = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(
            "out", f"cannot read {manifest} ({err}); remove it or choose another --out"
        ) from None
    if found != wanted:
        differing = sorted(k for k in wanted.keys() | found.keys() if found.get(k) != wanted.get(k))
        raise InputError(
            "out",
            f"{out} holds a study with other options ({', '.join(differing)}: "
            f"{ {k: found.get(k) for k in differing} }); use those options to resume, or another --out",
        )


# --------------------------------------------------------------------------- command line


def check_json(args: argparse.Namespace) -> None:
    """Exits 2 naming ``--json`` unless its folder can be written (before any work)."""
    if args.json is not None:
        check_out_dir(args.subparser, "--json", args.json.parent)


def report(args: argparse.Namespace, table: str, payload) -> int:
    """Prints ``table``, writes ``payload`` to ``--json`` if given; returns exit status 0."""
    print(table)
    if args.json is not None:
        args.json.write_text(jsonio.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


def interrupted(path: Path, error: KeyboardInterrupt | None = None) -> int:
    """Says on stderr, in one line, where a study was interrupted (``error``: the cell's
    training stopped at an epoch, :class:`~towerjax.training.TrainingInterrupted`) and how to
    resume it; returns exit status 130."""
    where = str(error) if error is not None and str(error).startswith("interrupted") else "interrupted"
    done = len(read_cells(path))
    print(
        f"{where}; {done} finished cell(s) are in {path}; run the same command to resume",
        file=sys.stderr,
        flush=True,
    )
    return 130


def dataset_command(args: argparse.Namespace, run: Callable[[], dict], render: Callable[[dict], str]) -> int:
    """Runs a study on a fetched dataset: a missing or unreadable dataset is one line on
    stderr and exit 1; otherwise the printed table and ``--json``, exit 0."""
    from towerjax import datasets

    check_json(args)
    try:
        result = run()
    except (datasets.FetchError, datasets.DatasetFileError) as err:
        print(f"towerjax study {args.study}: error: {err}", file=sys.stderr)
        return 1
    return report(args, render(result), result)
