"""The studies' runner on a fake study (no training): resume, manifest, max_cells, reuse."""

import json

import pytest

from towerjax.checks import InputError
from towerjax.studies.runner import Study, read_cells, read_rows, run_study


class Squares(Study):
    """Cells ``(group, n)``; each gives two rows, one of them nested, determined by the cell."""

    name = "squares"

    def __init__(self, groups=("a", "b"), ns=(1, 2, 3), offset=0):
        self.groups, self.ns, self.offset = groups, ns, offset
        self.ran = []

    def manifest(self):
        return {"offset": self.offset, "ns": self.ns}

    def cells(self):
        if any(n < 1 for n in self.ns):
            raise InputError("ns", f"expected positive integers, got {self.ns}")
        return [(g, n) for g in self.groups for n in self.ns]

    def run_cell(self, cell):
        self.ran.append(cell)
        group, n = cell
        return [
            {"group": group, "n": n, "square": n * n + self.offset},
            {"group": group, "n": n, "curve": [n / 3, (n + 0.1) ** 0.5], "detail": {"pair": (n, group)}},
        ]

    def render(self, rows, out):
        (out / "table.md").write_text("\n".join(f"| {r['group']} | {r['n']} |" for r in rows) + "\n")


def _quiet(line):
    pass


def test_resuming_after_a_kill_mid_write_gives_the_uninterrupted_rows(tmp_path):
    whole = run_study(Squares(), tmp_path / "whole", progress=False, log=_quiet)
    assert len(whole) == 12 and whole[1]["detail"] == {"pair": [1, "a"]}  # rows as read back from JSON

    out = tmp_path / "resumed"
    first = Squares()
    assert run_study(first, out, progress=False, log=_quiet, max_cells=2) == whole[:4]
    with open(out / "rows.jsonl", "a") as handle:  # killed while writing the third cell
        handle.write('{"cell": ["a", 3], "rows": [{"group": "a", "n"')
    assert read_rows(out / "rows.jsonl") == whole[:4]  # the torn line is not a cell

    study, lines = Squares(), []
    assert run_study(study, out, progress=False, log=lines.append) == whole
    assert study.ran == [("a", 3), ("b", 1), ("b", 2), ("b", 3)]  # finished cells are not run again
    assert lines[0] == f"squares: 6 cells (2 already in {out / 'rows.jsonl'})"
    assert lines[1].startswith("[3/6] ('a', 3): 2 row(s) (")
    assert read_rows(out / "rows.jsonl") == whole  # torn line gone, no duplicates
    assert len((out / "rows.jsonl").read_text().splitlines()) == 6
    assert (out / "table.md").read_text() == (tmp_path / "whole" / "table.md").read_text()

    again = Squares()
    assert run_study(again, out, progress=False, log=_quiet) == whole
    assert again.ran == []


def test_max_cells_stops_early_and_the_rows_are_those_of_the_finished_cells(tmp_path):
    study = Squares()
    rows = run_study(study, tmp_path, progress=False, log=_quiet, max_cells=1)
    assert study.ran == [("a", 1)] and [r["n"] for r in rows] == [1, 1]
    assert list(read_cells(tmp_path / "rows.jsonl")) == [("a", 1)]
    assert run_study(Squares(), tmp_path, progress=False, log=_quiet, max_cells=0) == rows


def test_a_folder_of_other_options_or_another_study_is_refused(tmp_path):
    run_study(Squares(offset=0), tmp_path, progress=False, log=_quiet, max_cells=1)
    manifest = json.loads((tmp_path / "study.json").read_text())
    assert manifest == {"study": "squares", "offset": 0, "ns": [1, 2, 3]}

    study = Squares(offset=5)
    with pytest.raises(InputError, match=r"^out: .*offset") as err:
        run_study(study, tmp_path, progress=False, log=_quiet)
    assert err.value.argument == "out" and study.ran == []

    class Other(Squares):
        name = "other"

    with pytest.raises(InputError, match=r"^out: .*study"):
        run_study(Other(), tmp_path, progress=False, log=_quiet)

    (tmp_path / "study.json").write_text("{not json")
    with pytest.raises(InputError, match=r"^out: cannot read"):
        run_study(Squares(), tmp_path, progress=False, log=_quiet)


def test_bad_options_fail_before_the_folder_is_made(tmp_path):
    with pytest.raises(InputError, match=r"^ns:"):
        run_study(Squares(ns=(1, 0)), tmp_path / "out", progress=False, log=_quiet)
    assert not (tmp_path / "out").exists()


def test_without_a_folder_the_cells_run_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = []
    rows = run_study(Squares(groups=("a",)), progress=False, log=lines.append)
    assert [r["n"] for r in rows] == [1, 1, 2, 2, 3, 3]
    assert len(lines) == 3 and lines[0].startswith("[1/3] ('a', 1)")
    assert list(tmp_path.iterdir()) == []


def test_a_study_can_reuse_an_identical_finished_cell(tmp_path):
    class Shifted(Squares):
        """Group "b" is group "a" again: its cells copy a's rows."""

        def reuse(self, cell, finished):
            if cell[0] == "b" and ("a", cell[1]) in finished:
                return [{**row, "group": "b"} for row in finished[("a", cell[1])]]
            return None

    study = Shifted()
    rows = run_study(study, tmp_path, progress=False, log=_quiet)
    assert study.ran == [("a", 1), ("a", 2), ("a", 3)]
    assert [r for r in rows if r["group"] == "b"] == [{**r, "group": "b"} for r in rows if r["group"] == "a"]
