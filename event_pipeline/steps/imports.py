"""The import of one upload, one function per asset (and one for a failed import).

Each takes ids and returns small facts (counts, row numbers, paths): what Dagster sees. The rows
themselves stay in the upload store and the participants database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from event_pipeline.access.tokens import TokenCodec
from event_pipeline.inbox.manifest import ManifestError, read_manifest
from event_pipeline.mail.dispatch import DispatchStats
from event_pipeline.settings import Paths
from event_pipeline.steps import corrections, inbox, messages, rows, tickets
from event_pipeline.steps.rows import UploadRejected
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.deliveries import IdRange
from event_pipeline.store.participants import LoadCounts, reaching_database
from event_pipeline.store.tokens import issue_missing_tokens
from event_pipeline.store.uploads import Upload


@dataclass(frozen=True)
class Received:
    upload_id: str
    event_slug: str
    file_name: str
    size_bytes: int
    sha256: str
    strict: bool
    stored_path: str


@dataclass(frozen=True)
class Welcome:
    chunks: int
    # This upload's welcome deliveries by status.
    emails: dict[str, int]
    run: messages.MailRun


@dataclass(frozen=True)
class Finished:
    counts_add_up: bool
    counts: dict[str, int]
    empty_rows: int
    emails: dict[str, int]
    organiser_notified: bool
    mail_note: str | None
    error_report: str | None


def get_upload(engine: Engine, upload_id: str) -> Upload:
    with engine.connect() as conn:
        upload = uploads_store.get_upload(conn, upload_id)
    if upload is None:
        raise UploadRejected(f"upload {upload_id} is not registered")
    if upload.status == "undone":
        # A run launched by hand after `undo` would load the rows the organiser took back.
        raise UploadRejected(f"upload {upload_id} was undone; it is not imported again")
    return upload


def receive(engine: Engine, upload_id: str) -> Received:
    """``upload_file``: the held original into the upload store, verified by its sha256."""
    upload = get_upload(engine, upload_id)
    try:
        stored = inbox.store_upload(upload)
    except inbox.StoredCopyError as exc:
        raise rows.reject(engine, upload, str(exc)) from None
    if upload.status != "done":
        uploads_store.update_upload(engine, upload.id, status="running", reason=None)
    return Received(
        upload_id=upload.id,
        event_slug=inbox.event_slug(engine, upload),
        file_name=upload.original_name,
        size_bytes=upload.size_bytes,
        sha256=upload.sha256,
        strict=upload.strict,
        stored_path=str(stored),
    )


def parse(engine: Engine, paths: Paths, upload_id: str, *, sheet: str | None, max_bytes: int) -> rows.ParseFacts:
    """``parsed_rows``: the sheet chosen at launch, else the one the upload's manifest names."""
    upload = get_upload(engine, upload_id)
    if sheet is None and upload.original_path:
        try:
            sheet = read_manifest(Path(upload.original_path)).sheet
        except ManifestError as exc:
            raise rows.reject(engine, upload, str(exc)) from None
    return rows.parse_upload(engine, paths, upload, max_bytes=max_bytes, sheet=sheet)


def validate(
    engine: Engine, paths: Paths, upload_id: str, *, strict: bool | None, default_region: str
) -> rows.ValidationFacts:
    return rows.validate_upload(
        engine, paths, get_upload(engine, upload_id), strict=strict, default_region=default_region
    )


def load(engine: Engine, paths: Paths, upload_id: str) -> LoadCounts:
    with reaching_database(engine, upload_id):
        upload = get_upload(engine, upload_id)
    counts = rows.load_upload(engine, paths, upload)
    corrections.after_load(engine, upload.id)  # a bounced person back under a new address (same phone)
    return counts


def issue_tokens(engine: Engine, upload_id: str, codec: Callable[[], TokenCodec]) -> int:
    """``access_tokens``: the key is checked first, so nothing is issued under a missing one."""
    codec()
    return issue_missing_tokens(engine, get_upload(engine, upload_id).event_id)


def check_tickets(
    engine: Engine, paths: Paths, upload_id: str, codec: TokenCodec, *, base_url: str
) -> tickets.TicketCheck:
    """``qr_codes``: codes are rendered inside each welcome mail; here one is proven readable."""
    upload = get_upload(engine, upload_id)
    return tickets.check_tickets(
        engine, paths, codec, event_id=upload.event_id, event_slug=inbox.event_slug(engine, upload), base_url=base_url
    )


def plan_welcome(engine: Engine, ctx: messages.MailContext, upload_id: str, *, chunk_size: int) -> list[IdRange]:
    """``welcome_emails``, first step: welcomes queued, the mail still to send cut into chunks."""
    upload = get_upload(engine, upload_id)
    _, chunks = messages.plan_welcome_emails(
        engine, ctx, event_id=upload.event_id, upload_id=upload.id, chunk_size=chunk_size
    )
    return chunks


def send_welcome_chunk(
    engine: Engine,
    ctx: messages.MailContext,
    upload_id: str,
    id_range: IdRange,
    *,
    progress: Callable[[DispatchStats], None] | None = None,
) -> messages.MailRun:
    """``welcome_emails``, one step per chunk: a refused key pauses mail, never fails the import."""
    upload = get_upload(engine, upload_id)
    return messages.send_welcome_chunk(engine, ctx, event_id=upload.event_id, id_range=id_range, progress=progress)


def finish_welcome(engine: Engine, upload_id: str, runs: Sequence[messages.MailRun]) -> Welcome:
    """``welcome_emails``, last step: what the chunks came to, and why mail waits if it does."""
    run = messages.combine_runs(runs)
    uploads_store.update_upload(engine, upload_id, mail_note=run.paused)
    with engine.connect() as conn:
        emails = deliveries_store.status_counts(conn, upload_id=upload_id, kinds=messages.WELCOME)
    return Welcome(chunks=len(runs), emails=emails, run=run)


def finish(engine: Engine, paths: Paths, ctx: messages.MailContext, upload_id: str) -> Finished:
    """``import_report``: the counts checked, the organiser told, the original handed back."""
    upload = get_upload(engine, upload_id)
    ok, counts = rows.invariant_holds(upload)
    uploads_store.update_upload(engine, upload.id, status="done", reason=None)
    notice = messages.notify_organiser(
        engine, ctx, event_id=upload.event_id, upload_id=upload.id, kind="import_complete"
    )
    inbox.finish_upload_file(engine, paths, upload, ok=True)
    with engine.connect() as conn:
        emails = deliveries_store.status_counts(conn, upload_id=upload.id, kinds=("welcome",))
    return Finished(
        counts_add_up=ok,
        counts=counts,
        empty_rows=upload.empty_rows or 0,
        emails=emails,
        organiser_notified=notice.stats.sent > 0,
        mail_note=upload.mail_note,
        error_report=upload.error_report_path,
    )


def fail(engine: Engine, paths: Paths, ctx: messages.MailContext, upload_id: str, *, reason: str) -> bool:
    """An import that ended without success for good: the upload marked, the original put in
    ``rejected/`` with the reason, the organiser told once. False if there was nothing to do."""
    with engine.connect() as conn:
        upload = uploads_store.get_upload(conn, upload_id)
    if upload is None or upload.status in ("done", "undone"):
        return False
    if upload.status == "rejected" and upload.reason:
        status, reason = "rejected", upload.reason
    else:
        status = "failed"
    uploads_store.update_upload(engine, upload.id, status=status, reason=reason)
    inbox.finish_upload_file(engine, paths, upload, ok=False, reason=reason)
    messages.notify_organiser(engine, ctx, event_id=upload.event_id, upload_id=upload.id, kind="import_failed")
    return True
