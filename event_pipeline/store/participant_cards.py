"""One participant as door staff and organisers ask about them: who, their ticket, their mail.

Read-only. The card holds the participant's name and address because the person asking needs
them; whoever shows it decides how much (the CLI masks the address).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from event_pipeline.store.db import as_utc
from event_pipeline.store.tables import access_tokens, email_deliveries, events, participants

WELCOME = "welcome"


@dataclass(frozen=True)
class ParticipantCard:
    id: int
    event_slug: str
    name: str
    email: str
    status: str  # active | inactive
    email_status: str  # ok | bounced | blocked | invalid
    token: str | None  # status of the newest token (live | revoked); None before tokens are issued
    checked_in_at: datetime | None
    welcome_mail: str | None  # status of the welcome delivery; None if none was queued
    welcome_attempts: int


def _card_select() -> sa.Select[Any]:
    # The newest token is the live one when there is one: a reissue revokes before it issues.
    newest = (
        sa.select(access_tokens.c.participant_id, sa.func.max(access_tokens.c.id).label("token_id"))
        .group_by(access_tokens.c.participant_id)
        .subquery("newest")
    )
    welcome = email_deliveries.alias("welcome")
    return (
        sa.select(
            participants.c.id,
            events.c.slug.label("event_slug"),
            participants.c.name,
            participants.c.email_norm.label("email"),
            participants.c.status,
            participants.c.email_status,
            access_tokens.c.status.label("token"),
            access_tokens.c.checked_in_at,
            welcome.c.status.label("welcome_mail"),
            sa.func.coalesce(welcome.c.attempts, 0).label("welcome_attempts"),
        )
        .join(events, events.c.id == participants.c.event_id)
        .outerjoin(newest, newest.c.participant_id == participants.c.id)
        .outerjoin(access_tokens, access_tokens.c.id == newest.c.token_id)
        .outerjoin(welcome, sa.and_(welcome.c.participant_id == participants.c.id, welcome.c.kind == WELCOME))
    )


def _to_card(row: sa.Row[Any] | None) -> ParticipantCard | None:
    if row is None:
        return None
    values = dict(row._mapping)
    if values["checked_in_at"] is not None:
        values["checked_in_at"] = as_utc(values["checked_in_at"])
    return ParticipantCard(**values)


def card_for(conn: sa.Connection, participant_id: int) -> ParticipantCard | None:
    return _to_card(conn.execute(_card_select().where(participants.c.id == participant_id)).first())


def find_by_email(conn: sa.Connection, event_id: int, email_norm: str) -> ParticipantCard | None:
    """The event's participant with this normalised address (the key participants are stored by)."""
    stmt = _card_select().where(participants.c.event_id == event_id, participants.c.email_norm == email_norm)
    return _to_card(conn.execute(stmt).first())
