"""Wheels from the package registry as dataset archives, and the files read out of them.

Two public datasets ship inside Python wheels: the Open Bandit Dataset's small sample in
``obp`` and MovieLens-100K (as RecBole atomic files) in ``recbole``. Fetching such a wheel
runs ``python -m pip download --no-deps`` in a subprocess (the package is never installed
or imported), checks the wheel's sha256 against a pinned constant and copies it into a
cache directory; later calls read the cached wheel without pip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

__all__ = [
    "OBP_WHEEL",
    "RECBOLE_WHEEL",
    "ChecksumError",
    "DatasetFileError",
    "FetchError",
    "WheelSpec",
    "default_cache_dir",
    "fetch_wheel",
    "sha256_of",
]


class DatasetFileError(ValueError):
    """A dataset file is missing, unreadable or malformed; the message names the file."""


class ChecksumError(DatasetFileError):
    """A wheel's sha256 differs from the pinned value; the message names the file."""


class FetchError(RuntimeError):
    """``pip download`` could not fetch a wheel (for example, the package registry is unreachable)."""


@dataclasses.dataclass(frozen=True)
class WheelSpec:
    """A pinned wheel: distribution ``name``, ``version`` and the sha256 of its wheel file."""

    name: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        """The file name of a pure-Python wheel of this release."""
        return f"{_normalise(self.name)}-{self.version}-py3-none-any.whl"


#: Open Bandit Pipeline 0.4.1: its wheel carries the Open Bandit Dataset small sample.
OBP_WHEEL = WheelSpec("obp", "0.4.1", "87dec9caf4283c25ab13036532e0a24566f1c7bdcad1653a8ded43b2f5ef8208")
#: RecBole 1.2.1: its wheel carries MovieLens-100K as RecBole atomic files.
RECBOLE_WHEEL = WheelSpec(
    "recbole", "1.2.1", "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
)


def default_cache_dir() -> Path:
    """``$TOWERJAX_CACHE``, else ``$XDG_CACHE_HOME/towerjax``, else ``~/.cache/towerjax``."""
    explicit = os.environ.get("TOWERJAX_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "towerjax"
    return Path.home() / ".cache" / "towerjax"


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(
    name: str,
    version: str,
    sha256: str,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Returns the path of the cached wheel ``name==version``, downloading it on first use.

    A wheel already in ``cache_dir`` (default :func:`default_cache_dir`) is checked
    against ``sha256`` and returned without running pip. Otherwise
    ``sys.executable -m pip download --no-deps --only-binary=:all: name==version`` runs in
    a subprocess into a temporary directory; the downloaded wheel is checked and copied
    into the cache (atomically, so an interrupted copy never leaves a partial wheel).

    Raises:
      FetchError: pip failed (registry unreachable, no such release, no wheel); the
        message names the package and how to place the wheel in the cache by hand.
      ChecksumError: the downloaded or cached wheel's sha256 is not ``sha256``; the
        message names the file.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cached = _find_cached(cache, name, version)
    if cached is not None:
        _verify(cached, name, version, sha256)
        return cached

    with tempfile.TemporaryDirectory(prefix="towerjax-wheel-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            f"{name}=={version}",
            "-d",
            tmp,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
            returncode, detail = done.returncode, (done.stderr or done.stdout or "").strip()
        except (OSError, subprocess.SubprocessError) as err:
            returncode, detail = None, f"{type(err).__name__}: {err}"
        if returncode != 0:
            raise FetchError(_fetch_failure(name, version, cache, returncode, detail))
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise FetchError(
                _fetch_failure(name, version, cache, returncode, "pip finished but left no .whl file")
            )
        downloaded = wheels[0]
        _verify(downloaded, name, version, sha256)
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / downloaded.name
        partial = cache / f".{downloaded.name}.{os.getpid()}.partial"
        shutil.copyfile(downloaded, partial)
        os.replace(partial, target)
    return target


def _normalise(name: str) -> str:
    """A distribution name as it appears in a wheel's file name."""
    return name.replace("-", "_").replace(".", "_").lower()


def _find_cached(cache: Path, name: str, version: str) -> Path | None:
    if not cache.is_dir():
        return None
    prefix = f"{_normalise(name)}-{version}-"
    matches = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(prefix))
    return matches[0] if matches else None


def _verify(path: Path, name: str, version: str, sha256: str) -> None:
    got = sha256_of(path)
    if got != sha256.lower():
        raise ChecksumError(
            f"{path}: sha256 {got} does not match the pinned {sha256} for {name}=={version}; "
            "the file is corrupt or a different build. Delete it and fetch again."
        )


def _fetch_failure(name: str, version: str, cache: Path, returncode: int | None, detail: str) -> str:
    tail = "\n".join(detail.splitlines()[-8:])
    status = "could not start" if returncode is None else f"exited with status {returncode}"
    return (
        f"could not download the wheel of {name}=={version}: pip {status}.\n{tail}\n"
        f"If the package registry is unreachable from here, fetch the wheel on another machine "
        f"with `pip download --no-deps {name}=={version}` and copy the .whl file into {cache} "
        f"(or set TOWERJAX_CACHE to the directory holding it), or pass its path as `wheel=`."
    )


class _Source:
    """Reads members from a wheel (zip) or from a directory of extracted files.

    For a directory, a member ``a/b/c/file`` is looked up as ``a/b/c/file``, ``b/c/file``,
    ... down to its last ``keep`` components, so the directory may be the root of an
    extracted wheel or a folder deeper inside it.
    """

    def __init__(self, path: str | os.PathLike[str], what: str):
        self.path = Path(path).expanduser()
        self.what = what
        if self.path.is_dir():
            self._zip = None
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as err:
                raise DatasetFileError(
                    f"{self.path}: not a readable wheel (zip) file ({err}); expected the {what}. "
                    "Delete it and fetch again."
                ) from None
        else:
            raise DatasetFileError(f"{self.path}: no such file or directory (expected the {what})")

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def read(self, member: str, *, keep: int = 1) -> tuple[str, str]:
        """``(text, where)``: the UTF-8 text of ``member`` and how messages name its file.

        Raises ``DatasetFileError`` naming the file if the member is absent or corrupt.
        """
        if self._zip is not None:
            where = f"{self.path}!{member}"
            try:
                data = self._zip.read(member)
            except KeyError:
                raise DatasetFileError(
                    f"{self.path}: has no member {member!r} (expected the {self.what})"
                ) from None
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as err:
                raise DatasetFileError(f"{where}: corrupt member in wheel ({err})") from None
        else:
            parts = member.split("/")
            candidates = [self.path.joinpath(*parts[i:]) for i in range(len(parts) - keep + 1)]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise DatasetFileError(
                    f"{self.path}: has no file {'/'.join(parts[-keep:])!r} "
                    f"(looked for {member!r} and its trailing parts; expected the {self.what})"
                )
            where = str(found)
            try:
                data = found.read_bytes()
            except OSError as err:
                raise DatasetFileError(f"{where}: cannot be read ({err})") from None
        try:
            return data.decode("utf-8-sig"), where
        except UnicodeDecodeError as err:
            raise DatasetFileError(f"{where}: not UTF-8 text ({err})") from None
