"""README.md's code runs as written: its ```python and ```bash blocks, in order, in one folder.

Each block runs in its own subprocess (Python blocks with this interpreter, shell blocks with
bash and this environment's ``towerjax`` first on ``PATH``), in one temporary folder shared by
all blocks, so a block may use what an earlier one wrote (the example logs, a trained model).
A block that cannot run here is marked right before its fence with
``<!-- readme-test: skip (why) -->``; ``<!-- readme-test: fast -->`` runs a shell block's
``towerjax train`` lines with ``--epochs 1 --seeds 1`` appended (the last flag wins).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
MARKER = re.compile(r"<!--\s*readme-test:\s*(.*?)\s*-->")
SKIP = re.compile(r"skip \((.+)\)")
FAST_FLAGS = " --epochs 1 --seeds 1"
TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    index: int
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None  # the readme-test marker right before the fence

    @property
    def name(self) -> str:
        return f"{self.index}-{self.language}-line{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` with the marker on the last non-blank line before each."""
    blocks = []
    for index, match in enumerate(FENCE.finditer(text)):
        before = text[: match.start()].rstrip().splitlines()
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
        blocks.append(
            Block(
                index=index,
                line=text.count("\n", 0, match.start()) + 1,
                language=match.group(1),
                code=match.group(2),
                marker=marker.group(1) if marker else None,
            )
        )
    return blocks


BLOCKS = readme_blocks(README.read_text())
RUNNABLE = [b for b in BLOCKS if b.language in ("python", "bash")]


def fast(code: str) -> str:
    """Appends ``--epochs 1 --seeds 1`` to every ``towerjax train`` line of a shell block."""
    lines = []
    for line in code.splitlines():
        if line.startswith("towerjax train"):
            assert "#" not in line and not line.endswith("\\"), (
                f"a fast line must be one plain command: {line}"
            )
            line += FAST_FLAGS
        lines.append(line)
    return "\n".join(lines) + "\n"


def command(block: Block, folder: Path) -> list[str]:
    if block.language == "python":
        script = folder / f"block{block.index}.py"
        script.write_text(block.code)
        return [sys.executable, script.name]
    code = fast(block.code) if block.marker == "fast" else block.code
    script = folder / f"block{block.index}.sh"
    script.write_text("set -euo pipefail\n" + code)
    return ["bash", script.name]


class Runner:
    """Runs the runnable blocks in README order, each at most once, in one folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.results: dict[int, subprocess.CompletedProcess] = {}
        bin_dir = str(Path(sys.executable).parent)  # the environment's python and towerjax
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "MPLBACKEND": "Agg",
        }

    def run_through(self, block: Block) -> subprocess.CompletedProcess:
        for earlier in RUNNABLE:
            if earlier.index > block.index:
                break
            if earlier.marker is None or earlier.marker == "fast":
                if earlier.index not in self.results:
                    self.results[earlier.index] = subprocess.run(
                        command(earlier, self.folder),
                        cwd=self.folder,
                        env=self.env,
                        capture_output=True,
                        text=True,
                        timeout=TIMEOUT_S,
                    )
        return self.results[block.index]


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Runner:
    return Runner(tmp_path_factory.mktemp("readme"))


def test_readme_has_python_and_shell_blocks():
    assert {b.language for b in RUNNABLE} == {"python", "bash"}
    assert sum(b.marker is None for b in RUNNABLE) >= 5  # most of them run


def test_every_marker_is_known_and_every_skip_says_why():
    for block in BLOCKS:
        if block.marker is None or block.marker == "fast":
            assert block.marker is None or block.language == "bash", f"{block.name}: fast is for shell blocks"
            continue
        skip = SKIP.fullmatch(block.marker)
        assert skip and skip.group(1).strip(), (
            f"{block.name}: expected 'skip (reason)' or 'fast', got {block.marker!r}"
        )
    text = README.read_text()
    assert len(MARKER.findall(text)) == sum(b.marker is not None for b in BLOCKS), (
        "a marker not before a block"
    )


def test_fast_appends_to_train_lines_only():
    code = "towerjax train --objective ips --epochs 10\ntowerjax evaluate --model m\n"
    assert (
        fast(code)
        == "towerjax train --objective ips --epochs 10 --epochs 1 --seeds 1\ntowerjax evaluate --model m\n"
    )


@pytest.mark.parametrize(
    "block", [b for b in RUNNABLE if b.marker is None or b.marker == "fast"], ids=lambda b: b.name
)
def test_readme_block_runs(block, runner):
    done = runner.run_through(block)
    assert done.returncode == 0, (
        f"README.md line {block.line} ({block.language}) exited {done.returncode}:\n"
        f"{block.code}\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}"
    )
