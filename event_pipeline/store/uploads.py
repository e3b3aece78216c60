"""Uploads: one row per distinct file content per event; its id is the Dagster partition key."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import dialect_insert, is_postgres
from event_pipeline.store.tables import uploads, uploads_seq

# "undone": `event-pipeline undo` took a done upload back (store/changes.py); it is never resumed.
TERMINAL_STATUSES = ("done", "rejected", "failed", "undone")


@dataclass(frozen=True)
class Upload:
    id: str
    event_id: int
    sha256: str
    original_name: str
    inbox_path: str | None
    stored_path: str
    size_bytes: int
    strict: bool
    status: str
    reason: str | None
    format: str | None
    encoding: str | None
    rows_in_file: int | None
    empty_rows: int | None
    rejected_rows: int | None
    duplicates_in_file: int | None
    loaded_new: int | None
    updated: int | None
    unchanged: int | None
    error_report_path: str | None
    created_at: datetime
    finished_at: datetime | None
    seq: int  # registration order across all uploads: newer upload, larger seq
    original_path: str | None  # the organiser's file: received/, then processed/ or rejected/
    mail_note: str | None  # why mail about this upload is held back, if it is
    undone_at: datetime | None = None  # set by `undo`, with status "undone"
    undo_summary: str | None = None  # JSON counts of what the undo did

    def counts(self) -> dict[str, int]:
        """The terms of DESIGN.md's invariant; unknown (not yet counted) reads as 0."""
        return {
            "rows_in_file": self.rows_in_file or 0,
            "loaded_new": self.loaded_new or 0,
            "updated": self.updated or 0,
            "unchanged": self.unchanged or 0,
            "duplicates_in_file": self.duplicates_in_file or 0,
            "rejected": self.rejected_rows or 0,
        }


_FIELDS = [f.name for f in fields(Upload)]


def upload_id_for(event_slug: str, sha256: str) -> str:
    return f"{event_slug}-{sha256[:16]}"


def _to_upload(row: sa.Row[tuple[object, ...]]) -> Upload:
    return Upload(**{k: row._mapping[k] for k in _FIELDS})


def register_upload(
    engine: Engine,
    *,
    upload_id: str,
    event_id: int,
    sha256: str,
    original_name: str,
    stored_path: str,
    size_bytes: int,
    inbox_path: str | None = None,
    original_path: str | None = None,
    strict: bool = False,
) -> tuple[Upload, bool]:
    """Insert the upload if its (event, content) is new. Returns (upload, created).

    The new row gets the next ``seq`` inside the same transaction, so registration order is
    the order in which later loads let one upload's values win over another's.
    """
    values: dict[str, Any] = dict(
        id=upload_id,
        event_id=event_id,
        sha256=sha256,
        original_name=original_name[:255],
        inbox_path=inbox_path,
        original_path=original_path,
        stored_path=stored_path,
        size_bytes=size_bytes,
        strict=strict,
        created_at=datetime.now(UTC),
    )
    with engine.begin() as conn:
        # PostgreSQL: nextval, safe under concurrent registrations (a skipped duplicate burns a
        # number; gaps are fine, only the order matters). SQLite: MAX+1 is safe because the
        # transaction began IMMEDIATE, so no other writer runs between the read and the insert.
        if is_postgres(conn):
            values["seq"] = uploads_seq.next_value()
        else:
            values["seq"] = sa.select(sa.func.coalesce(sa.func.max(uploads.c.seq), 0) + 1).scalar_subquery()
        # rowcount is reliable on both backends: make_engine sets preserve_rowcount.
        result = conn.execute(dialect_insert(conn)(uploads).values(**values).on_conflict_do_nothing())
        upload = find_by_sha(conn, event_id, sha256)
    assert upload is not None  # just inserted, or there already
    return upload, result.rowcount == 1


def get_upload(conn: sa.Connection, upload_id: str) -> Upload | None:
    row = conn.execute(sa.select(uploads).where(uploads.c.id == upload_id)).first()
    return _to_upload(row) if row is not None else None


def find_by_sha(conn: sa.Connection, event_id: int, sha256: str) -> Upload | None:
    row = conn.execute(sa.select(uploads).where(uploads.c.event_id == event_id, uploads.c.sha256 == sha256)).first()
    return _to_upload(row) if row is not None else None


def update_upload(engine: Engine | sa.Connection, upload_id: str, **values: Any) -> None:
    unknown = set(values) - set(_FIELDS)
    if unknown:
        raise ValueError(f"unknown upload fields: {sorted(unknown)}")
    if "seq" in values:
        # The order newer-data-wins relies on is fixed at registration.
        raise ValueError("an upload's seq is assigned by register_upload and never changed")
    if values.get("status") in TERMINAL_STATUSES and "finished_at" not in values:
        values["finished_at"] = datetime.now(UTC)
    stmt = sa.update(uploads).where(uploads.c.id == upload_id).values(**values)
    if isinstance(engine, sa.Connection):
        engine.execute(stmt)
    else:
        with engine.begin() as conn:
            conn.execute(stmt)


def newer_uploads_exist(conn: sa.Connection, event_id: int, seq: int) -> bool:
    """Whether ``event_id`` has an upload registered after the one numbered ``seq``."""
    newer = sa.select(uploads.c.id).where(uploads.c.event_id == event_id, uploads.c.seq > seq)
    return bool(conn.execute(sa.select(sa.exists(newer))).scalar_one())


def list_uploads(conn: sa.Connection, *, event_id: int | None = None, limit: int = 50) -> list[Upload]:
    """Newest registration first."""
    stmt = sa.select(uploads).order_by(uploads.c.seq.desc()).limit(limit)
    if event_id is not None:
        stmt = stmt.where(uploads.c.event_id == event_id)
    return [_to_upload(r) for r in conn.execute(stmt)]


def count_by_status(conn: sa.Connection) -> dict[str, int]:
    """How many uploads are in each status."""
    stmt = sa.select(uploads.c.status, sa.func.count()).group_by(uploads.c.status)
    return {str(status): int(n) for status, n in conn.execute(stmt)}


def original_paths_among(conn: sa.Connection, candidates: list[str]) -> set[str]:
    """Which of these paths are where some upload's original now lies."""
    found: set[str] = set()
    for start in range(0, len(candidates), 500):  # bounded IN lists on both backends
        chunk = candidates[start : start + 500]
        stmt = sa.select(uploads.c.original_path).where(uploads.c.original_path.in_(chunk))
        found.update(conn.execute(stmt).scalars())
    return found


UNFINISHED_STATUSES = ("received", "running", "failed")


def unfinished_uploads(conn: sa.Connection, *, registered_before: datetime) -> list[Upload]:
    """Uploads whose import has not ended well (and was not refused for its content), oldest first."""
    stmt = (
        sa.select(uploads)
        .where(uploads.c.status.in_(UNFINISHED_STATUSES), uploads.c.created_at < registered_before)
        .order_by(uploads.c.seq)
    )
    return [_to_upload(r) for r in conn.execute(stmt)]
