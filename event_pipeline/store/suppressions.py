"""Applying provider suppressions (bounces, blocks, invalid addresses) to participants and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.tables import email_deliveries, events, participants

# A stronger finding is never replaced by a weaker one: an address SendGrid calls invalid stays
# invalid even if it later also shows up as blocked.
EMAIL_STATUS_RANK = {"ok": 0, "blocked": 1, "bounced": 2, "invalid": 3}
# Deliveries that had not (yet) reached anyone; failed and dropped ones already say why.
BOUNCEABLE = ("queued", "awaiting_retry", "sending", "sent")
_CHUNK = 500


@dataclass(frozen=True)
class SuppressedAddress:
    email: str  # lower-cased
    email_status: str  # bounced | blocked | invalid
    reason: str  # provider's text, addresses already redacted
    # When the provider listed it (the entry's ``created``): becomes participants.bounced_at.
    at: datetime | None = None


@dataclass(frozen=True)
class SuppressionCounts:
    participants: int
    deliveries: int


def apply_suppressions(engine: Engine, found: Sequence[SuppressedAddress]) -> SuppressionCounts:
    """Mark participants with a suppressed address, and their undelivered mail ``bounced``.

    Idempotent: applying the same findings twice changes nothing the second time. Mail to an
    organiser whose address is suppressed is marked too (there is no participant to flag).
    """
    marked_people = marked_mail = 0
    now = datetime.now(UTC)
    by_status: dict[str, dict[str, str]] = {}
    latest: dict[tuple[str, str], datetime] = {}
    for f in found:
        by_status.setdefault(f.email_status, {})[f.email] = f.reason
        at = f.at or now
        latest[f.email_status, f.email] = max(at, latest.get((f.email_status, f.email), at))
    with engine.begin() as conn:
        for status in sorted(by_status, key=EMAIL_STATUS_RANK.__getitem__):
            emails = sorted(by_status[status])
            for start in range(0, len(emails), _CHUNK):
                chunk = emails[start : start + _CHUNK]
                targets = [(e, latest[status, e]) for e in chunk]
                marked_people += mark_participants(conn, participants.c.email_norm, targets, status)
                marked_mail += _bounce_deliveries(conn, chunk, status, by_status[status])
    return SuppressionCounts(participants=max(marked_people, 0), deliveries=max(marked_mail, 0))


def _bounce_deliveries(conn: sa.Connection, emails: list[str], status: str, reasons: dict[str, str]) -> int:
    d = email_deliveries.c
    to_participant = sa.select(participants.c.id, participants.c.email_norm).where(
        participants.c.email_norm.in_(emails)
    )
    to_organiser = sa.select(events.c.id, sa.func.lower(events.c.organiser_email)).where(
        sa.func.lower(events.c.organiser_email).in_(emails)
    )
    found: list[tuple[int, str]] = []
    by_participant = {int(pid): email for pid, email in conn.execute(to_participant)}
    if by_participant:
        rows = conn.execute(
            sa.select(d.id, d.participant_id).where(
                d.participant_id.in_(list(by_participant)), d.status.in_(BOUNCEABLE)
            )
        )
        found += [(did, _why(status, reasons[by_participant[pid]])) for did, pid in rows]
    by_event = {int(eid): email for eid, email in conn.execute(to_organiser)}
    if by_event:
        rows = conn.execute(
            sa.select(d.id, d.event_id).where(
                d.event_id.in_(list(by_event)), d.participant_id.is_(None), d.status.in_(BOUNCEABLE)
            )
        )
        found += [(did, _why(status, reasons[by_event[eid]])) for did, eid in rows]
    return mark_deliveries(conn, found, "bounced")


def _why(status: str, reason: str) -> str:
    return f"{status} (provider suppression list): {reason}"[:500]


# The two changes an undeliverable address makes, shared by the suppression-list poller (above)
# and SendGrid's signed events (steps/delivery_events.py), so both paths agree.


def mark_participants(
    conn: sa.Connection, key: sa.Column[Any], found: Sequence[tuple[object, datetime]], email_status: str
) -> int:
    """Participants whose ``key`` (``id`` or ``email_norm``) is in ``found`` (value, when it
    bounced): ``email_status`` raised to ``email_status`` (never lowered: ``EMAIL_STATUS_RANK``)
    and ``bounced_at`` moved to that time if it is later. Returns how many changed status;
    applying the same finding twice changes nothing."""
    if not found:
        return 0
    p = participants.c
    weaker = [s for s, rank in EMAIL_STATUS_RANK.items() if rank < EMAIL_STATUS_RANK[email_status]]
    changed = conn.execute(
        sa.update(participants)
        .where(key == sa.bindparam("k"), sa.or_(sa.false(), *(p.email_status == s for s in weaker)))
        .values(email_status=email_status),
        [{"k": k} for k, _ in found],
    ).rowcount
    conn.execute(
        sa.update(participants)
        .where(
            key == sa.bindparam("k"),
            p.email_status != "ok",
            sa.or_(p.bounced_at.is_(None), p.bounced_at < sa.bindparam("at")),
        )
        .values(bounced_at=sa.bindparam("at")),
        [{"k": k, "at": at} for k, at in found],
    )
    return max(changed, 0)


def mark_deliveries(conn: sa.Connection, found: Sequence[tuple[int, str]], status: str) -> int:
    """Deliveries (id, why) that had not reached anyone become ``status`` (``bounced`` or
    ``dropped``) with ``why`` as their error; ones already failed, bounced or dropped keep theirs."""
    if not found:
        return 0
    d = email_deliveries.c
    stmt = (
        sa.update(email_deliveries)
        .where(d.id == sa.bindparam("did"), sa.or_(*(d.status == s for s in BOUNCEABLE)))
        .values(status=status, last_error=sa.bindparam("why"), next_attempt_at=None)
    )
    return max(conn.execute(stmt, [{"did": did, "why": why[:500]} for did, why in found]).rowcount, 0)
