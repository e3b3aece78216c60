"""Access-token rows: issue (once per participant), QR bookkeeping, lookup, revocation, scans."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.access.tokens import new_public_id
from event_pipeline.store.db import is_postgres
from event_pipeline.store.participants import participants_without_live_token
from event_pipeline.store.tables import access_tokens, checkin_scans, participants

_CHUNK = 5000


@dataclass(frozen=True)
class TokenRecord:
    id: int
    event_id: int
    participant_id: int
    public_id: str
    status: str
    qr_path: str | None
    checked_in_at: datetime | None
    participant_status: str


def _insert(conn: sa.Connection) -> Any:
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert

        return insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def issue_missing_tokens(engine: Engine, event_id: int) -> int:
    """Give every participant of the event without a live token one. Returns how many were issued.

    The partial unique index on live tokens makes a concurrent or repeated call a no-op for
    participants that already have one, so tokens that were already mailed never rotate.
    """
    issued = 0
    now = datetime.now(UTC)
    with engine.begin() as conn:
        pending = participants_without_live_token(conn, event_id)
        insert = _insert(conn)
        for start in range(0, len(pending), _CHUNK):
            chunk = pending[start : start + _CHUNK]
            rows = [
                {"event_id": event_id, "participant_id": pid, "public_id": new_public_id(), "issued_at": now}
                for pid in chunk
            ]
            stmt = insert(access_tokens).on_conflict_do_nothing(
                index_elements=["participant_id"], index_where=sa.text("status = 'live'")
            )
            result = conn.execute(stmt, rows)
            issued += max(result.rowcount, 0)
    return issued


def tokens_missing_qr(conn: sa.Connection, event_id: int) -> list[tuple[int, str]]:
    stmt = (
        sa.select(access_tokens.c.id, access_tokens.c.public_id)
        .where(
            access_tokens.c.event_id == event_id,
            access_tokens.c.status == "live",
            access_tokens.c.qr_path.is_(None),
        )
        .order_by(access_tokens.c.id)
    )
    return [(int(r[0]), str(r[1])) for r in conn.execute(stmt)]


def set_qr_paths(engine: Engine, paths: Iterable[tuple[int, str]]) -> None:
    params = [{"tid": tid, "path": path} for tid, path in paths]
    if not params:
        return
    stmt = (
        sa.update(access_tokens)
        .where(access_tokens.c.id == sa.bindparam("tid"))
        .values(qr_path=sa.bindparam("path"))
    )
    with engine.begin() as conn:
        for start in range(0, len(params), _CHUNK):
            conn.execute(stmt, params[start : start + _CHUNK])


def live_token_for(conn: sa.Connection, participant_id: int) -> TokenRecord | None:
    return _lookup(conn, access_tokens.c.participant_id == participant_id, access_tokens.c.status == "live")


def token_by_public_id(conn: sa.Connection, public_id: str) -> TokenRecord | None:
    return _lookup(conn, access_tokens.c.public_id == public_id)


def _lookup(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> TokenRecord | None:
    stmt = (
        sa.select(
            access_tokens.c.id,
            access_tokens.c.event_id,
            access_tokens.c.participant_id,
            access_tokens.c.public_id,
            access_tokens.c.status,
            access_tokens.c.qr_path,
            access_tokens.c.checked_in_at,
            participants.c.status.label("participant_status"),
        )
        .join(participants, participants.c.id == access_tokens.c.participant_id)
        .where(*where)
    )
    row = conn.execute(stmt).first()
    if row is None:
        return None
    return TokenRecord(**row._mapping)


def live_tokens_for(conn: sa.Connection, participant_ids: Sequence[int]) -> dict[int, TokenRecord]:
    found: dict[int, TokenRecord] = {}
    for start in range(0, len(participant_ids), _CHUNK):
        chunk = list(participant_ids[start : start + _CHUNK])
        stmt = (
            sa.select(
                access_tokens.c.id,
                access_tokens.c.event_id,
                access_tokens.c.participant_id,
                access_tokens.c.public_id,
                access_tokens.c.status,
                access_tokens.c.qr_path,
                access_tokens.c.checked_in_at,
                participants.c.status.label("participant_status"),
            )
            .join(participants, participants.c.id == access_tokens.c.participant_id)
            .where(access_tokens.c.participant_id.in_(chunk), access_tokens.c.status == "live")
        )
        for row in conn.execute(stmt):
            rec = TokenRecord(**row._mapping)
            found[rec.participant_id] = rec
    return found


def record_scan(
    conn: sa.Connection, *, result: str, event_id: int | None, public_id: str | None, participant_id: int | None
) -> None:
    conn.execute(
        sa.insert(checkin_scans).values(
            result=result,
            event_id=event_id,
            token_public_id=public_id,
            participant_id=participant_id,
            scanned_at=datetime.now(UTC),
        )
    )
