"""Composing messages for queued deliveries, and queueing the organiser's notices."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.access.qr import render_qr_pngs
from event_pipeline.access.tokens import TokenCodec, checkin_url
from event_pipeline.mail.dispatch import DispatchAborted, DispatchStats, dispatch_due
from event_pipeline.mail.message import Attachment, InlineImage, OutgoingMessage
from event_pipeline.mail.policy import MAX_ATTEMPTS, RETRY_DELAYS, resend_cutoff
from event_pipeline.mail.render import Rendered, TemplateRenderer, default_renderer, template_language
from event_pipeline.mail.senders import Sender
from event_pipeline.processes import claimant as process_claimant
from event_pipeline.processes import claimant_alive, die_with_owner, owner
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
# A resent ticket ("ticket") is the welcome mail again, under its own template (same code).
TICKET_KINDS = ("welcome", "ticket")
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
    # How another process builds the same sender (``mail.backends.make_sender`` arguments); with
    # ``processes`` > 1 a big batch of welcome mail is dispatched from that many processes, since
    # rendering QR codes and MIME is CPU work that threads cannot spread over cores.
    sender_args: dict[str, Any] | None = field(default=None, repr=False)
    processes: int = 1
    # Who this dispatch claims deliveries as, and how to tell whether another holder is dead
    # (True/False; None: cannot tell, so only the stale-claim limit releases its rows). Dagster
    # passes its run id and run status; the default is this process and the process table.
    claimant: str = field(default_factory=process_claimant)
    holder_alive: Callable[[str], bool | None] | None = field(default=None, repr=False, compare=False)

    @property
    def templates(self) -> TemplateRenderer:
        return self.renderer or default_renderer()

    def to_organiser(
        self,
        event: Event,
        rendered: Rendered,
        *,
        custom_args: dict[str, str],
        key: str,
        attachments: tuple[Attachment, ...] = (),
    ) -> OutgoingMessage:
        """A rendered message to the event's organiser (notices, the bounce digest)."""
        return OutgoingMessage(
            attachments=attachments,
            to=event.organiser_email,
            from_email=self.from_email,
            from_name=self.from_name,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            custom_args=custom_args,
            key=key,
        )


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
    welcome = [d for d in deliveries if d.kind in TICKET_KINDS and d.participant_id is not None]
    with engine.connect() as conn:
        events = {eid: events_store.get_event_by_id(conn, eid) for eid in {d.event_id for d in deliveries}}
        people = _welcome_rows(conn, [d.participant_id for d in welcome if d.participant_id is not None])
        for d in deliveries:
            if d.kind not in TICKET_KINDS:
                msg = _notice_message(conn, ctx, events[d.event_id], d)
                if msg is not None:
                    built[d.id] = msg
    sendable = []
    for d in welcome:
        row = people.get(d.participant_id or -1)
        if row is not None and row["status"] == "active" and row["email_status"] == "ok":
            sendable.append((d, row, checkin_url(ctx.checkin_base_url, ctx.codec.token_for(row["public_id"]))))
    # Rendered here, in the process that sends it: no code (a working token) rests in a file.
    codes = render_qr_pngs(url for _, _, url in sendable)
    for (d, row, url), qr_png in zip(sendable, codes, strict=True):
        event = events[d.event_id]
        context = {
            "participant": {"name": row["name"]},
            "event": _event_context(event),
            "checkin_url": url,
            "qr_cid": QR_CID,
        }
        rendered = ctx.templates.render(d.kind, event.language, context)
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
        )
        .join(
            access_tokens,
            sa.and_(access_tokens.c.participant_id == participants.c.id, access_tokens.c.status == "live"),
        )
        .where(participants.c.id.in_(participant_ids))
    )
    return {int(r.id): dict(r._mapping) for r in conn.execute(stmt)}


def _notice_message(conn: sa.Connection, ctx: MailContext, event: Event, d: Delivery) -> OutgoingMessage | None:
    """The organiser's import notice or bounce digest; None for a kind nobody sends."""
    # Imported here: findings bring pandera and pandas, which the processes that send a chunk of
    # welcome mail (one started per chunk) would otherwise import for nothing (~0.5 s each).
    from event_pipeline.steps import digest_mail, notices

    if d.kind == digest_mail.KIND:
        return digest_mail.digest_message(
            conn, ctx, event, d, event_context=_event_context(event), custom_args=_custom_args(d)
        )
    if d.kind not in ORGANISER_KINDS:
        return None
    upload = uploads_store.get_upload(conn, d.upload_id) if d.upload_id else None
    if d.kind == "import_complete" and upload is None:
        return None
    # Counts, findings and reasons in the language of the templates the event gets.
    language = template_language(event.language)
    found, attachments = notices.findings_context(upload, language)
    if d.kind == "import_complete" and upload is not None:
        context: dict[str, Any] = {
            "event": _event_context(event),
            "upload": {"id": upload.id, "original_name": upload.original_name},
            "counts": upload.counts(),
            "mail_note": upload.mail_note or "",
            **found,
        }
    else:
        context = {
            "event": _event_context(event),
            "upload_name": upload.original_name if upload else "(unknown file)",
            "upload_id": upload.id if upload else "",
            "reason": notices.failure_reason(upload, language),
            **found,
        }
    rendered = ctx.templates.render(d.kind, event.language, context)
    return ctx.to_organiser(
        event, rendered, custom_args=_custom_args(d), key=d.dedupe_key, attachments=tuple(attachments)
    )


@dataclass(frozen=True)
class MailRun:
    """What one attempt to send came to: counts, and why mail is paused if it is."""

    stats: DispatchStats
    paused: str | None = None
    # True only for the call that started a pause: whoever reports it alerts people once.
    new_pause: bool = False
    # Claims of dead dispatchers put back before sending (a crashed run's in-flight mail).
    released: int = 0

    def as_metadata(self) -> dict[str, int | str]:
        return {
            **self.stats.as_metadata(),
            **({"released_claims": self.released} if self.released else {}),
            **({"mail_paused": self.paused} if self.paused else {}),
        }


def combine_runs(runs: Sequence[MailRun]) -> MailRun:
    """Several dispatches (an upload's chunks) as one: counts summed, the first pause reported."""
    paused = next((r.paused for r in runs if r.paused), None)
    return MailRun(
        _sum([r.stats for r in runs]),
        paused=paused,
        new_pause=any(r.new_pause for r in runs),
        released=sum(r.released for r in runs),
    )


# Below this many due messages a second process costs more to start (~1 s) than it saves.
PARALLEL_MIN = 4000


def dispatch(engine: Engine, ctx: MailContext, **kwargs: Any) -> DispatchStats:
    """Dispatch in this process, plus ``ctx.processes - 1`` more when enough is due.

    Every process claims its own deliveries from the database (``claim_due``), so they share
    nothing else; counts are summed. A refusal in any process stops all of them.
    """
    extra = ctx.processes - 1 if ctx.sender_args is not None else 0
    scope = {k: v for k, v in kwargs.items() if k in ("event_id", "kinds", "id_range")}
    if extra > 0:
        with engine.connect() as conn:
            due = deliveries_store.count_claimable(conn, now=datetime.now(UTC), **scope)
        extra = extra if due >= PARALLEL_MIN else 0
    if extra <= 0:
        return _dispatch_here(engine, ctx, **kwargs)
    spec = _ChildMail(
        url=engine.url.render_as_string(hide_password=False),
        sender_args=ctx.sender_args or {},
        ctx=replace(ctx, sender=_NO_SENDER, renderer=None, sender_args=None, processes=1, holder_alive=None),
        scope=scope,
    )
    mp = multiprocessing.get_context("spawn")  # never fork a process that runs threads (Dagster's)
    with ProcessPoolExecutor(max_workers=extra, mp_context=mp, initializer=die_with_owner, initargs=owner()) as pool:
        children = [pool.submit(_dispatch_in_child, spec) for _ in range(extra)]
        try:
            mine: DispatchStats | DispatchAborted = _dispatch_here(engine, ctx, **kwargs)
        except DispatchAborted as exc:
            mine = exc
        results = [mine, *(_from_child(f.result()) for f in children)]
    aborted = [r for r in results if isinstance(r, DispatchAborted)]
    if aborted:
        raise aborted[0]
    return _sum([r for r in results if isinstance(r, DispatchStats)])


def _dispatch_here(engine: Engine, ctx: MailContext, **kwargs: Any) -> DispatchStats:
    return dispatch_due(
        engine,
        ctx.sender,
        lambda batch: build_messages(engine, ctx, batch),
        workers=ctx.workers,
        claimant=ctx.claimant,
        **kwargs,
    )


@dataclass(frozen=True)
class _ChildMail:
    url: str
    sender_args: dict[str, Any] = field(repr=False)
    ctx: MailContext
    scope: dict[str, Any]


class _NoSender:
    """Placeholder for the sender in a context crossing to another process (senders hold
    sockets and files); the child builds its own from ``sender_args``."""

    name = "none"
    idempotent = False

    def send(self, message: OutgoingMessage) -> Any:
        raise RuntimeError("no sender in this process")


_NO_SENDER = _NoSender()


def _dispatch_in_child(spec: _ChildMail) -> DispatchStats | tuple[str, str]:
    from event_pipeline.mail.backends import make_sender
    from event_pipeline.store.db import make_engine

    ctx = replace(spec.ctx, sender=make_sender(**spec.sender_args))
    try:
        return _dispatch_here(make_engine(spec.url), ctx, **spec.scope)
    except DispatchAborted as exc:  # its keyword-only reason does not survive pickling
        return (str(exc), exc.reason)


def _from_child(result: DispatchStats | tuple[str, str]) -> DispatchStats | DispatchAborted:
    return result if isinstance(result, DispatchStats) else DispatchAborted(result[0], reason=result[1])


def _sum(parts: list[DispatchStats]) -> DispatchStats:
    total = DispatchStats()
    for part in parts:
        for name in ("claimed", "sent", "retrying", "failed", "skipped", "throttled", "waited_s"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.attempts.update(part.attempts)
    return total


def send_mail(engine: Engine, ctx: MailContext, *, now: datetime | None = None, **scope: Any) -> MailRun:
    """Send what is due in ``scope`` unless the provider refuses us.

    A refusal (401/403, or no key where SendGrid is configured) pauses mail for this backend:
    claims go back, nothing fails or counts as sent, and for ``PAUSE`` nobody asks the provider
    again, so retried steps and schedules do not hammer a key that is wrong. After that one
    dispatch probes the key; success ends the pause.
    """
    now = now or datetime.now(UTC)
    released = release_abandoned_claims(engine, ctx, now=now)
    with engine.connect() as conn:
        pause = pauses_store.get_pause(conn, ctx.sender.name)
    if pause is not None and pause.probe_after > now:
        return MailRun(DispatchStats(), paused=pause.reason, released=released)
    try:
        stats = dispatch(engine, ctx, **scope)
    except DispatchAborted as exc:
        reason = f"mail paused: {exc.reason}"
        started = pauses_store.set_pause(engine, ctx.sender.name, reason, probe_after=now + PAUSE)
        if started:
            log.error("%s; fix the configuration, mail resumes by itself within %s", reason, PAUSE)
        return MailRun(DispatchStats(), paused=reason, new_pause=started, released=released)
    if pause is not None:
        pauses_store.clear_pause(engine, ctx.sender.name)
    return MailRun(stats, released=released)


def release_abandoned_claims(engine: Engine, ctx: MailContext, *, now: datetime | None = None) -> int:
    """Put back deliveries left ``sending`` by dispatchers known to be dead (a killed run, a
    crashed process), so they go out in this dispatch rather than after the stale-claim limit.
    Their messages may have reached the provider: without signed events that is the documented
    duplicate window; with them, a claim waits ``PROCESSED_EVENT_WAIT`` for its event first."""
    alive = ctx.holder_alive or claimant_alive
    with engine.connect() as conn:
        holders = deliveries_store.claim_holders(conn)
    dead = [h for h in holders if h != ctx.claimant and alive(h) is False]
    cutoff = resend_cutoff(ctx.sender.name, now or datetime.now(UTC))
    released = deliveries_store.release_claims_of(engine, dead, max_attempts=MAX_ATTEMPTS, claimed_before=cutoff)
    if released:
        log.warning("released %d delivery claim(s) of %d stopped dispatcher(s)", released, len(dead))
    return released


WELCOME = ("welcome",)


def plan_welcome_emails(
    engine: Engine, ctx: MailContext, *, event_id: int, upload_id: str, chunk_size: int
) -> tuple[int, list[deliveries_store.IdRange]]:
    """Queue a welcome for every participant of the event that has none yet, take back the claims
    of dispatchers that died, and cut what is left to send into chunks (id ranges) that separate
    steps send. Returns (queued now, the chunks)."""
    queued = deliveries_store.enqueue_welcome(engine, event_id, upload_id)
    release_abandoned_claims(engine, ctx)
    with engine.connect() as conn:
        chunks = deliveries_store.open_id_ranges(conn, event_id=event_id, kinds=WELCOME, size=chunk_size)
    return queued, chunks


def send_welcome_chunk(
    engine: Engine,
    ctx: MailContext,
    *,
    event_id: int,
    id_range: deliveries_store.IdRange,
    progress: Callable[[DispatchStats], None] | None = None,
) -> MailRun:
    """Send the welcomes of one chunk; a step repeated after a crash sends only what is still due."""
    return send_mail(engine, ctx, event_id=event_id, kinds=WELCOME, id_range=id_range, progress=progress)


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
    cutoff = resend_cutoff(ctx.sender.name, datetime.now(UTC))
    released = deliveries_store.release_stale_claims(
        engine, older_than=stale_after, max_attempts=MAX_ATTEMPTS, claimed_before=cutoff
    )
    return released, send_mail(engine, ctx)
