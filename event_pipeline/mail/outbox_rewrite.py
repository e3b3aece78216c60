"""Taking messages out of (or changing them in) the outbox's mbox files, for erasure.

Each file is rewritten under its ``flock`` (so no dispatcher is appending to it), after its
uncommitted tail is cut as ``MboxOutbox.open`` would; messages left alone are copied byte for
byte, and the new file replaces the old one in one rename. The committed length is recorded
after the rename: a crash between the two leaves it larger than the file, which the next
dispatcher reads as "nothing uncommitted" and then overwrites with the true length.
"""

from __future__ import annotations

import mailbox
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from event_pipeline.files import atomic_writer
from event_pipeline.mail.outbox import SUFFIX, _cut_to_committed, _locked
from event_pipeline.store import outbox_files

# What to do with one message, given its bytes (its "From " line and trailing blank line
# included): None drops it, other bytes replace it; returning the same object keeps it as it is.
Edit = Callable[[bytes], bytes | None]


class OutboxBusy(RuntimeError):
    """A dispatcher kept an outbox file locked for longer than we wait."""


@dataclass
class RewriteCounts:
    files_rewritten: int = 0
    messages_removed: int = 0
    messages_changed: int = 0
    changed_files: list[str] = field(default_factory=list)


def _segments(path: Path) -> list[tuple[int, int]]:
    """(start, end) of every message, end being the next message's start: separators included,
    so the segments tile the file and copying the kept ones keeps their bytes exactly."""
    box = mailbox.mbox(path, create=False)
    try:
        box.keys()  # builds the table of contents
        # The mailbox module's own offsets (its parser is the reference for what a message is);
        # only the starts are used, each message runs up to the next one's start.
        toc: dict[int, tuple[int, int]] = box._toc  # type: ignore[attr-defined]
        starts = sorted(start for start, _stop in toc.values())
    finally:
        box.close()
    size = path.stat().st_size
    if starts and starts[0] != 0:
        starts.insert(0, 0)  # bytes before the first "From " line: kept as they are
    return list(zip(starts, [*starts[1:], size], strict=True))


def rewrite(engine: Engine, directory: Path, edit: Edit, *, dry_run: bool, wait_s: float = 30.0) -> RewriteCounts:
    counts = RewriteCounts()
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        fd = None if dry_run else _wait_for_lock(path, wait_s)
        if fd is None and not dry_run:
            continue  # gone meanwhile
        try:
            if fd is not None:
                with engine.connect() as conn:
                    _cut_to_committed(conn, fd, path)
            removed, changed, pieces = _plan(path, edit)
            if not removed and not changed:
                continue
            counts.messages_removed += removed
            counts.messages_changed += changed
            counts.files_rewritten += 1
            counts.changed_files.append(path.name)
            if dry_run:
                continue
            length = 0
            with atomic_writer(path) as out, path.open("rb") as source:
                for piece in pieces:
                    if isinstance(piece, bytes):
                        out.write(piece)
                        length += len(piece)
                    else:
                        start, end = piece
                        source.seek(start)
                        out.write(source.read(end - start))
                        length += end - start
            with engine.begin() as conn:
                outbox_files.set_committed_bytes(conn, path.name, length)
        finally:
            if fd is not None:
                os.close(fd)
    return counts


def _plan(path: Path, edit: Edit) -> tuple[int, int, list[bytes | tuple[int, int]]]:
    removed = changed = 0
    pieces: list[bytes | tuple[int, int]] = []
    with path.open("rb") as source:
        for start, end in _segments(path):
            source.seek(start)
            data = source.read(end - start)
            result = edit(data)
            if result is None:
                removed += 1
            elif result is data:
                pieces.append((start, end))
            else:
                changed += 1
                pieces.append(result)
    return removed, changed, pieces


def _wait_for_lock(path: Path, wait_s: float) -> int | None:
    deadline = time.monotonic() + wait_s
    while True:
        if not path.exists():
            return None
        fd = _locked(path, create=False)
        if fd is not None:
            return fd
        if time.monotonic() >= deadline:
            raise OutboxBusy(
                f"outbox file {path.name} is being written by a mail dispatcher; try again when it is idle"
            )
        time.sleep(0.2)
