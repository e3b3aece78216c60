"""Moving inbox entries out of the way (rejected/, processed/) or into a holding folder.

Moves are renames of the entry itself: a symbolic link moves as a link and is never read through,
so moving aside a link to ``/etc/passwd`` touches neither the target nor its content. The derived
name is built by :func:`safe_name`, so a 255-byte original name still fits once prefixed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

from event_pipeline.files import private_dir, write_private_text
from event_pipeline.inbox.manifest import manifest_path
from event_pipeline.inbox.names import safe_name

REASON_SUFFIX = ".reason.txt"
# An entry moved aside is named "<stamp>-<8 hex>-<safe original name>".
_STAMP = "%Y%m%dT%H%M%SZ"
_ASIDE_NAME = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)-[0-9a-f]{8}-(?P<name>.+)")


def _rename(src: Path, dst: Path) -> None:
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Another file system: shutil.move copies links as links and folders with symlinks=True.
        shutil.move(os.fspath(src), os.fspath(dst))


def _sidecar(src: Path) -> Path | None:
    side = manifest_path(src)
    try:
        return side if stat.S_ISREG(os.lstat(side).st_mode) else None
    except OSError:
        return None


def _move_with_sidecar(src: Path, target: Path) -> None:
    """Sidecar first, then the entry; if the entry can't move, put the sidecar back, so a failure
    leaves both where they were and the caller's OSError is the whole story."""
    side = _sidecar(src)
    side_target = manifest_path(target)
    if side is not None:
        _rename(side, side_target)
    try:
        _rename(src, target)
    except OSError:
        if side is not None:
            with contextlib.suppress(OSError):
                _rename(side_target, side)
        raise


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def move_aside(
    src: Path, folder: Path, *, name_hint: str, reason: str | None = None, now: datetime | None = None
) -> Path:
    """Move ``src`` (file, link or folder) into ``folder`` under a fresh, unique, safe name.

    The reason file is written before the move, so whoever finds the entry also finds why.
    Raises ``OSError`` when the entry cannot be moved; nothing is left behind then.
    """
    private_dir(folder)
    stamp = _utc(now).strftime(_STAMP)
    base = safe_name(name_hint)
    while True:
        target = folder / f"{stamp}-{secrets.token_hex(4)}-{base}"
        if not os.path.lexists(target):
            break
    reason_file = target.with_name(target.name + REASON_SUFFIX)
    if reason is not None:
        write_private_text(reason_file, reason.rstrip("\n") + "\n")
    try:
        _move_with_sidecar(src, target)
    except OSError:
        if reason is not None:
            with contextlib.suppress(OSError):
                reason_file.unlink()
        raise
    return target


def parse_aside_name(name: str) -> tuple[datetime, str] | None:
    """(when, original name) of an entry ``move_aside`` named; None for any other name."""
    match = _ASIDE_NAME.fullmatch(name)
    if match is None:
        return None
    at = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    return at, match["name"]


def hold(src: Path, folder: Path, *, stem: str, suffix: str) -> Path:
    """Move ``src`` into ``folder`` as ``<stem><suffix>`` (``-2``, ``-3``… if taken); returns the target."""
    if not stem or stem in (".", "..") or "/" in stem or "\0" in stem:
        raise ValueError(f"stem must be a plain file name, not {stem!r}")
    if "/" in suffix or "\0" in suffix:
        raise ValueError(f"suffix must not contain a path separator: {suffix!r}")
    private_dir(folder)
    target = folder / f"{stem}{suffix}"
    n = 1
    while os.path.lexists(target) or os.path.lexists(manifest_path(target)):
        n += 1
        target = folder / f"{stem}-{n}{suffix}"
    _move_with_sidecar(src, target)
    return target


__all__ = ["REASON_SUFFIX", "hold", "move_aside", "parse_aside_name"]
