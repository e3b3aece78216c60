"""Corrected addresses: a later upload's new participant taking a bounced one's place (same
phone), and an address corrected in place from the organiser's correction file."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.participants import lock_event
from event_pipeline.store.resends import Refused
from event_pipeline.store.tables import access_tokens, participants, uploads

# Addresses that did not work: a participant with one is "waiting for a correction".
BAD_ADDRESS = ("bounced", "blocked", "dropped", "invalid")
_CHUNK = 500


@dataclass(frozen=True)
class Replacement:
    old_id: int
    new_id: int


def replace_bounced_by_phone(engine: Engine, upload_id: str) -> list[Replacement]:
    """Participants this upload created whose phone is that of one bounced participant of the
    event: the same person with a corrected address. The old one becomes inactive, points at the
    new one (``replaced_by``) and loses its live token; the new one is mailed like any new row.

    Only one-to-one matches count: a phone two new rows (or two bounced ones) share could be an
    office line, and guessing there would send someone else's ticket. Idempotent: a replaced
    participant is never matched again.
    """
    p = participants.c
    now = datetime.now(UTC)
    with engine.begin() as conn:
        event_id = conn.execute(sa.select(uploads.c.event_id).where(uploads.c.id == upload_id)).scalar()
        if event_id is None:
            return []
        lock_event(conn, int(event_id))
        # The bounced ones first: usually a handful, so a 100k-row first upload costs one query.
        bounced: dict[str, list[int]] = defaultdict(list)
        for pid, phone in conn.execute(
            sa.select(p.id, p.phone).where(
                p.event_id == event_id,
                p.status == "active",
                p.replaced_by.is_(None),
                p.email_status.in_(BAD_ADDRESS),
                p.phone != "",
                sa.or_(p.created_upload_id.is_(None), p.created_upload_id != upload_id),
            )
        ):
            bounced[str(phone)].append(int(pid))
        if not bounced:
            return []
        fresh: dict[str, list[int]] = defaultdict(list)
        phones = sorted(bounced)
        for start in range(0, len(phones), _CHUNK):
            for pid, phone in conn.execute(
                sa.select(p.id, p.phone).where(
                    p.event_id == event_id,
                    p.created_upload_id == upload_id,
                    p.status == "active",
                    p.email_status == "ok",
                    p.phone.in_(phones[start : start + _CHUNK]),
                )
            ):
                fresh[str(phone)].append(int(pid))
        pairs = [
            Replacement(old_id=olds[0], new_id=fresh[phone][0])
            for phone, olds in sorted(bounced.items())
            if len(olds) == 1 and len(fresh.get(phone, [])) == 1
        ]
        for pair in pairs:
            conn.execute(
                sa.update(participants)
                .where(p.id == pair.old_id)
                .values(status="inactive", replaced_by=pair.new_id, updated_at=now)
            )
            conn.execute(
                sa.update(access_tokens)
                .where(access_tokens.c.participant_id == pair.old_id, access_tokens.c.status == "live")
                .values(status="revoked", revoked_at=now, qr_path=None)
            )
    return pairs


def correct_address(conn: sa.Connection, event_id: int, old_email: str, new_email: str) -> int | Refused:
    """Give the participant with ``old_email`` the address ``new_email`` (both normalised), keeping
    its id and token; marks the change (``email_changed_at``) and the address usable again.
    Returns the participant id, or why not. Call inside a transaction."""
    p = participants.c
    old = conn.execute(
        sa.select(p.id, p.status, p.replaced_by)
        .where(p.event_id == event_id, p.email_norm == old_email)
        .with_for_update()
    ).first()
    if old is None:
        return Refused(0, "unknown_old_address", "no participant of this event has the old address")
    pid = int(old.id)
    if old.replaced_by is not None:
        return Refused(pid, "replaced", f"participant {pid} was replaced by participant {old.replaced_by}")
    if old.status != "active":
        return Refused(pid, "inactive", f"participant {pid} is inactive")
    taken = conn.execute(sa.select(p.id).where(p.event_id == event_id, p.email_norm == new_email)).scalar()
    if taken is not None:
        return Refused(pid, "new_address_taken", f"the new address already belongs to participant {taken}")
    now = datetime.now(UTC)
    conn.execute(
        sa.update(participants)
        .where(p.id == pid)
        .values(email_norm=new_email, email_status="ok", email_changed_at=now, updated_at=now)
    )
    return pid
