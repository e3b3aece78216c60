"""List the watched folder without ever following a link and without one bad entry sinking the rest.

The inbox is written by organisers' tools we do not control, so any name and any kind of entry can
show up. Everything here uses ``lstat`` semantics: a symbolic link is reported, never read through,
so a link to ``/etc/passwd`` or to another event's folder can't smuggle a file into an import.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Editors and browsers write these while a file is still being saved or downloaded; manifests and
# reason files are our own sidecars, not imports.
IGNORED_PATTERNS = (".*", "~$*", "*.part", "*.tmp", "*.crdownload", "*.download", "*.json", "*.reason.txt")

# Failures that say something about us (or a file that just vanished), not about the entry.
_TRANSIENT = frozenset({errno.ENOENT, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR})
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)

_REASONS = {
    "symlink": "it is a symbolic link; links are never followed. Copy the file itself into the folder.",
    "folder": "it is a folder; only files directly inside the event folder are imported. Move the files up one level.",
    "fifo": "it is a named pipe (FIFO), not a file. Copy a regular file into the folder.",
    "socket": "it is a socket, not a file. Copy a regular file into the folder.",
    "device": "it is a device node, not a file. Copy a regular file into the folder.",
    "unreadable": "it cannot be opened for reading. Check its permissions, or copy it in again.",
    "other": "it is not a regular file. Copy a regular file into the folder.",
}
_TOP_SYMLINK = (
    "it is a symbolic link directly in the inbox; links are never followed. "
    "Create a real folder named after the event and copy the files into it."
)
_TOP_FILE = "it is directly in the inbox, not in an event folder. Move it into inbox/<event-slug>/."


def is_ignored(name: str) -> bool:
    # Case-insensitive: Windows tools write ``.TMP`` and ``.PART`` too, and importing half a file is worse.
    lowered = name.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern) for pattern in IGNORED_PATTERNS)


@dataclass(frozen=True)
class Candidate:
    """A regular file directly inside ``inbox/<folder>/``, as it was when listed."""

    folder: str
    path: Path
    size: int
    mtime_ns: int
    dev: int
    ino: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def fingerprint(self) -> str:
        # The inode is part of it so that a file replaced by another of equal size and mtime
        # (``cp -p``, ``rsync -t``) still counts as a change.
        return f"{self.dev}:{self.ino}:{self.size}:{self.mtime_ns}"


@dataclass(frozen=True)
class Misfit:
    """An entry that can never be imported as it is; ``reason`` is for the organiser."""

    folder: str | None
    path: Path
    kind: str
    reason: str


@dataclass(frozen=True)
class Listing:
    candidates: list[Candidate]
    misfits: list[Misfit]
    problems: list[str]


class ChangedUnderfoot(OSError):
    """The file at a candidate's path is no longer the one that was listed (or changed while read)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{show(path)} changed after it was listed")
        self.filename = os.fspath(path)
        self.path = path


def show(path: Path | str) -> str:
    """A one-line, printable rendering of any path (newlines, undecodable bytes) for logs."""
    return ascii(os.fspath(path))


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _entries(folder: Path | str, problems: list[str]) -> list[tuple[os.DirEntry[str], os.stat_result]]:
    """Entries of ``folder`` with their lstat, sorted by name; failures become ``problems``."""
    found: list[tuple[os.DirEntry[str], os.stat_result]] = []
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        problems.append(f"cannot list {show(folder)}: {exc.strerror or exc}")
        return found
    for entry in entries:
        if is_ignored(entry.name):
            continue
        try:
            found.append((entry, entry.stat(follow_symlinks=False)))
        except OSError as exc:
            problems.append(f"cannot lstat {show(entry.path)}: {exc.strerror or exc}")
    # Byte order of the on-disk name: deterministic whatever the names decode to.
    found.sort(key=lambda pair: os.fsencode(pair[0].name))
    return found


def _readable(path: str) -> str | None:
    """None if the file opens for reading without following a link, else the misfit kind."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in _TRANSIENT:
            raise
        if exc.errno == errno.ELOOP:
            return "symlink"  # swapped for a link since it was listed
        return "unreadable"
    os.close(fd)
    return None


def list_inbox(inbox: Path) -> Listing:
    """Every event folder's candidates and misfits. A missing inbox is simply empty.

    ``inbox`` itself is the operator's configured folder and may be a link; nothing below it is followed.
    """
    candidates: list[Candidate] = []
    misfits: list[Misfit] = []
    problems: list[str] = []
    if not os.path.lexists(inbox):
        return Listing(candidates, misfits, problems)
    for top, top_st in _entries(inbox, problems):
        top_kind = _kind(top_st.st_mode)
        if top_kind == "symlink":
            misfits.append(Misfit(None, Path(top.path), "symlink", _TOP_SYMLINK))
            continue
        if top_kind != "folder":
            detail = "" if top_kind == "file" else f" (it is a {_kind_word(top_kind)}, not a file)"
            misfits.append(Misfit(None, Path(top.path), "file_at_top", _TOP_FILE + detail))
            continue
        for entry, st in _entries(top.path, problems):
            path = Path(entry.path)
            kind = _kind(st.st_mode)
            if kind == "file":
                try:
                    opened = _readable(entry.path)
                except OSError as exc:
                    problems.append(f"cannot open {show(path)}: {exc.strerror or exc}")
                    continue
                if opened is None:
                    candidates.append(Candidate(top.name, path, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino))
                    continue
                kind = opened
            misfits.append(Misfit(top.name, path, kind, _REASONS[kind]))
    return Listing(candidates, misfits, problems)


def _kind_word(kind: str) -> str:
    return {"fifo": "named pipe", "device": "device node"}.get(kind, kind if kind != "other" else "special entry")


def _same(st: os.stat_result, c: Candidate) -> bool:
    return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
        c.dev,
        c.ino,
        c.size,
        c.mtime_ns,
    )


def still_same(c: Candidate) -> bool:
    """Is the path still the very file that was listed? Never raises."""
    try:
        return _same(os.lstat(c.path), c)
    except OSError:
        return False


def hash_candidate(c: Candidate, *, chunk: int = 1024 * 1024) -> str:
    """sha256 of exactly the listed file: checked by fd before reading and again after, so a file
    swapped, linked or still growing raises ``ChangedUnderfoot`` instead of hashing something else."""
    try:
        fd = os.open(c.path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ChangedUnderfoot(c.path) from None
        raise
    try:
        if not _same(os.fstat(fd), c):
            raise ChangedUnderfoot(c.path)
        digest = hashlib.sha256()
        read = 0
        while block := os.read(fd, chunk):
            digest.update(block)
            read += len(block)
        if read != c.size or not _same(os.fstat(fd), c):
            raise ChangedUnderfoot(c.path)
    finally:
        os.close(fd)
    return digest.hexdigest()


__all__ = [
    "IGNORED_PATTERNS",
    "Candidate",
    "ChangedUnderfoot",
    "Listing",
    "Misfit",
    "hash_candidate",
    "is_ignored",
    "list_inbox",
    "show",
    "still_same",
]
