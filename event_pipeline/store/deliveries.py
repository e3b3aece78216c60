"""Email deliveries as an explicit state machine.

queued -> sending -> sent | awaiting_retry | failed | bounced | dropped

A row is claimed (moved to ``sending``) before the provider is called, so a re-run, a retried
run or a second dispatcher never sends the same message twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import is_postgres
from event_pipeline.store.tables import access_tokens, email_deliveries, participants

CLAIMABLE = ("queued", "awaiting_retry")
_CHUNK = 5000


@dataclass(frozen=True)
class Delivery:
    id: int
    event_id: int
    participant_id: int | None
    upload_id: str | None
    kind: str
    dedupe_key: str
    status: str
    attempts: int
    created_at: datetime


_COLS = [email_deliveries.c[name] for name in Delivery.__dataclass_fields__]


def _insert(conn: sa.Connection) -> Any:
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert

        return insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def enqueue(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert deliveries; ones whose dedupe_key exists are left alone. Returns rows inserted."""
    if not rows:
        return 0
    now = datetime.now(UTC)
    inserted = 0
    stmt = _insert(conn)(email_deliveries).on_conflict_do_nothing(index_elements=["dedupe_key"])
    for start in range(0, len(rows), _CHUNK):
        chunk = [{"status": "queued", "attempts": 0, "created_at": now, **r} for r in rows[start : start + _CHUNK]]
        inserted += max(conn.execute(stmt, chunk).rowcount, 0)
    return inserted


def enqueue_welcome(engine: Engine, event_id: int, upload_id: str | None) -> int:
    """Queue a welcome email for each participant of the event with a live token and a QR code."""
    has_welcome = sa.select(email_deliveries.c.id).where(
        email_deliveries.c.participant_id == participants.c.id, email_deliveries.c.kind == "welcome"
    )
    stmt = (
        sa.select(participants.c.id)
        .join(access_tokens, access_tokens.c.participant_id == participants.c.id)
        .where(
            participants.c.event_id == event_id,
            participants.c.status == "active",
            participants.c.email_status == "ok",
            access_tokens.c.status == "live",
            access_tokens.c.qr_path.is_not(None),
            ~sa.exists(has_welcome),
        )
        .order_by(participants.c.id)
    )
    with engine.begin() as conn:
        ids = [int(r[0]) for r in conn.execute(stmt)]
        rows = [
            {
                "event_id": event_id,
                "participant_id": pid,
                "upload_id": upload_id,
                "kind": "welcome",
                "dedupe_key": f"welcome:{pid}",
            }
            for pid in ids
        ]
        return enqueue(conn, rows)


def claim_due(
    engine: Engine,
    *,
    limit: int,
    now: datetime | None = None,
    event_id: int | None = None,
    kinds: Iterable[str] | None = None,
) -> list[Delivery]:
    now = now or datetime.now(UTC)
    due = sa.select(email_deliveries.c.id).where(
        email_deliveries.c.status.in_(CLAIMABLE),
        sa.or_(email_deliveries.c.next_attempt_at.is_(None), email_deliveries.c.next_attempt_at <= now),
    )
    if event_id is not None:
        due = due.where(email_deliveries.c.event_id == event_id)
    if kinds is not None:
        due = due.where(email_deliveries.c.kind.in_(list(kinds)))
    due = due.order_by(email_deliveries.c.id).limit(limit)
    with engine.begin() as conn:
        if is_postgres(conn):
            due = due.with_for_update(skip_locked=True)
        stmt = (
            sa.update(email_deliveries)
            .where(email_deliveries.c.id.in_(due.scalar_subquery()), email_deliveries.c.status.in_(CLAIMABLE))
            .values(status="sending", attempts=email_deliveries.c.attempts + 1, claimed_at=now)
            .returning(*_COLS)
        )
        claimed = [Delivery(**r._mapping) for r in conn.execute(stmt)]
    return sorted(claimed, key=lambda d: d.id)


def record_outcomes(engine: Engine, outcomes: Sequence[dict[str, Any]]) -> None:
    """Write send results: each dict has id, status and optional provider_message_id, last_error,
    next_attempt_at, sent_at. Only rows still ``sending`` are touched, so a late writer cannot
    overwrite a bounce that arrived meanwhile."""
    if not outcomes:
        return
    fields = ("status", "provider_message_id", "last_error", "next_attempt_at", "sent_at")
    params = [{"did": o["id"], **{f"v_{f}": o.get(f) for f in fields}} for o in outcomes]
    stmt = (
        sa.update(email_deliveries)
        .where(email_deliveries.c.id == sa.bindparam("did"), email_deliveries.c.status == "sending")
        .values({f: sa.bindparam(f"v_{f}") for f in fields})
    )
    with engine.begin() as conn:
        for start in range(0, len(params), _CHUNK):
            conn.execute(stmt, params[start : start + _CHUNK])


def release_stale_claims(engine: Engine, *, older_than: timedelta, max_attempts: int) -> int:
    """Rows left ``sending`` by a crashed dispatcher: retry them if attempts remain.

    This is the one place a message can go out twice (the crash fell between the provider's
    202 and our write); at most the dispatcher's in-flight messages are affected.
    """
    cutoff = datetime.now(UTC) - older_than
    base = sa.and_(email_deliveries.c.status == "sending", email_deliveries.c.claimed_at < cutoff)
    with engine.begin() as conn:
        retry = conn.execute(
            sa.update(email_deliveries)
            .where(base, email_deliveries.c.attempts < max_attempts)
            .values(status="awaiting_retry", next_attempt_at=None, last_error="dispatcher stopped mid-send")
        ).rowcount
        failed = conn.execute(
            sa.update(email_deliveries)
            .where(base)
            .values(status="failed", last_error="dispatcher stopped mid-send; no attempts left")
        ).rowcount
    return int(retry) + int(failed)


def status_counts(conn: sa.Connection, *, event_id: int | None = None, upload_id: str | None = None) -> dict[str, int]:
    stmt = sa.select(email_deliveries.c.status, sa.func.count()).group_by(email_deliveries.c.status)
    if event_id is not None:
        stmt = stmt.where(email_deliveries.c.event_id == event_id)
    if upload_id is not None:
        stmt = stmt.where(email_deliveries.c.upload_id == upload_id)
    return {str(s): int(n) for s, n in conn.execute(stmt)}
