"""Private files: everything the project writes may hold participant data or working tokens.

Files are created 0600 and folders 0700 whatever the process umask is, and files are written
atomically (temp file in the same folder, then rename), so a reader or a crash never sees half
of one. This is the one place that knows how; every writer in the project goes through it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 folders; an existing folder is tightened too."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=DIR_MODE)
        os.chmod(folder, DIR_MODE)
    if path.is_dir() and not path.is_symlink() and (path.stat().st_mode & 0o777) != DIR_MODE:
        with contextlib.suppress(PermissionError):
            os.chmod(path, DIR_MODE)
    return path


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Open a 0600 temp file beside ``path``; on success it replaces ``path`` in one rename."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:100]}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            # On disk before the rename: these files are the data plane, not a cache.
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes) -> Path:
    with atomic_writer(path) as fh:
        fh.write(data)
    return path


def write_private_text(path: Path, text: str) -> Path:
    return write_private(path, text.encode("utf-8"))


def copy_private(source: BinaryIO, target: Path, *, chunk: int = 1024 * 1024) -> int:
    """Copy an open binary stream into ``target`` atomically (0600); returns bytes copied."""
    copied = 0
    with atomic_writer(target) as out:
        while block := source.read(chunk):
            out.write(block)
            copied += len(block)
    return copied


def copy_file_private(source: Path, target: Path) -> int:
    with source.open("rb") as fh:
        return copy_private(fh, target)


def make_private(path: Path) -> None:
    """Tighten a file another library created (SQLite's database, a Parquet writer's output)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)


def touch_private(path: Path) -> None:
    """Create an empty 0600 file if none exists, so a library opening it later keeps the mode."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    make_private(path)


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "atomic_writer",
    "copy_file_private",
    "copy_private",
    "make_private",
    "private_dir",
    "touch_private",
    "write_private",
    "write_private_text",
]
