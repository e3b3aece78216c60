"""The organiser's bounce digest: which undeliverable mail it reports, and the digest rows.

A participant delivery that bounced, was blocked, or was dropped by the provider is reported
once: the transaction that queues an event's digest for the hour stamps each one with the
digest's dedupe key (``email_deliveries.reported_in``), and the digest lists exactly the rows
carrying its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import as_utc, dialect_insert
from event_pipeline.store.tables import delivery_events, email_deliveries, events, participants

KIND = "bounce_digest"
# Statuses the provider gave (bounce polling, the event webhook); "dropped" only counts when the
# provider said so (a `dropped` event): the dispatcher also drops mail it no longer builds (an
# inactive participant), which is no news for the organiser.
UNDELIVERABLE = ("bounced", "blocked")
PROVIDER_DROPPED = "dropped"
BAD_ADDRESS = ("bounced", "blocked", "invalid", "dropped")


def digest_key(event_id: int, at: datetime) -> str:
    return f"{KIND}:{event_id}:{at.astimezone(UTC):%Y%m%d%H}"


def _undeliverable() -> sa.ColumnElement[bool]:
    d = email_deliveries.c
    said_dropped = sa.exists().where(delivery_events.c.delivery_id == d.id, delivery_events.c.event == PROVIDER_DROPPED)
    return sa.and_(
        d.participant_id.is_not(None),
        sa.or_(d.status.in_(UNDELIVERABLE), sa.and_(d.status == PROVIDER_DROPPED, said_dropped)),
    )


@dataclass(frozen=True)
class DigestQueued:
    event_id: int
    dedupe_key: str
    deliveries: int


def queue_digests(engine: Engine, *, now: datetime | None = None) -> list[DigestQueued]:
    """Queue one digest per event with unreported undeliverable mail, for the hour of ``now``.

    An event whose digest for this hour exists already keeps its new bounces for the next hour's
    digest: the one queued may have gone out, and a row stamped with its key would never be told.
    """
    now = now or datetime.now(UTC)
    d = email_deliveries.c
    unreported = sa.and_(_undeliverable(), d.reported_in.is_(None))
    queued: list[DigestQueued] = []
    with engine.begin() as conn:
        event_ids = [int(e) for e in conn.execute(sa.select(d.event_id).where(unreported).distinct()).scalars()]
        for event_id in sorted(event_ids):
            key = digest_key(event_id, now)
            new_id = conn.execute(
                dialect_insert(conn)(email_deliveries)
                .values(
                    event_id=event_id,
                    participant_id=None,
                    upload_id=None,
                    kind=KIND,
                    dedupe_key=key,
                    status="queued",
                    attempts=0,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(d.id)
            ).scalar()
            if new_id is None:
                continue
            stamped = conn.execute(
                sa.update(email_deliveries)
                .where(unreported, d.event_id == event_id)
                .values(reported_in=key)
                .execution_options(synchronize_session=False)
            ).rowcount
            if stamped <= 0:  # a concurrent digest took them first
                conn.execute(sa.delete(email_deliveries).where(d.id == new_id))
                continue
            queued.append(DigestQueued(event_id, key, int(stamped)))
    return queued


@dataclass(frozen=True)
class Undeliverable:
    """One line of a digest: the participant as stored now, what happened to the mail."""

    participant_id: int
    name: str
    email: str
    status: str  # the address's status when known (bounced, blocked, invalid), else the delivery's
    at: datetime | None
    reason: str


def digest_rows(conn: sa.Connection, dedupe_key: str) -> list[Undeliverable]:
    d, p = email_deliveries.c, participants.c
    last_event = (
        sa.select(sa.func.max(delivery_events.c.occurred_at))
        .where(delivery_events.c.delivery_id == d.id)
        .scalar_subquery()
    )
    stmt = (
        sa.select(
            p.id,
            p.name,
            p.email_norm,
            sa.case((p.email_status != "ok", p.email_status), else_=d.status).label("status"),
            sa.func.coalesce(last_event, p.bounced_at).label("at"),
            sa.func.coalesce(d.last_error, "").label("reason"),
        )
        .join(participants, p.id == d.participant_id)
        .where(d.reported_in == dedupe_key)
        .order_by(p.id, d.id)
    )
    return [
        Undeliverable(
            participant_id=int(r.id),
            name=str(r.name),
            email=str(r.email_norm),
            status=str(r.status),
            at=_as_datetime(r.at),
            reason=str(r.reason),
        )
        for r in conn.execute(stmt)
    ]


def _as_datetime(value: Any) -> datetime | None:
    # COALESCE over two timestamp columns comes back from SQLite as text, not a datetime.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return as_utc(value)


@dataclass(frozen=True)
class BounceCounts:
    participants: int  # active participants whose address is known to be undeliverable
    deliveries: int  # participant mail that bounced, was blocked or dropped by the provider
    unreported: int  # of those, not yet in an organiser digest


def bounce_counts(conn: sa.Connection) -> dict[str, BounceCounts]:
    """Per event slug, for `status` (events with nothing undeliverable are left out)."""
    d, p = email_deliveries.c, participants.c
    mail = {
        int(eid): (int(total), int(unreported))
        for eid, total, unreported in conn.execute(
            sa.select(
                d.event_id,
                sa.func.count(),
                sa.func.sum(sa.case((d.reported_in.is_(None), 1), else_=0)),
            )
            .where(_undeliverable())
            .group_by(d.event_id)
        )
    }
    people = {
        int(eid): int(n)
        for eid, n in conn.execute(
            sa.select(p.event_id, sa.func.count())
            .where(p.status == "active", p.email_status.in_(BAD_ADDRESS))
            .group_by(p.event_id)
        )
    }
    slugs = dict(conn.execute(sa.select(events.c.id, events.c.slug)).tuples().all())
    return {
        str(slugs[eid]): BounceCounts(people.get(eid, 0), *mail.get(eid, (0, 0)))
        for eid in sorted(set(mail) | set(people))
        if eid in slugs
    }
