"""Access-token rows: issue (once per participant), QR bookkeeping, lookup, revocation, scans.

Bulk paths are written for 660k-participant events: SQLite gets one C-level ``executemany`` per
chunk straight through the driver (SQLAlchemy's per-row bind processing was half the cost), and
PostgreSQL gets ``COPY`` into a temp table plus one set-based statement, so the number of round
trips does not grow with the number of rows.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import as_utc, is_postgres
from event_pipeline.store.tables import access_tokens, checkin_scans, events, participants

_CHUNK = 5000
# SQLite executemany chunks: big enough to amortise the call, small enough to bound memory.
_SQLITE_CHUNK = 50_000

LIVE = "live"
REVOKED = "revoked"
PUBLIC_ID_BYTES = 16  # 128 random bits from `secrets`


def new_public_id() -> str:
    """A fresh ``access_tokens.public_id``: the row's id, base64url without padding (22 chars).
    Here rather than in ``access`` so the store depends on nothing above it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(PUBLIC_ID_BYTES)).rstrip(b"=").decode("ascii")


class UnknownParticipantError(LookupError):
    pass


@dataclass(frozen=True)
class TokenRecord:
    id: int
    event_id: int
    event_slug: str
    participant_id: int
    public_id: str
    status: str
    qr_path: str | None
    issued_at: datetime
    revoked_at: datetime | None
    checked_in_at: datetime | None
    participant_status: str


@dataclass(frozen=True)
class Reissued:
    revoked: TokenRecord | None  # the token that was live until now, as stored now (None if none)
    token: TokenRecord  # the new live token
    old_qr_path: str | None  # the revoked token's PNG, for the caller to delete


def _record_select() -> sa.Select[Any]:
    return (
        sa.select(
            access_tokens.c.id,
            access_tokens.c.event_id,
            events.c.slug.label("event_slug"),
            access_tokens.c.participant_id,
            access_tokens.c.public_id,
            access_tokens.c.status,
            access_tokens.c.qr_path,
            access_tokens.c.issued_at,
            access_tokens.c.revoked_at,
            access_tokens.c.checked_in_at,
            participants.c.status.label("participant_status"),
        )
        .join(participants, participants.c.id == access_tokens.c.participant_id)
        .join(events, events.c.id == access_tokens.c.event_id)
    )


def _to_record(row: sa.Row[Any]) -> TokenRecord:
    m = dict(row._mapping)
    for key in ("issued_at", "revoked_at", "checked_in_at"):
        m[key] = as_utc(m[key]) if m[key] is not None else None
    return TokenRecord(**m)


# -- bulk issue and QR bookkeeping ----------------------------------------------------------------


def issue_missing_tokens(engine: Engine, event_id: int) -> int:
    """Give every participant of the event without a live token one. Returns how many were issued.

    The partial unique index on live tokens makes a concurrent or repeated call a no-op for
    participants that already have one, so tokens that were already mailed never rotate.
    """
    # Here, not at the top: the participants store brings pandas, which the processes that only
    # read tokens to send mail (started per chunk of mail) would import for nothing.
    from event_pipeline.store.participants import participants_without_live_token

    now = datetime.now(UTC)
    with engine.begin() as conn:
        pending = participants_without_live_token(conn, event_id)
        if not pending:
            return 0
        rows = [(pid, new_public_id()) for pid in pending]
        if is_postgres(conn):
            return _issue_postgres(conn, event_id, rows, now)
        return _issue_sqlite(conn, event_id, rows, now)


def _issue_sqlite(conn: sa.Connection, event_id: int, rows: list[tuple[int, str]], now: datetime) -> int:
    issued_at = _bind_value(conn, access_tokens.c.issued_at, now)
    sql = (
        "INSERT INTO access_tokens (event_id, participant_id, public_id, status, issued_at) "
        f"VALUES (?, ?, ?, '{LIVE}', ?) "
        f"ON CONFLICT (participant_id) WHERE status = '{LIVE}' DO NOTHING"
    )
    issued = 0
    for start in range(0, len(rows), _SQLITE_CHUNK):
        params = [(event_id, pid, public_id, issued_at) for pid, public_id in rows[start : start + _SQLITE_CHUNK]]
        # sqlite3 sums executemany rowcounts, and rows skipped by DO NOTHING are not counted.
        issued += max(conn.exec_driver_sql(sql, params).rowcount, 0)
    return issued


def _issue_postgres(conn: sa.Connection, event_id: int, rows: list[tuple[int, str]], now: datetime) -> int:
    conn.exec_driver_sql(
        "CREATE TEMP TABLE tmp_new_access_tokens "
        "(participant_id integer NOT NULL, public_id varchar(32) NOT NULL) ON COMMIT DROP"
    )
    _copy_rows(conn, "tmp_new_access_tokens", ("participant_id", "public_id"), rows)
    # One statement, so rowcount is exact (executemany rowcounts are not, with psycopg 3).
    result = conn.execute(
        sa.text(
            "INSERT INTO access_tokens (event_id, participant_id, public_id, status, issued_at) "
            f"SELECT :event_id, participant_id, public_id, '{LIVE}', :now FROM tmp_new_access_tokens "
            f"ON CONFLICT (participant_id) WHERE status = '{LIVE}' DO NOTHING"
        ),
        {"event_id": event_id, "now": now},
    )
    conn.exec_driver_sql("DROP TABLE tmp_new_access_tokens")
    return max(result.rowcount, 0)


def live_public_ids(conn: sa.Connection, event_id: int) -> list[tuple[int, str]]:
    """(participant id, public id) of every live token of the event, by participant."""
    stmt = (
        sa.select(access_tokens.c.participant_id, access_tokens.c.public_id)
        .where(access_tokens.c.event_id == event_id, access_tokens.c.status == LIVE)
        .order_by(access_tokens.c.participant_id)
    )
    return [(int(r[0]), str(r[1])) for r in conn.execute(stmt)]


def forget_qr_paths(engine: Engine, event_id: int) -> None:
    """Drop the PNG paths earlier versions recorded (their files are gone)."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(access_tokens)
            .where(access_tokens.c.event_id == event_id, access_tokens.c.qr_path.is_not(None))
            .values(qr_path=None)
        )


def _bind_value(conn: sa.Connection, column: sa.Column[Any], value: object) -> object:
    """``value`` as SQLAlchemy would bind it for ``column``, for statements sent to the driver
    directly (keeps SQLite's datetime text format identical to rows written through Core)."""
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor is not None else value


def _copy_rows(conn: sa.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk-load ``rows`` into a (temp) table: COPY with psycopg 3, batched INSERT otherwise."""
    raw = conn.connection.driver_connection
    cursor = raw.cursor() if raw is not None else None
    if cursor is not None and hasattr(cursor, "copy"):
        with cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    if cursor is not None:
        cursor.close()
    names = ", ".join(columns)
    binds = ", ".join(f":c{i}" for i in range(len(columns)))
    stmt = sa.text(f"INSERT INTO {table} ({names}) VALUES ({binds})")
    for start in range(0, len(rows), _CHUNK):
        conn.execute(stmt, [{f"c{i}": v for i, v in enumerate(row)} for row in rows[start : start + _CHUNK]])


# -- lookups --------------------------------------------------------------------------------------


def live_token_for(conn: sa.Connection, participant_id: int) -> TokenRecord | None:
    return _lookup(conn, access_tokens.c.participant_id == participant_id, access_tokens.c.status == LIVE)


def token_by_public_id(conn: sa.Connection, public_id: str) -> TokenRecord | None:
    return _lookup(conn, access_tokens.c.public_id == public_id)


def token_by_id(conn: sa.Connection, token_id: int) -> TokenRecord | None:
    return _lookup(conn, access_tokens.c.id == token_id)


def _lookup(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> TokenRecord | None:
    row = conn.execute(_record_select().where(*where)).first()
    return None if row is None else _to_record(row)


def live_tokens_for(conn: sa.Connection, participant_ids: Sequence[int]) -> dict[int, TokenRecord]:
    found: dict[int, TokenRecord] = {}
    for start in range(0, len(participant_ids), _CHUNK):
        chunk = list(participant_ids[start : start + _CHUNK])
        stmt = _record_select().where(access_tokens.c.participant_id.in_(chunk), access_tokens.c.status == LIVE)
        for row in conn.execute(stmt):
            rec = _to_record(row)
            found[rec.participant_id] = rec
    return found


# -- check-in and revocation ----------------------------------------------------------------------


def mark_checked_in(conn: sa.Connection, token_id: int, at: datetime) -> bool:
    """Set checked_in_at if, at this instant, the token is live, not yet used and its participant
    active. The conditions live in the UPDATE itself, so of two simultaneous check-ins exactly one
    changes a row: PostgreSQL re-evaluates them after waiting for the other's row lock, and SQLite
    runs writers one at a time (BEGIN IMMEDIATE)."""
    participant_active = sa.exists().where(
        participants.c.id == access_tokens.c.participant_id, participants.c.status == "active"
    )
    stmt = (
        sa.update(access_tokens)
        .where(
            access_tokens.c.id == token_id,
            access_tokens.c.status == LIVE,
            access_tokens.c.checked_in_at.is_(None),
            participant_active,
        )
        .values(checked_in_at=at)
    )
    return conn.execute(stmt).rowcount == 1


def reissue_token(engine: Engine, participant_id: int) -> Reissued:
    """Revoke the participant's live token (the row stays, status ``revoked``, so an old QR scans as
    "revoked" rather than "unknown") and issue a new one, in one transaction.

    A participant who already checked in stays checked in: the new token carries the time over,
    otherwise a reissue would let a second person in on the same registration.
    """
    now = datetime.now(UTC)
    with engine.begin() as conn:
        # Row lock on PostgreSQL so two reissues of one participant queue up instead of the second
        # hitting the live-token unique index; SQLite already holds the write lock.
        owner = conn.execute(
            sa.select(participants.c.id, participants.c.event_id)
            .where(participants.c.id == participant_id)
            .with_for_update()
        ).first()
        if owner is None:
            raise UnknownParticipantError(f"no participant with id {participant_id}")
        old = live_token_for(conn, participant_id)
        carried: datetime | None = None
        if old is not None:
            # RETURNING gives the row as it is after any concurrent check-in committed, not the
            # snapshot read above.
            revoked = conn.execute(
                sa.update(access_tokens)
                .where(access_tokens.c.id == old.id, access_tokens.c.status == LIVE)
                .values(status=REVOKED, revoked_at=now, qr_path=None)
                .returning(access_tokens.c.checked_in_at)
            ).first()
            carried = as_utc(revoked[0]) if revoked is not None and revoked[0] is not None else None
        conn.execute(
            sa.insert(access_tokens).values(
                event_id=int(owner.event_id),
                participant_id=participant_id,
                public_id=new_public_id(),
                status=LIVE,
                issued_at=now,
                checked_in_at=carried,
            )
        )
        new = live_token_for(conn, participant_id)
        revoked_now = token_by_id(conn, old.id) if old is not None else None
    assert new is not None
    return Reissued(revoked=revoked_now, token=new, old_qr_path=old.qr_path if old is not None else None)


def record_scan(
    conn: sa.Connection,
    *,
    result: str,
    event_id: int | None,
    public_id: str | None,
    participant_id: int | None,
    at: datetime | None = None,
) -> None:
    """One row per check-in attempt, successful or not. Holds the public id only, never a token."""
    conn.execute(
        sa.insert(checkin_scans).values(
            result=result,
            event_id=event_id,
            token_public_id=public_id,
            participant_id=participant_id,
            scanned_at=at or datetime.now(UTC),
        )
    )
