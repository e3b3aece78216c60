"""Applying provider suppressions (bounces, blocks, invalid addresses) to participants and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    by_status: dict[str, dict[str, str]] = {}
    for f in found:
        by_status.setdefault(f.email_status, {})[f.email] = f.reason
    with engine.begin() as conn:
        for status in sorted(by_status, key=EMAIL_STATUS_RANK.__getitem__):
            weaker = [s for s, rank in EMAIL_STATUS_RANK.items() if rank < EMAIL_STATUS_RANK[status]]
            emails = sorted(by_status[status])
            for start in range(0, len(emails), _CHUNK):
                chunk = emails[start : start + _CHUNK]
                marked_people += conn.execute(
                    sa.update(participants)
                    .where(participants.c.email_norm.in_(chunk), participants.c.email_status.in_(weaker))
                    .values(email_status=status)
                ).rowcount
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
    stmt = (
        sa.update(email_deliveries)
        .where(d.id == sa.bindparam("did"), d.status.in_(BOUNCEABLE))
        .values(status="bounced", last_error=sa.bindparam("why"))
    )
    params: list[dict[str, object]] = []
    by_participant = {int(pid): email for pid, email in conn.execute(to_participant)}
    if by_participant:
        rows = conn.execute(
            sa.select(d.id, d.participant_id).where(
                d.participant_id.in_(list(by_participant)), d.status.in_(BOUNCEABLE)
            )
        )
        params += [{"did": did, "why": _why(status, reasons[by_participant[pid]])} for did, pid in rows]
    by_event = {int(eid): email for eid, email in conn.execute(to_organiser)}
    if by_event:
        rows = conn.execute(
            sa.select(d.id, d.event_id).where(
                d.event_id.in_(list(by_event)), d.participant_id.is_(None), d.status.in_(BOUNCEABLE)
            )
        )
        params += [{"did": did, "why": _why(status, reasons[by_event[eid]])} for did, eid in rows]
    if not params:
        return 0
    return max(conn.execute(stmt, params).rowcount, 0)


def _why(status: str, reason: str) -> str:
    return f"{status} (provider suppression list): {reason}"[:500]
