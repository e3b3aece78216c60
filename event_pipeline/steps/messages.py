"""Composing messages for queued deliveries, and queueing the organiser's notices."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.access.tokens import TokenCodec, checkin_url
from event_pipeline.mail.dispatch import DispatchAborted, DispatchStats, dispatch_due
from event_pipeline.mail.message import InlineImage, OutgoingMessage
from event_pipeline.mail.policy import MAX_ATTEMPTS, RETRY_DELAYS
from event_pipeline.mail.render import TemplateRenderer, default_renderer
from event_pipeline.mail.senders import Sender
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import events as events_store
from event_pipeline.store import pauses as pauses_store
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.deliveries import Delivery
from event_pipeline.store.events import Event
from event_pipeline.store.tables import access_tokens, participants

log = logging.getLogger(__name__)

QR_CID = "checkin-qr"
ORGANISER_KINDS = ("import_complete", "import_failed")
# How long a refused key keeps mail paused before one dispatch probes it again: the delay the
# dispatcher gives the claims it puts back, so they come due just as the pause ends.
PAUSE = RETRY_DELAYS[0]


@dataclass(frozen=True)
class MailContext:
    sender: Sender
    from_email: str
    from_name: str
    codec: TokenCodec
    checkin_base_url: str
    renderer: TemplateRenderer | None = None
    workers: int = 8

    @property
    def templates(self) -> TemplateRenderer:
        return self.renderer or default_renderer()


def _event_context(event: Event) -> dict[str, Any]:
    starts = event.starts_at.strftime("%Y-%m-%d %H:%M") if event.starts_at else ""
    return {"name": event.name, "starts_at": starts, "location": event.location, "slug": event.slug}


def _custom_args(d: Delivery) -> dict[str, str]:
    args = {"delivery_id": str(d.id), "event_id": str(d.event_id), "kind": d.kind}
    if d.participant_id is not None:
        args["participant_id"] = str(d.participant_id)
    return args


def build_messages(engine: Engine, ctx: MailContext, deliveries: Sequence[Delivery]) -> dict[int, OutgoingMessage]:
    """Messages for the deliveries that can still be sent (others are left out and get dropped)."""
    built: dict[int, OutgoingMessage] = {}
    welcome = [d for d in deliveries if d.kind == "welcome" and d.participant_id is not None]
    with engine.connect() as conn:
        events = {eid: events_store.get_event_by_id(conn, eid) for eid in {d.event_id for d in deliveries}}
        people = _welcome_rows(conn, [d.participant_id for d in welcome if d.participant_id is not None])
        for d in deliveries:
            if d.kind in ORGANISER_KINDS:
                msg = _organiser_message(conn, ctx, events[d.event_id], d)
                if msg is not None:
                    built[d.id] = msg
    for d in welcome:
        row = people.get(d.participant_id or -1)
        if row is None or row["status"] != "active" or row["email_status"] != "ok" or not row["qr_path"]:
            continue
        try:
            qr_png = Path(row["qr_path"]).read_bytes()
        except OSError:
            continue
        event = events[d.event_id]
        token = ctx.codec.token_for(row["public_id"])
        context = {
            "participant": {"name": row["name"]},
            "event": _event_context(event),
            "checkin_url": checkin_url(ctx.checkin_base_url, token),
            "qr_cid": QR_CID,
        }
        rendered = ctx.templates.render("welcome", event.language, context)
        built[d.id] = OutgoingMessage(
            to=row["email_norm"],
            from_email=ctx.from_email,
            from_name=ctx.from_name,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            custom_args=_custom_args(d),
            inline_images=(InlineImage(content_id=QR_CID, filename="checkin-qr.png", data=qr_png),),
            key=d.dedupe_key,
        )
    return built


def _welcome_rows(conn: sa.Connection, participant_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not participant_ids:
        return {}
    stmt = (
        sa.select(
            participants.c.id,
            participants.c.name,
            participants.c.email_norm,
            participants.c.status,
            participants.c.email_status,
            access_tokens.c.public_id,
            access_tokens.c.qr_path,
        )
        .join(
            access_tokens,
            sa.and_(access_tokens.c.participant_id == participants.c.id, access_tokens.c.status == "live"),
        )
        .where(participants.c.id.in_(participant_ids))
    )
    return {int(r.id): dict(r._mapping) for r in conn.execute(stmt)}


def _organiser_message(conn: sa.Connection, ctx: MailContext, event: Event, d: Delivery) -> OutgoingMessage | None:
    upload = uploads_store.get_upload(conn, d.upload_id) if d.upload_id else None
    if d.kind == "import_complete":
        if upload is None:
            return None
        context: dict[str, Any] = {
            "event": _event_context(event),
            "upload": {"id": upload.id, "original_name": upload.original_name},
            "counts": upload.counts(),
            "error_report": upload.error_report_path or "",
            "mail_note": upload.mail_note or "",
        }
    else:
        context = {
            "event": _event_context(event),
            "upload_name": upload.original_name if upload else "(unknown file)",
            "upload_id": upload.id if upload else "",
            "reason": (upload.reason if upload and upload.reason else "the import stopped with an internal error"),
        }
    rendered = ctx.templates.render(d.kind, event.language, context)
    return OutgoingMessage(
        to=event.organiser_email,
        from_email=ctx.from_email,
        from_name=ctx.from_name,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        custom_args=_custom_args(d),
        key=d.dedupe_key,
    )


@dataclass(frozen=True)
class MailRun:
    """What one attempt to send came to: counts, and why mail is paused if it is."""

    stats: DispatchStats
    paused: str | None = None
    # True only for the call that started a pause: whoever reports it alerts people once.
    new_pause: bool = False

    def as_metadata(self) -> dict[str, int | str]:
        return {**self.stats.as_metadata(), **({"mail_paused": self.paused} if self.paused else {})}


def dispatch(engine: Engine, ctx: MailContext, **kwargs: Any) -> DispatchStats:
    return dispatch_due(
        engine, ctx.sender, lambda batch: build_messages(engine, ctx, batch), workers=ctx.workers, **kwargs
    )


def send_mail(engine: Engine, ctx: MailContext, *, now: datetime | None = None, **scope: Any) -> MailRun:
    """Send what is due in ``scope`` unless the provider refuses us.

    A refusal (401/403, or no key where SendGrid is configured) pauses mail for this backend:
    claims go back, nothing fails or counts as sent, and for ``PAUSE`` nobody asks the provider
    again, so retried steps and schedules do not hammer a key that is wrong. After that one
    dispatch probes the key; success ends the pause.
    """
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        pause = pauses_store.get_pause(conn, ctx.sender.name)
    if pause is not None and pause.probe_after > now:
        return MailRun(DispatchStats(), paused=pause.reason)
    try:
        stats = dispatch(engine, ctx, **scope)
    except DispatchAborted as exc:
        reason = f"mail paused: {exc.reason}"
        started = pauses_store.set_pause(engine, ctx.sender.name, reason, probe_after=now + PAUSE)
        if started:
            log.error("%s; fix the configuration, mail resumes by itself within %s", reason, PAUSE)
        return MailRun(DispatchStats(), paused=reason, new_pause=started)
    if pause is not None:
        pauses_store.clear_pause(engine, ctx.sender.name)
    return MailRun(stats)


def send_welcome_emails(
    engine: Engine,
    ctx: MailContext,
    *,
    event_id: int,
    upload_id: str,
    progress: Callable[[DispatchStats], None] | None = None,
) -> tuple[int, MailRun]:
    """Queue a welcome for every participant of the event that has none yet, then send.
    Returns (queued now, what sending came to)."""
    queued = deliveries_store.enqueue_welcome(engine, event_id, upload_id)
    return queued, send_mail(engine, ctx, event_id=event_id, kinds=("welcome",), progress=progress)


def notify_organiser(engine: Engine, ctx: MailContext, *, event_id: int, upload_id: str, kind: str) -> MailRun:
    """Queue (once per upload and kind) and try to send an organiser notice.

    A provider refusing us leaves the notice queued for the mail schedule: the import (or the
    failure handling) that calls this is finished either way and must not fail over it.
    """
    with engine.begin() as conn:
        deliveries_store.enqueue(
            conn,
            [
                {
                    "event_id": event_id,
                    "upload_id": upload_id,
                    "kind": kind,
                    "dedupe_key": f"{kind}:{upload_id}",
                }
            ],
        )
    return send_mail(engine, ctx, event_id=event_id, kinds=(kind,))


def send_due_emails(engine: Engine, ctx: MailContext, *, stale_after: timedelta) -> tuple[int, MailRun]:
    """The mail schedule's job: release claims of dispatchers that died, send what is due.
    Returns (claims released, what sending came to)."""
    released = deliveries_store.release_stale_claims(engine, older_than=stale_after, max_attempts=MAX_ATTEMPTS)
    return released, send_mail(engine, ctx)
