"""Output paths: one check for everything towerjax writes, and writes that never leave half a result.

Every writer (a saved model, an export, ``--json`` files, figures, tables) goes through
:func:`check_output` before any work, so a typo or an unwritable path fails in a second with
one line naming the argument, and nothing is created by the check. The writes themselves:

- a folder (a model, an export) is built in a hidden temporary sibling and renamed into place
  on success (:func:`replacing_folder`): an interrupted or failed write leaves the previous
  folder as it was and no half folder. A non-empty folder is replaced only with
  ``overwrite=True``; files in it that the writer does not own are kept.
- a file is written to a hidden temporary sibling and renamed over the target
  (:func:`write_file`).

Parent folders are created only when there is something to write, and removed again if the
write fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from towerjax.checks import InputError

__all__ = [
    "check_output",
    "output_problem",
    "replacing_folder",
    "unwritable",
    "write_file",
    "write_files",
]


def output_problem(path: str | os.PathLike, *, folder: bool) -> str | None:
    """Why towerjax cannot write the folder (``folder=True``) or file ``path``, or ``None``.

    Nothing is created: the nearest existing folder on the way to ``path`` must be a folder
    in which files can be created (checked by creating and removing an empty probe folder),
    and ``path`` itself, if it exists, a folder (``folder=True``) or not a folder.
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            return f"{str(path)!r} is a file, expected a folder"
        if not folder and path.is_dir():
            return f"{str(path)!r} is a folder, expected a file"
    nearest = path.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent
    if not nearest.is_dir():
        return f"cannot write {str(path)!r}: {str(nearest)!r} is a file, not a folder"
    probes = [nearest] + ([path] if folder and path.is_dir() else [])
    for where in probes:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".towerjax-write-test-", dir=where))
        except OSError as err:
            return (
                f"cannot write {str(path)!r}: cannot create files in {str(where)!r} ({err.strerror or err})"
            )
    return None


def check_output(
    path: str | os.PathLike, *, argument: str, folder: bool, overwrite: bool | None = None
) -> Path:
    """``path`` as a place towerjax can write to, or :class:`~towerjax.checks.InputError` naming
    ``argument`` (:func:`output_problem`). With ``overwrite=False`` a non-empty folder is refused
    too (the message says ``overwrite=True``; the command line shows its flag). Creates nothing."""
    path = Path(path)
    problem = output_problem(path, folder=folder)
    if problem:
        raise InputError(argument, problem)
    if folder and overwrite is False and path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            listed = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise InputError(
                argument, f"{path} is not empty ({listed}); pass overwrite=True to replace what is there"
            )
    return path


def _sibling(path: Path, what: str) -> Path:
    """A hidden, unused name beside ``path``: ``.NAME.WHAT-xxxxxxxx``."""
    return path.parent / f".{path.name}.{what}-{uuid.uuid4().hex[:8]}"


def _make_parents(folder: Path) -> list[Path]:
    """Creates ``folder`` and its missing parents; returns those created, outermost first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for each in missing:
        each.mkdir(exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Removes the folders :func:`_make_parents` created, innermost first, where still empty."""
    for each in reversed(folders):
        with contextlib.suppress(OSError):
            each.rmdir()


def _rename(source: Path, target: Path) -> None:
    """``os.replace``: atomic on one filesystem (a seam for the interrupted-write tests)."""
    os.replace(source, target)


@contextlib.contextmanager
def replacing_folder(
    path: str | os.PathLike,
    *,
    argument: str,
    overwrite: bool,
    own: Iterable[str] = (),
    marker: str | None = None,
) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``path`` to write into; on success it becomes ``path``.

    Checked first (:func:`check_output`: a non-empty ``path`` needs ``overwrite``). On an
    exception (an error, Ctrl-C) the temporary folder is removed and ``path`` is as it was.
    Replacing an existing ``path``: when it holds only names in ``own`` (what this writer
    writes), the new folder is renamed into its place and the old one removed; when it also
    holds other files, those are kept and only the writer's files are replaced, the old
    ``marker`` (the file that makes the folder loadable) removed first and the new one
    renamed in last.

    Raises:
      InputError: naming ``argument``, for a path that cannot be written or a non-empty one
        without ``overwrite``.
    """
    path = check_output(path, argument=argument, folder=True, overwrite=overwrite)
    path = path.resolve() if path.is_symlink() else path.absolute()  # "." has a name and a parent
    created = _make_parents(path.parent)
    staging = _sibling(path, "partial")
    try:
        staging.mkdir()
        yield staging
        _swap_in(staging, path, set(own), marker)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise


def _swap_in(staging: Path, path: Path, own: set[str], marker: str | None) -> None:
    """Puts the finished folder ``staging`` in place of ``path`` (see :func:`replacing_folder`);
    an exception part-way puts the old contents back."""
    if not path.exists():
        _rename(staging, path)
        return
    backup = _sibling(path, "old")
    if all(entry.name in own for entry in path.iterdir()):
        _rename(path, backup)
        try:
            _rename(staging, path)
        except BaseException:
            _rename(backup, path)
            raise
        shutil.rmtree(backup, ignore_errors=True)
        return
    backup.mkdir()
    last = [marker] if marker else []
    old = sorted((p.name for p in path.iterdir() if p.name in own), key=lambda n: n not in last)
    new = sorted((p.name for p in staging.iterdir()), key=lambda n: n in last)
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in old:
            _rename(path / name, backup / name)
            moved_out.append(name)
        for name in new:
            _rename(staging / name, path / name)
            moved_in.append(name)
    except BaseException:
        for name in moved_in:
            _rename(path / name, staging / name)
        for name in moved_out:
            _rename(backup / name, path / name)
        shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    staging.rmdir()


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """Writes each ``{name: bytes}`` into ``folder``, flushed to disk."""
    for name, content in files.items():
        with open(folder / name, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())


def write_file(
    path: str | os.PathLike, write: bytes | str | Callable[[Path], None], *, argument: str
) -> Path:
    """Writes the file ``path``: ``write`` is its content, or a function that writes a given
    path (same ending as ``path``, e.g. a figure's ``savefig``). The file is written beside
    ``path`` under a hidden name and renamed over it, so a failed write leaves any old file.

    Raises:
      InputError: naming ``argument`` (:func:`check_output`, or the error of the write).
    """
    path = check_output(path, argument=argument, folder=False)
    created = _make_parents(path.parent)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial{''.join(path.suffixes[-1:])}"
    try:
        if callable(write):
            write(temporary)
        else:
            temporary.write_bytes(write.encode() if isinstance(write, str) else write)
        _rename(temporary, path)
    except OSError as err:
        raise InputError(argument, f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        temporary.unlink(missing_ok=True)
        if not path.exists():
            _remove_empty(created)
    return path


def unwritable(path: Path) -> str | None:
    """Creates the folder ``path`` if need be and checks that files can be made in it: ``None``
    when that works, else why not. For folders a run fills as it goes (the studies' resumable
    folders); a writer of a finished result uses :func:`check_output` instead."""
    problem = output_problem(path, folder=True)
    if problem:
        return problem
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot write to {str(path)!r} ({err.strerror or err})"
    return None
