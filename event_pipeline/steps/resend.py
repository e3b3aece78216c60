"""Resending tickets: to one participant, to an upload's undelivered participants, to everyone
whose address changed after it bounced; and ``reissue-token`` mailing the new ticket.

Every resend is a new delivery queued here and sent through ``messages.send_mail`` (the same
claims, retries and pause as the welcome mail). A participant with ticket mail still on its way
is refused, so a resend never becomes a second copy of a message in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from event_pipeline.access.checkin import ReissueOutcome, reissue
from event_pipeline.access.signed import TokenSigner
from event_pipeline.access.tokens import TokenCodec
from event_pipeline.steps import messages
from event_pipeline.store import events as events_store
from event_pipeline.store import resends as resends_store
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.events import Event
from event_pipeline.store.resends import Queued, Refused

QUEUE_CHUNK = 1000


class ResendError(ValueError):
    """The request names nothing that exists (event, upload, participant); said in one sentence."""


@dataclass(frozen=True)
class ResendResult:
    event: str
    dry_run: bool
    queued: list[Queued] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    # Participants of an upload that a ticket mail already reached (--upload skips them).
    already_delivered: int = 0
    # Of the queued deliveries, how many went out in this call (the rest: retries, or paused).
    sent: int = 0
    mail_paused: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "dry_run": self.dry_run,
            "queued": [
                # A dry run's rows were rolled back: there is no delivery to name.
                {"participant_id": q.participant_id, "delivery_id": None if self.dry_run else q.delivery_id}
                for q in self.queued
            ],
            "refused": [{"participant_id": r.participant_id, "code": r.code, "reason": r.reason} for r in self.refused],
            "already_delivered": self.already_delivered,
            "sent": self.sent,
            "mail_paused": self.mail_paused,
        }


def find_event(engine: Engine, slug: str) -> Event:
    with engine.connect() as conn:
        event = events_store.get_event(conn, slug)
    if event is None:
        raise ResendError(f"no event with slug {slug!r} (see `event-pipeline event list`)")
    return event


def resend(
    engine: Engine,
    ctx: messages.MailContext | None,
    *,
    event_slug: str,
    participant_id: int | None = None,
    email: str | None = None,
    upload_id: str | None = None,
    bounced: bool = False,
    dry_run: bool = False,
) -> ResendResult:
    """Queue a ticket for the chosen participants and send it now (``ctx``; None only on a dry run).

    Exactly one of ``participant_id``, ``email``, ``upload_id`` and ``bounced`` chooses whom. A dry
    run goes through the same checks inside a transaction that is rolled back.
    """
    from event_pipeline.identity import mask_email, normalise_email

    if sum(x is not None for x in (participant_id, email, upload_id)) + int(bounced) != 1:
        raise ResendError("choose exactly one of a participant, an upload or --bounced")
    event = find_event(engine, event_slug)
    already = 0
    with engine.connect() as conn:
        if email is not None:
            found = resends_store.participant_by_email(conn, event.id, normalise_email(email))
            if found is None:
                raise ResendError(f"no participant of {event.slug} has the address {mask_email(email)}")
            chosen = [found]
        elif participant_id is not None:
            chosen = [participant_id]
        elif upload_id is not None:
            upload = uploads_store.get_upload(conn, upload_id)
            if upload is None or upload.event_id != event.id:
                raise ResendError(f"no upload {upload_id!r} of event {event.slug}")
            chosen, already = resends_store.upload_participants_undelivered(conn, event.id, upload_id)
        else:
            chosen = resends_store.bounced_then_changed(conn, event.id)
    queued, refused = queue_tickets(engine, event, chosen, upload_id=upload_id, dry_run=dry_run)
    result = ResendResult(event=event.slug, dry_run=dry_run, queued=queued, refused=refused, already_delivered=already)
    if dry_run or not queued:
        return result
    assert ctx is not None, "sending needs a mail context"
    return send_queued(engine, ctx, event, result)


def queue_tickets(
    engine: Engine, event: Event, participant_ids: list[int], *, upload_id: str | None, dry_run: bool = False
) -> tuple[list[Queued], list[Refused]]:
    """A transaction per chunk of participants; a refusal writes nothing, so it never holds back
    the others in its chunk."""
    queued: list[Queued] = []
    refused: list[Refused] = []
    for start in range(0, len(participant_ids), QUEUE_CHUNK):
        with engine.connect() as conn:
            trans = conn.begin()
            chunk = participant_ids[start : start + QUEUE_CHUNK]
            for outcome in resends_store.queue_tickets(conn, event.id, chunk, upload_id=upload_id):
                if isinstance(outcome, Queued):
                    queued.append(outcome)
                else:
                    refused.append(outcome)
            if dry_run:
                trans.rollback()
            else:
                trans.commit()
    return queued, refused


def send_queued(engine: Engine, ctx: messages.MailContext, event: Event, result: ResendResult) -> ResendResult:
    """Send what is due of the event's ticket mail (the new rows among it) and count the new ones sent."""
    run = messages.send_mail(engine, ctx, event_id=event.id, kinds=(resends_store.TICKET,))
    with engine.connect() as conn:
        statuses = resends_store.ticket_statuses(conn, [q.delivery_id for q in result.queued])
    sent = sum(1 for s in statuses.values() if s == "sent")
    return ResendResult(
        event=result.event,
        dry_run=False,
        queued=result.queued,
        refused=result.refused,
        already_delivered=result.already_delivered,
        sent=sent,
        mail_paused=run.paused,
    )


@dataclass(frozen=True)
class ReissuedTicket:
    outcome: ReissueOutcome
    mail: ResendResult | None  # None: --no-mail

    def mail_summary(self) -> str:
        """One line on what became of the new ticket's mail."""
        if self.mail is None:
            return "not mailed (--no-mail)"
        if self.mail.refused:
            return f"not mailed again: {self.mail.refused[0].reason}"
        delivery = self.mail.queued[0].delivery_id
        if self.mail.sent:
            return f"new ticket sent (delivery {delivery})"
        if self.mail.mail_paused:
            return f"new ticket queued (delivery {delivery}); {self.mail.mail_paused}"
        return f"new ticket queued (delivery {delivery}); it is retried by the mail schedule"


def reissue_and_mail(
    engine: Engine,
    codec: TokenCodec,
    participant_id: int,
    *,
    base_url: str,
    ctx: messages.MailContext | None,
    signer: TokenSigner | None = None,
    qr_out: Path | None = None,
) -> ReissuedTicket:
    """A new token for the participant, then (with ``ctx``) its ticket mailed as a resend.

    Ticket mail already on its way is not doubled: it renders its QR code when it is sent, so it
    carries the new code anyway; the result says it was refused as in flight.
    """
    outcome = reissue(engine, codec, participant_id, base_url=base_url, signer=signer, qr_out=qr_out)
    if ctx is None:
        return ReissuedTicket(outcome, None)
    event = find_event(engine, outcome.event)
    queued, refused = queue_tickets(engine, event, [participant_id], upload_id=None)
    result = ResendResult(event=event.slug, dry_run=False, queued=queued, refused=refused)
    return ReissuedTicket(outcome, send_queued(engine, ctx, event, result) if queued else result)
