"""Resending a participant's ticket: who may get one, and the new delivery row.

A resend is its own delivery (kind ``ticket``, dedupe key ``resend:<participant>:<n>``) with its
own attempts. The check that nothing of the participant's ticket mail is in flight and the insert
happen in one transaction under the participant's row lock, so two resends started at once queue
one message, never two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from event_pipeline.store.db import dialect_insert
from event_pipeline.store.tables import access_tokens, email_deliveries, participant_changes, participants

TICKET = "ticket"
# The mail that carries a participant's QR code: the welcome, and every resend of it.
TICKET_KINDS = ("welcome", TICKET)
IN_FLIGHT = ("queued", "sending", "awaiting_retry")
RESEND_PREFIX = "resend:"
_CHUNK = 500


@dataclass(frozen=True)
class Queued:
    participant_id: int
    delivery_id: int
    dedupe_key: str


@dataclass(frozen=True)
class Refused:
    participant_id: int
    # A stable code for scripts and the sentence for people; neither quotes the address.
    code: str
    reason: str


def _is_delivered(since: sa.ColumnElement[datetime] | None = None) -> sa.Exists:
    """A ticket mail of the participant was sent (after ``since``, when given)."""
    d = email_deliveries.c
    cond = [d.participant_id == participants.c.id, d.kind.in_(TICKET_KINDS), d.status == "sent"]
    if since is not None:
        cond.append(sa.or_(d.sent_at.is_(None), d.sent_at >= since))
    return sa.exists().where(*cond)


def participant_by_email(conn: sa.Connection, event_id: int, email_norm: str) -> int | None:
    stmt = sa.select(participants.c.id).where(
        participants.c.event_id == event_id, participants.c.email_norm == email_norm
    )
    found = conn.execute(stmt).scalar()
    return int(found) if found is not None else None


def upload_participants_undelivered(conn: sa.Connection, event_id: int, upload_id: str) -> tuple[list[int], int]:
    """(ids of the upload's participants that no ticket mail reached, how many it did reach).

    "The upload's participants": those it created, last updated, or changed (its change history).
    """
    changed = sa.select(participant_changes.c.participant_id).where(participant_changes.c.upload_id == upload_id)
    of_upload = sa.and_(
        participants.c.event_id == event_id,
        sa.or_(
            participants.c.created_upload_id == upload_id,
            participants.c.updated_upload_id == upload_id,
            participants.c.id.in_(changed),
        ),
    )
    pending = [
        int(r[0])
        for r in conn.execute(
            sa.select(participants.c.id).where(of_upload, ~_is_delivered()).order_by(participants.c.id)
        )
    ]
    delivered = conn.execute(sa.select(sa.func.count()).where(of_upload, _is_delivered())).scalar_one()
    return pending, int(delivered)


def bounced_then_changed(conn: sa.Connection, event_id: int) -> list[int]:
    """Participants whose address changed after it bounced and that no ticket mail reached since."""
    p = participants.c
    stmt = (
        sa.select(p.id)
        .where(
            p.event_id == event_id,
            p.bounced_at.is_not(None),
            p.email_changed_at.is_not(None),
            p.bounced_at < p.email_changed_at,
            ~_is_delivered(since=p.email_changed_at),
        )
        .order_by(p.id)
    )
    return [int(r[0]) for r in conn.execute(stmt)]


def queue_ticket(conn: sa.Connection, event_id: int, participant_id: int, *, upload_id: str | None) -> Queued | Refused:
    """Queue one ticket mail for the participant, or say why not. Call inside a transaction."""
    return queue_tickets(conn, event_id, [participant_id], upload_id=upload_id)[0]


def queue_tickets(
    conn: sa.Connection, event_id: int, participant_ids: Sequence[int], *, upload_id: str | None
) -> list[Queued | Refused]:
    """Queue a ticket mail for each participant that may get one; say why not for the others (in
    the order given). One query reads what decides it, under the participants' row locks on
    PostgreSQL, and one insert adds the rows: a statement per participant made 100k take minutes.
    Call inside a transaction."""
    p, d = participants.c, email_deliveries.c
    mine = sa.and_(d.participant_id == p.id, d.kind.in_(TICKET_KINDS))
    in_flight = (
        sa.select(sa.func.min(d.id)).where(mine, d.status.in_(IN_FLIGHT)).correlate(participants).scalar_subquery()
    )
    earlier = (
        sa.select(sa.func.count()).where(d.participant_id == p.id, d.kind == TICKET).correlate(participants)
    ).scalar_subquery()
    live = sa.exists().where(access_tokens.c.participant_id == p.id, access_tokens.c.status == "live")
    facts: dict[int, sa.Row[Any]] = {}
    ids = list(dict.fromkeys(participant_ids))
    for start in range(0, len(ids), _CHUNK):
        stmt = (
            sa.select(
                p.id,
                p.event_id,
                p.status,
                p.email_status,
                p.replaced_by,
                live.label("live"),
                in_flight.label("in_flight"),
                earlier.label("earlier"),
            )
            .where(p.id.in_(ids[start : start + _CHUNK]))
            .with_for_update(of=participants)
        )
        facts.update({int(r.id): r for r in conn.execute(stmt)})
    outcomes: dict[int, Queued | Refused] = {}
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for pid in ids:
        why = _refusal(facts.get(pid), pid, event_id)
        if why is not None:
            outcomes[pid] = why
            continue
        key = f"{RESEND_PREFIX}{pid}:{int(facts[pid].earlier) + 1}"
        rows.append(
            {
                "event_id": event_id,
                "participant_id": pid,
                "upload_id": upload_id,
                "kind": TICKET,
                "dedupe_key": key,
                "status": "queued",
                "attempts": 0,
                "created_at": now,
            }
        )
    inserted: dict[str, int] = {}
    stmt = dialect_insert(conn)(email_deliveries).on_conflict_do_nothing(index_elements=["dedupe_key"])
    for start in range(0, len(rows), _CHUNK):
        result = conn.execute(stmt.returning(d.id, d.dedupe_key), rows[start : start + _CHUNK])
        inserted.update({str(key): int(did) for did, key in result})
    for row in rows:
        pid, key = int(row["participant_id"]), str(row["dedupe_key"])
        if key in inserted:
            outcomes[pid] = Queued(pid, inserted[key], key)
        else:  # only a writer that ignored the row lock gets here
            outcomes[pid] = Refused(pid, "in_flight", f"participant {pid} already has a resend queued")
    return [outcomes[pid] for pid in participant_ids]


def _refusal(row: sa.Row[Any] | None, pid: int, event_id: int) -> Refused | None:
    if row is None or int(row.event_id) != event_id:
        return Refused(pid, "unknown", f"participant {pid} is not registered for this event")
    if row.replaced_by is not None:
        return Refused(pid, "replaced", f"participant {pid} was replaced by participant {row.replaced_by}")
    if row.status != "active":
        return Refused(pid, "inactive", f"participant {pid} is inactive")
    if row.email_status != "ok":
        return Refused(
            pid,
            "address_not_deliverable",
            f"the address of participant {pid} is {row.email_status}; correct it first (`event-pipeline correct`)",
        )
    if not row.live:
        return Refused(pid, "no_ticket", f"participant {pid} has no live ticket yet")
    if row.in_flight is not None:
        return Refused(
            pid, "in_flight", f"participant {pid} already has ticket mail on its way (delivery {row.in_flight})"
        )
    return None


def ticket_statuses(conn: sa.Connection, delivery_ids: Sequence[int]) -> dict[int, str]:
    if not delivery_ids:
        return {}
    stmt = sa.select(email_deliveries.c.id, email_deliveries.c.status).where(
        email_deliveries.c.id.in_(list(delivery_ids))
    )
    return {int(i): str(s) for i, s in conn.execute(stmt)}
