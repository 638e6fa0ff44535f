"""Output paths: one check before any work that creates nothing, folders replaced whole or not at
all, and messages that name Python arguments in Python and flags on the command line."""

import argparse
from pathlib import Path

import pytest

from towerjax import outputs
from towerjax.checks import InputError
from towerjax.cli.arguments import flag_text, input_error_text


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones included) with its text."""
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(folder: Path, files: dict[str, str]) -> None:
    outputs.write_files(folder, {name: text.encode() for name, text in files.items()})


def test_the_check_names_the_argument_and_creates_nothing(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("")
    cases = [
        (blocker / "x", True, "afile' is a file, not a folder"),
        (blocker / "x" / "y.json", False, "afile' is a file, not a folder"),
        (blocker, True, "is a file, expected a folder"),
        (tmp_path, False, "is a folder, expected a file"),
    ]
    for path, folder, words in cases:
        with pytest.raises(InputError, match=words) as err:
            outputs.check_output(path, argument="out", folder=folder)
        assert err.value.argument == "out"
    assert outputs.check_output(tmp_path / "a" / "b" / "m", argument="out", folder=True) == tmp_path / "a/b/m"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no folder, no probe left


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_folder_where_nothing_can_be_created_is_reported():
    problem = outputs.output_problem(Path("/proc/towerjax-out"), folder=True)
    assert problem is not None and "cannot create files in '/proc'" in problem


def test_a_non_empty_folder_needs_overwrite(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_text("{}")
    with pytest.raises(InputError, match=r"not empty \(model.json\); pass overwrite=True") as err:
        outputs.check_output(tmp_path / "m", argument="out", folder=True, overwrite=False)
    assert err.value.argument == "out"
    outputs.check_output(tmp_path / "m", argument="out", folder=True, overwrite=True)
    (tmp_path / "empty").mkdir()
    outputs.check_output(tmp_path / "empty", argument="out", folder=True, overwrite=False)


def test_a_folder_appears_whole_only_when_its_write_succeeds(tmp_path):
    target = tmp_path / "new" / "m"
    with (
        pytest.raises(RuntimeError),
        outputs.replacing_folder(target, argument="out", overwrite=False) as staging,
    ):
        _write(staging, {"a.txt": "half"})
        raise RuntimeError("a failure while writing")
    assert not (tmp_path / "new").exists()  # nor the parent made for it
    with outputs.replacing_folder(target, argument="out", overwrite=False) as staging:
        assert staging.parent == target.parent and staging.name.startswith(".m.")
        _write(staging, {"a.txt": "whole"})
    assert _tree(tmp_path / "new") == {"m/a.txt": "whole"}


@pytest.mark.parametrize("foreign", [False, True])
@pytest.mark.parametrize("fail_at", ["writing", "renaming"])
def test_an_interrupted_replace_leaves_the_old_folder_as_it_was(tmp_path, monkeypatch, foreign, fail_at):
    target = tmp_path / "m"
    target.mkdir()
    old = {"model.json": "old marker", "params": "old params", "report.json": "old report"}
    if foreign:
        old["notes.txt"] = "mine"
    _write(target, old)
    own = ("model.json", "params", "report.json")
    if fail_at == "renaming":
        original, calls = outputs._rename, []

        def rename(source, destination):
            calls.append(destination)
            if len(calls) == 2:  # after the first step of the swap, before it completes
                raise KeyboardInterrupt
            original(source, destination)

        monkeypatch.setattr(outputs, "_rename", rename)
    with pytest.raises(KeyboardInterrupt):
        with outputs.replacing_folder(
            target, argument="out", overwrite=True, own=own, marker="model.json"
        ) as s:
            _write(s, {"params": "new params", "model.json": "new marker"})
            if fail_at == "writing":
                raise KeyboardInterrupt
    monkeypatch.undo()
    assert _tree(tmp_path) == {f"m/{name}": text for name, text in old.items()}  # no temporary left


@pytest.mark.parametrize("foreign", [False, True])
def test_overwrite_replaces_the_writers_files_and_keeps_the_others(tmp_path, foreign):
    target = tmp_path / "m"
    target.mkdir()
    _write(
        target,
        {"model.json": "old", "report.json": "old report", **({"notes.txt": "mine"} if foreign else {})},
    )
    with pytest.raises(InputError, match="overwrite=True"):
        with outputs.replacing_folder(
            target, argument="out", overwrite=False, own=("model.json", "report.json")
        ):
            pytest.fail("a non-empty folder without overwrite is refused before the write")
    with outputs.replacing_folder(
        target, argument="out", overwrite=True, own=("model.json", "report.json")
    ) as s:
        _write(s, {"model.json": "new"})
    expected = {"m/model.json": "new", **({"m/notes.txt": "mine"} if foreign else {})}
    assert _tree(tmp_path) == expected  # the old report.json is gone: it described the old model


def test_a_file_is_replaced_whole_or_left_as_it_was(tmp_path):
    path = tmp_path / "deep" / "r.json"
    outputs.write_file(path, "one", argument="json")
    assert path.read_text() == "one"

    def failing(to: Path):
        to.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(InputError, match="No space left on device") as err:
        outputs.write_file(path, failing, argument="json")
    assert err.value.argument == "json"
    assert _tree(tmp_path) == {"deep/r.json": "one"}
    with pytest.raises(InputError):
        outputs.write_file(tmp_path / "new" / "r.json", failing, argument="json")
    assert not (tmp_path / "new").exists()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--numeric-strings", choices=("error", "parse", "categorical"))
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-item-id-embedding", dest="item_id_embedding", action="store_false")
    parser.add_argument("--categorical")
    parser.add_argument("--standardize", action=argparse.BooleanOptionalAction)
    parser.add_argument("--out")
    return parser


@pytest.mark.parametrize(
    "python, command_line",
    [
        ("pass numeric_strings='parse' to read it", "pass --numeric-strings parse to read it"),
        ("pass overwrite=True to replace", "pass --overwrite to replace"),
        ("needs the item id (item_id_embedding=True)", "needs the item id (without --no-item-id-embedding)"),
        ("pass categorical=['user_id', 'zip'] to embed", "pass --categorical user_id,zip to embed"),
        ("standardize=False", "--no-standardize"),
        ("pass unknown='ignore'", "pass unknown='ignore'"),  # no such flag: left as it is
    ],
)
def test_the_command_line_names_flags_where_python_names_arguments(python, command_line):
    assert flag_text(_parser(), python) == command_line


def test_an_input_error_reads_as_its_flag_and_the_flags_it_suggests():
    err = InputError("out", "m is not empty (model.json); pass overwrite=True to replace what is there")
    assert input_error_text(_parser(), err.argument, err.message) == (
        "argument --out: m is not empty (model.json); pass --overwrite to replace what is there"
    )
