"""Email deliveries as an explicit state machine.

    queued ──claim──> sending ──> sent
    awaiting_retry ─┘        ├──> awaiting_retry   (5xx, timeout, dropped connection, 429)
                             ├──> failed           (4xx, or no attempts / time left)
                             └──> dropped          (recipient no longer deliverable)
    sent | queued | awaiting_retry | sending ──bounce poll──> bounced

A row is claimed (moved to ``sending``, ``attempts`` + 1, ``claimed_at`` stamped) in its own
committed transaction before the provider is called, so a re-run, a retried run or a second
dispatcher never sends the same message twice. ``claimed_at`` doubles as a fencing token: an
outcome is written only while the row still carries the claim it was sent under.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import as_utc, dialect_insert, is_postgres
from event_pipeline.store.tables import Timestamp, access_tokens, email_deliveries, participants

CLAIMABLE = ("queued", "awaiting_retry")
TERMINAL = ("sent", "failed", "bounced", "dropped")
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
    claimed_at: datetime | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Delivery:
        m = dict(row._mapping)
        m["created_at"] = as_utc(m["created_at"])
        m["claimed_at"] = as_utc(m["claimed_at"]) if m["claimed_at"] is not None else None
        return cls(**m)


_COLS = [email_deliveries.c[name] for name in Delivery.__dataclass_fields__]


@dataclass(frozen=True)
class Outcome:
    """What one send attempt came to; written by ``record_outcomes``."""

    delivery_id: int
    claimed_at: datetime
    status: str
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    provider_message_id: str | None = None
    sent_at: datetime | None = None
    # The claim's attempt is handed back: the request was never one SendGrid could accept (429),
    # or it never left (the dispatcher stopped before sending it).
    refund_attempt: bool = False
    # Not stored: lets the dispatcher count 429s separately from other retries.
    throttled: bool = False


def enqueue(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert deliveries; ones whose dedupe_key exists are left alone. Returns rows inserted."""
    if not rows:
        return 0
    now = datetime.now(UTC)
    inserted = 0
    stmt = dialect_insert(conn)(email_deliveries).on_conflict_do_nothing(index_elements=["dedupe_key"])
    for start in range(0, len(rows), _CHUNK):
        chunk = [{"status": "queued", "attempts": 0, "created_at": now, **r} for r in rows[start : start + _CHUNK]]
        inserted += max(conn.execute(stmt, chunk).rowcount, 0)
    return inserted


def enqueue_welcome(engine: Engine, event_id: int, upload_id: str | None) -> int:
    """Queue a welcome email for each participant of the event with a live token."""
    p = participants.c
    has_welcome = sa.select(email_deliveries.c.id).where(
        email_deliveries.c.participant_id == p.id, email_deliveries.c.kind == "welcome"
    )
    # One INSERT ... SELECT: built row by row in Python, the 577k welcomes of a 50 MB upload
    # took most of the 21 s of plan_welcome in SQLAlchemy's per-row parameter handling.
    rows = (
        sa.select(
            sa.literal(event_id, sa.Integer),
            p.id,
            sa.literal(upload_id, sa.String),
            sa.literal("welcome", sa.String),
            sa.literal("welcome:", sa.String) + sa.cast(p.id, sa.String),
            sa.literal("queued", sa.String),
            sa.literal(0, sa.Integer),
            sa.literal(datetime.now(UTC), Timestamp),
        )
        .join(access_tokens, access_tokens.c.participant_id == p.id)
        .where(
            p.event_id == event_id,
            p.status == "active",
            p.email_status == "ok",
            access_tokens.c.status == "live",
            ~sa.exists(has_welcome),
        )
        .order_by(p.id)
    )
    columns = ["event_id", "participant_id", "upload_id", "kind", "dedupe_key", "status", "attempts", "created_at"]
    with engine.begin() as conn:
        stmt = dialect_insert(conn)(email_deliveries).from_select(columns, rows)
        result = conn.execute(stmt.on_conflict_do_nothing(index_elements=["dedupe_key"]))
        return max(result.rowcount, 0)


IdRange = tuple[int, int]


def _scope(stmt: Any, event_id: int | None, kinds: Iterable[str] | None, id_range: IdRange | None = None) -> Any:
    if event_id is not None:
        stmt = stmt.where(email_deliveries.c.event_id == event_id)
    if kinds is not None:
        stmt = stmt.where(email_deliveries.c.kind.in_(list(kinds)))
    if id_range is not None:
        stmt = stmt.where(email_deliveries.c.id.between(*id_range))
    return stmt


def open_id_ranges(conn: sa.Connection, *, event_id: int, kinds: Iterable[str], size: int) -> list[IdRange]:
    """The event's deliveries of ``kinds`` still to send (claimable, or claimed and maybe
    abandoned), cut into id ranges of at most ``size`` deliveries each, in id order."""
    c = email_deliveries.c
    stmt = sa.select(c.id).where(c.status.in_((*CLAIMABLE, "sending"))).order_by(c.id)
    ids = [int(i) for i in conn.execute(_scope(stmt, event_id, kinds)).scalars()]
    return [(ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]


def claim_due(
    engine: Engine,
    *,
    limit: int,
    now: datetime | None = None,
    event_id: int | None = None,
    kinds: Iterable[str] | None = None,
    claimant: str | None = None,
    id_range: IdRange | None = None,
) -> list[Delivery]:
    """Move up to ``limit`` due deliveries to ``sending`` under ``claimant`` and return them (by id).

    ``now`` decides what is due (tests and the benchmark move it forward instead of sleeping);
    ``claimed_at`` is always the wall clock, because stale-claim detection is about real time
    and the fencing token must differ between any two claims of a row. ``id_range`` (first, last,
    inclusive) is one chunk of an upload's mail, as ``open_id_ranges`` cuts them.
    """
    now = now or datetime.now(UTC)
    due = sa.select(email_deliveries.c.id).where(_due(now))
    # In the order of ix_email_deliveries_due (status, next_attempt_at), then id: due retries
    # first, then queued mail oldest first. Ordering by id alone made SQLite sort every queued row
    # for each claim: 14.7 ms against 2 ms with 60k queued, growing with the queue (SQL was a
    # quarter of the samples while mailing a 577k upload).
    c = email_deliveries.c
    due = _scope(due, event_id, kinds, id_range).order_by(c.status, c.next_attempt_at, c.id).limit(limit)
    with engine.begin() as conn:
        chosen: sa.ColumnElement[bool] = c.id.in_(due.scalar_subquery())
        if is_postgres(conn):
            # Concurrent dispatchers take disjoint rows instead of queueing behind each other's
            # locks, and the status is checked again on the rows they lock.
            due = due.with_for_update(skip_locked=True)
            chosen = sa.and_(c.id.in_(due.scalar_subquery()), c.status.in_(CLAIMABLE))
        # SQLite needs neither: BEGIN IMMEDIATE serialises writers, so what the subquery chose is
        # still claimable. A status test here also made SQLite walk ix_email_deliveries_due over
        # every claimable row and test each id against the list, instead of looking the ids up:
        # 102 against 5.7 ms per claim of 1,000 with 577k queued, O(queue) per claim.
        stmt = (
            sa.update(email_deliveries)
            .where(chosen)
            .values(
                status="sending",
                attempts=email_deliveries.c.attempts + 1,
                claimed_at=datetime.now(UTC),
                claimed_by=claimant,
            )
            .returning(*_COLS)
        )
        claimed = [Delivery.from_row(r) for r in conn.execute(stmt)]
    return sorted(claimed, key=lambda d: d.id)


def next_due_at(
    engine: Engine,
    *,
    event_id: int | None = None,
    kinds: Iterable[str] | None = None,
    id_range: IdRange | None = None,
) -> datetime | None:
    """Earliest ``next_attempt_at`` among claimable deliveries in scope (None if there are none)."""
    stmt = sa.select(sa.func.min(email_deliveries.c.next_attempt_at)).where(
        email_deliveries.c.status.in_(CLAIMABLE), email_deliveries.c.next_attempt_at.is_not(None)
    )
    with engine.connect() as conn:
        value = conn.execute(_scope(stmt, event_id, kinds, id_range)).scalar()
    return as_utc(value) if value is not None else None


def record_outcomes(
    engine: Engine, outcomes: Sequence[Outcome], *, checkpoint: Callable[[sa.Connection], None] | None = None
) -> int:
    """Write send results in one transaction; returns how many rows took them.

    ``checkpoint`` runs in the same transaction: the sender's own record of what these
    outcomes cover (the outbox's committed file length), so both or neither are kept.

    Only a row that is still ``sending`` under the same claim is touched, so a bounce that
    arrived meanwhile, or a newer claim after ``release_stale_claims``, is never overwritten.
    """
    if not outcomes:
        return 0
    params = [
        {
            "did": o.delivery_id,
            "claim": o.claimed_at,
            "v_status": o.status,
            "v_last_error": o.last_error,
            "v_next_attempt_at": o.next_attempt_at,
            "v_provider_message_id": o.provider_message_id,
            "v_sent_at": o.sent_at,
            "refund": 1 if o.refund_attempt else 0,
        }
        for o in outcomes
    ]
    c = email_deliveries.c
    stmt = (
        sa.update(email_deliveries)
        .where(c.id == sa.bindparam("did"), c.status == "sending", c.claimed_at == sa.bindparam("claim"))
        .values(
            status=sa.bindparam("v_status"),
            last_error=sa.bindparam("v_last_error"),
            next_attempt_at=sa.bindparam("v_next_attempt_at"),
            provider_message_id=sa.bindparam("v_provider_message_id"),
            sent_at=sa.bindparam("v_sent_at"),
            attempts=c.attempts - sa.bindparam("refund", type_=sa.Integer),
        )
    )
    written = 0
    with engine.begin() as conn:
        for start in range(0, len(params), _CHUNK):
            written += max(conn.execute(stmt, params[start : start + _CHUNK]).rowcount, 0)
        if checkpoint is not None:
            checkpoint(conn)
    return written


def release_stale_claims(
    engine: Engine,
    *,
    older_than: timedelta,
    max_attempts: int,
    now: datetime | None = None,
    claimed_before: datetime | None = None,
) -> int:
    """Rows left ``sending`` by a dispatcher that died, whoever held them: retry them if
    attempts remain. The fallback for holders nobody can check (see ``release_claims_of``).

    This is the one place a message can go out twice: if the process died after SendGrid's 202
    and before the outcome was written. The dispatcher writes each outcome as soon as its
    request returns and claims only what its workers can start at once, so at most a few
    dispatcher-widths of messages are in that window (docs/email.md). ``older_than`` must be
    far longer than one send can take (the client timeout), or a live claim would be stolen.
    ``claimed_before``: see ``release_claims_of``.
    """
    cutoff = (now or datetime.now(UTC)) - older_than
    return _release(engine, email_deliveries.c.claimed_at < cutoff, max_attempts, claimed_before)


def claim_holders(conn: sa.Connection) -> set[str]:
    """Who holds the rows in ``sending`` now (a few names: one per live or dead dispatcher)."""
    c = email_deliveries.c
    stmt = sa.select(c.claimed_by).where(c.status == "sending", c.claimed_by.is_not(None)).distinct()
    return {str(name) for name in conn.execute(stmt).scalars()}


def release_claims_of(
    engine: Engine, holders: Collection[str], *, max_attempts: int, claimed_before: datetime | None = None
) -> int:
    """Rows left ``sending`` by holders known to be dead (their run ended, their process is
    gone): released at once, with the same consequences as ``release_stale_claims``.

    ``claimed_before`` (``mail.policy.resend_cutoff``): only claims older than this; younger
    ones wait for SendGrid's ``processed`` event, which marks them sent if SendGrid has them.
    """
    if not holders:
        return 0
    return _release(engine, email_deliveries.c.claimed_by.in_(list(holders)), max_attempts, claimed_before)


def _release(
    engine: Engine, which: sa.ColumnElement[bool], max_attempts: int, claimed_before: datetime | None = None
) -> int:
    c = email_deliveries.c
    base = sa.and_(c.status == "sending", which)
    if claimed_before is not None:
        base = sa.and_(base, c.claimed_at < claimed_before)
    with engine.begin() as conn:
        retry = conn.execute(
            sa.update(email_deliveries)
            .where(base, c.attempts < max_attempts)
            .values(status="awaiting_retry", next_attempt_at=None, last_error="dispatcher stopped mid-send")
        ).rowcount
        failed = conn.execute(
            sa.update(email_deliveries)
            .where(base)
            .values(status="failed", last_error="dispatcher stopped mid-send; no attempts left")
        ).rowcount
    return int(retry) + int(failed)


def status_counts(
    conn: sa.Connection,
    *,
    event_id: int | None = None,
    upload_id: str | None = None,
    kinds: Iterable[str] | None = None,
) -> dict[str, int]:
    stmt = sa.select(email_deliveries.c.status, sa.func.count()).group_by(email_deliveries.c.status)
    if upload_id is not None:
        stmt = stmt.where(email_deliveries.c.upload_id == upload_id)
    return {str(s): int(n) for s, n in conn.execute(_scope(stmt, event_id, kinds))}


def _due(now: datetime) -> sa.ColumnElement[bool]:
    """Claimable now: the one definition of "due" that claiming and the mail schedule share."""
    return sa.and_(
        email_deliveries.c.status.in_(CLAIMABLE),
        sa.or_(email_deliveries.c.next_attempt_at.is_(None), email_deliveries.c.next_attempt_at <= now),
    )


def count_claimable(
    conn: sa.Connection,
    *,
    now: datetime,
    event_id: int | None = None,
    kinds: Iterable[str] | None = None,
    id_range: IdRange | None = None,
) -> int:
    """Due deliveries in one dispatch's scope."""
    stmt = sa.select(sa.func.count()).where(_due(now))
    return int(conn.execute(_scope(stmt, event_id, kinds, id_range)).scalar_one())


def count_due(conn: sa.Connection, *, now: datetime) -> int:
    """Deliveries the mail schedule should act on: due ones, and claims that may be stale."""
    stmt = sa.select(sa.func.count()).where(sa.or_(_due(now), email_deliveries.c.status == "sending"))
    return int(conn.execute(stmt).scalar_one())
