"""The embedded default's outbox: messages appended to mbox files, exactly once across a crash.

One file per day (``outbox/2026-12-01.mbox``; a second dispatcher running at the same time
writes ``2026-12-01.2.mbox``), readable by the ``mailbox`` module, mutt or Thunderbird. It
replaced one ``.eml`` file per message, whose temp-file + write + rename was most of the cost of
mailing a big upload (577k files).

Exactly once: every message is appended with one ``write``; when the dispatcher records a batch
of outcomes it also records, in the same transaction, the file length that covers exactly those
messages (``checkpoint``). Appends complete in the order their outcomes are recorded because
the outbox sends from one thread (``max_workers``). A dispatcher that dies leaves bytes past the
committed length whose deliveries are still ``sending``; the next dispatcher to open the outbox
cuts them off before those deliveries are sent again. A file is only ever cut by whoever holds
its ``flock``, so a live writer's file is never touched.
"""

from __future__ import annotations

import fcntl
import logging
import mailbox
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.files import private_dir
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.mime import mime_bytes
from event_pipeline.mail.senders import SendResult
from event_pipeline.store import outbox_files

log = logging.getLogger(__name__)

SUFFIX = ".mbox"


class MboxOutbox:
    name = "outbox"
    # A crash repeats nothing visible (the uncommitted tail is cut off), so the dispatcher may
    # claim and record in big batches.
    idempotent = True
    max_workers = 1

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._file: str | None = None
        self._length = 0
        self._ends: dict[int, int] = {}

    @property
    def current_file(self) -> Path | None:
        return self.directory / self._file if self._file else None

    def open(self, engine: Engine) -> None:
        """Cut the uncommitted tail off every file no live writer holds, then take one for us."""
        if self._fd is not None:
            return
        private_dir(self.directory)
        with engine.connect() as conn:
            for path in sorted(self.directory.glob(f"*{SUFFIX}")):
                fd = _locked(path, create=False)
                if fd is not None:
                    _cut_to_committed(conn, fd, path)
                    os.close(fd)  # releases the lock; we choose our own file below
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            for n in range(1, 1000):
                path = self.directory / (f"{day}{SUFFIX}" if n == 1 else f"{day}.{n}{SUFFIX}")
                fd = _locked(path, create=True)
                if fd is None:
                    continue  # another dispatcher is writing this one
                self._length = _cut_to_committed(conn, fd, path)
                self._fd, self._file = fd, path.name
                return
        raise RuntimeError(f"no free outbox file for {day} in {self.directory}")

    def send(self, message: OutgoingMessage) -> SendResult:
        if self._fd is None:
            raise RuntimeError("outbox used before open()")
        separator = b"From MAILER-DAEMON " + time.asctime(time.gmtime()).encode("ascii") + b"\n"
        data = separator + mime_bytes(message) + b"\n"
        written = os.write(self._fd, data)  # the whole message in one write, at the end (O_APPEND)
        if written != len(data):  # disk full: leave no half message for the next one to follow
            os.ftruncate(self._fd, self._length)
            raise OSError(f"outbox {self._file}: short write ({written} of {len(data)} bytes)")
        self._length += len(data)
        delivery_id = message.custom_args.get("delivery_id")
        if delivery_id is not None:
            self._ends[int(delivery_id)] = self._length
        return SendResult(message_id=f"{self._file}@{self._length - len(data)}")

    def sync(self) -> None:
        """What the database is about to say is in the file must survive a power cut. Done before
        the outcomes' transaction, not in it: an fsync inside would hold the database's write
        lock (all of it, on SQLite) while the disk works, and other dispatchers would queue."""
        if self._fd is not None:
            os.fsync(self._fd)

    def checkpoint(self, conn: sa.Connection, delivery_ids: Sequence[int]) -> None:
        ends = [self._ends.pop(d) for d in delivery_ids if d in self._ends]
        if ends and self._file is not None:
            outbox_files.set_committed_bytes(conn, self._file, max(ends))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._file, self._ends = None, None, {}


def _locked(path: Path, *, create: bool) -> int | None:
    flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # replaced (erasure rewrites a file by rename) between our open and our lock
        os.close(fd)
        return None
    return fd


def _cut_to_committed(conn: sa.Connection, fd: int, path: Path) -> int:
    committed = outbox_files.committed_bytes(conn, path.name) or 0
    size = os.fstat(fd).st_size
    if size > committed:
        # Messages a dead dispatcher wrote but never recorded: their deliveries are still
        # `sending` and will be sent again, so keeping these bytes would deliver them twice.
        os.ftruncate(fd, committed)
        log.warning("outbox %s: cut %d uncommitted bytes left by an interrupted dispatch", path.name, size - committed)
        return committed
    return size


def outbox_messages(directory: Path, kind: str | None = None) -> Iterator[Message]:
    """Every message in the outbox (oldest file first), or those of one delivery ``kind``."""
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        box = mailbox.mbox(path, create=False)
        try:
            for message in box:
                if kind is None or message.get("X-Event-Pipeline-Kind") == kind:
                    yield message
        finally:
            box.close()
