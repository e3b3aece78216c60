"""SQL of an erasure: finding a person's participant rows, blanking them, the audit line, and
making SQLite forget the old bytes (VACUUM, then the WAL truncated)."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import is_postgres
from event_pipeline.store.tables import (
    access_tokens,
    email_deliveries,
    erasures,
    events,
    participant_changes,
    participants,
    uploads,
)

# Blanked rows keep their id (tokens, deliveries, scans and change history point at it) and get
# an address derived from nothing but that id, so the unique (event, email_norm) still holds.
ERASED_STATUS = "erased"
# An upload in these states is being (or about to be) imported: erasing under it would race its
# load, which would write the person back.
BUSY_STATUSES = ("received", "running")


def placeholder_email(participant_id: int) -> str:
    return f"erased-{participant_id}@invalid"


@dataclass(frozen=True)
class PersonRow:
    """One participant row of the person: what the files are searched for besides the address."""

    id: int
    event_id: int
    name: str
    phone: str


@dataclass(frozen=True)
class BusyUpload:
    id: str
    event_slug: str
    status: str


def event_ids_by_slug(conn: sa.Connection) -> dict[str, int]:
    return {str(slug): int(i) for i, slug in conn.execute(sa.select(events.c.id, events.c.slug))}


def person_rows(conn: sa.Connection, email_norm: str, event_ids: Collection[int] | None) -> list[PersonRow]:
    stmt = sa.select(participants.c.id, participants.c.event_id, participants.c.name, participants.c.phone).where(
        participants.c.email_norm == email_norm
    )
    if event_ids is not None:
        stmt = stmt.where(participants.c.event_id.in_(list(event_ids)))
    return [PersonRow(int(r.id), int(r.event_id), str(r.name), str(r.phone)) for r in conn.execute(stmt)]


def rows_by_id(conn: sa.Connection, participant_ids: Sequence[int]) -> list[tuple[int, int, str]]:
    """(id, event id, email_norm) of these participants that are not erased already."""
    stmt = sa.select(participants.c.id, participants.c.event_id, participants.c.email_norm).where(
        participants.c.id.in_(list(participant_ids)), participants.c.status != ERASED_STATUS
    )
    return [(int(r.id), int(r.event_id), str(r.email_norm)) for r in conn.execute(stmt)]


def busy_uploads(conn: sa.Connection, event_ids: Collection[int] | None) -> list[BusyUpload]:
    stmt = (
        sa.select(uploads.c.id, uploads.c.status, events.c.slug)
        .join(events, events.c.id == uploads.c.event_id)
        .where(uploads.c.status.in_(BUSY_STATUSES))
        .order_by(uploads.c.seq)
    )
    if event_ids is not None:
        stmt = stmt.where(uploads.c.event_id.in_(list(event_ids)))
    return [BusyUpload(str(r.id), str(r.slug), str(r.status)) for r in conn.execute(stmt)]


def upload_rows(conn: sa.Connection, event_ids: Collection[int] | None) -> list[sa.Row[tuple[object, ...]]]:
    """id, event id, status, finished/created times, original and report paths of uploads in scope."""
    stmt = sa.select(
        uploads.c.id,
        uploads.c.event_id,
        uploads.c.status,
        uploads.c.created_at,
        uploads.c.finished_at,
        uploads.c.original_path,
        uploads.c.error_report_path,
        uploads.c.copy_note,
    ).order_by(uploads.c.seq)
    if event_ids is not None:
        stmt = stmt.where(uploads.c.event_id.in_(list(event_ids)))
    return list(conn.execute(stmt))


def add_copy_note(conn: sa.Connection, upload_id: str, note: str) -> None:
    """Append ``note`` to what the upload's row says was removed from its copies."""
    current = conn.execute(sa.select(uploads.c.copy_note).where(uploads.c.id == upload_id)).scalar()
    text = f"{current}; {note}" if current else note
    conn.execute(sa.update(uploads).where(uploads.c.id == upload_id).values(copy_note=text))


def delivery_ids(conn: sa.Connection, participant_ids: Sequence[int]) -> set[int]:
    stmt = sa.select(email_deliveries.c.id).where(email_deliveries.c.participant_id.in_(list(participant_ids)))
    return {int(i) for i in conn.execute(stmt).scalars()}


def count_rows(conn: sa.Connection, participant_ids: Sequence[int]) -> dict[str, int]:
    """What blanking these participants touches, per table (the dry run's numbers)."""
    ids = list(participant_ids)

    def count(table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())

    return {
        "participants": len(ids),
        "tokens_revoked": count(
            access_tokens, access_tokens.c.participant_id.in_(ids), access_tokens.c.status == "live"
        ),
        "change_history_rows": count(participant_changes, participant_changes.c.participant_id.in_(ids)),
        "delivery_errors_cleared": count(
            email_deliveries, email_deliveries.c.participant_id.in_(ids), email_deliveries.c.last_error.is_not(None)
        ),
        "deliveries_kept": count(email_deliveries, email_deliveries.c.participant_id.in_(ids)),
    }


def blank_participants(conn: sa.Connection, participant_ids: Sequence[int]) -> dict[str, int]:
    """Blank the rows, revoke their tokens, drop their change history and scrub delivery errors
    (a provider's bounce reason usually quotes the address). Deliveries stay: they are the counts
    of what was sent; they hold no address of their own."""
    counts = count_rows(conn, participant_ids)
    ids = list(participant_ids)
    now = datetime.now(UTC)
    conn.execute(
        sa.update(access_tokens)
        .where(access_tokens.c.participant_id.in_(ids), access_tokens.c.status == "live")
        .values(status="revoked", revoked_at=now, qr_path=None)
    )
    conn.execute(sa.delete(participant_changes).where(participant_changes.c.participant_id.in_(ids)))
    conn.execute(
        sa.update(email_deliveries)
        .where(email_deliveries.c.participant_id.in_(ids), email_deliveries.c.last_error.is_not(None))
        .values(last_error=None)
    )
    for participant_id in ids:
        conn.execute(
            sa.update(participants)
            .where(participants.c.id == participant_id)
            .values(
                email_norm=placeholder_email(participant_id),
                name="",
                phone="",
                department="",
                position="",
                extra="{}",
                status=ERASED_STATUS,
                updated_at=now,
            )
        )
    return counts


def record_erasure(
    conn: sa.Connection, *, event_id: int | None, participants_count: int, summary: Mapping[str, object]
) -> int:
    result = conn.execute(
        sa.insert(erasures).values(
            event_id=event_id,
            participants=participants_count,
            summary=json.dumps(summary, sort_keys=True),
            erased_at=datetime.now(UTC),
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def forget_deleted_bytes(engine: Engine, *, attempts: int = 20, pause_s: float = 0.5) -> bool:
    """SQLite keeps deleted and overwritten rows in free pages and free space inside pages (also
    from updates made long before the erasure) and in the WAL. VACUUM rebuilds the file from live
    rows only; the checkpoint then copies it back and truncates the WAL to nothing. True when the
    WAL was truncated; False when readers kept old frames alive through every attempt.
    PostgreSQL: nothing to do here (dead tuples are not files under the var dir; see docs)."""
    if is_postgres(engine):
        return True
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        assert dbapi is not None
        # Outside any transaction: the connection is in autocommit (isolation_level None).
        dbapi.execute("VACUUM")
        for attempt in range(attempts):
            busy, _log, _done = dbapi.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy == 0:
                return True
            if attempt + 1 < attempts:
                time.sleep(pause_s)  # a reader's snapshot pins the WAL; it lets go when it finishes
        return False
    finally:
        raw.close()
