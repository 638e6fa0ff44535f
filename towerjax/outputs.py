"""Output folders: checks that a folder towerjax writes results into can be written.

A run checks its output folder before any work (:func:`unwritable`), so a typo or a read-only
path fails in a second rather than after training.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["unwritable"]


def unwritable(path: Path) -> str | None:
    """Creates the folder ``path`` if need be and writes a probe file into it: ``None`` when
    that works, else why not (``"cannot write to '...' (Permission denied)"``)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".towerjax-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        return f"cannot write to {str(path)!r} ({err.strerror or err})"
    return None
