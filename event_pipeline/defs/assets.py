"""The per-upload assets. Each one is a thin call into ``event_pipeline.steps``; metadata holds
counts, row numbers and hashed ids only, never emails, phones, names or tokens."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from event_pipeline.defs.partitions import uploads_partitions
from event_pipeline.defs.resources import (
    AccessTokensResource,
    DatabaseResource,
    MailerResource,
    StorageResource,
)
from event_pipeline.intake import ParsedTable
from event_pipeline.steps import inbox, messages, rows, tickets
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import events as events_store
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.uploads import Upload

GROUP = "participant_import"
# Transient trouble (DB restarting, disk hiccup) is retried per step; bad data raises
# dg.Failure(allow_retries=False) and is not.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@dataclass(frozen=True)
class UploadFacts:
    upload_id: str
    event_id: int
    event_slug: str


class ParseConfig(dg.Config):
    """Launchpad options for reading the file (default: the upload's manifest)."""

    sheet: str | None = None


class ValidationConfig(dg.Config):
    """Launchpad options: strict = all or nothing (default: as chosen at upload time)."""

    strict: bool | None = None


def _upload(db: DatabaseResource, upload_id: str) -> Upload:
    with db.engine().connect() as conn:
        upload = uploads_store.get_upload(conn, upload_id)
    if upload is None:
        raise dg.Failure(f"upload {upload_id} is not registered", allow_retries=False)
    return upload


def _reject(reason: str) -> dg.Failure:
    return dg.Failure(description=reason, allow_retries=False, metadata={"reason": reason})


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"file"},
    description="The uploaded file as received: stored bytes and facts (event, size, sha256).",
)
def upload_file(context: dg.AssetExecutionContext, db: DatabaseResource) -> UploadFacts:
    upload = _upload(db, context.partition_key)
    engine = db.engine()
    stored = Path(upload.stored_path)
    if not stored.is_file():
        raise _reject(f"stored copy of {upload.original_name} is missing ({upload.id})")
    if inbox.sha256_file(stored) != upload.sha256:
        raise _reject(f"stored copy of {upload.original_name} does not match its sha256; re-upload the file")
    with engine.connect() as conn:
        event = events_store.get_event_by_id(conn, upload.event_id)
    if upload.status not in ("done",):
        uploads_store.update_upload(engine, upload.id, status="running", reason=None)
    context.add_output_metadata(
        {
            "event": event.slug,
            "size_bytes": upload.size_bytes,
            "sha256": upload.sha256,
            "strict": upload.strict,
            "file_name": upload.original_name,
        }
    )
    return UploadFacts(upload_id=upload.id, event_id=upload.event_id, event_slug=event.slug)


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"pandas"},
    description="Every data row of the file as text, with the row number the organiser sees.",
)
def parsed_rows(
    context: dg.AssetExecutionContext,
    config: ParseConfig,
    upload_file: UploadFacts,
    db: DatabaseResource,
    storage: StorageResource,
) -> ParsedTable:
    upload = _upload(db, upload_file.upload_id)
    sheet = config.sheet
    if sheet is None and upload.inbox_path:
        try:
            sheet = inbox.read_manifest(Path(upload.inbox_path)).sheet
        except ValueError as exc:
            raise _reject(str(exc)) from None
    try:
        parsed = rows.parse_upload(db.engine(), upload, max_bytes=storage.max_upload_bytes, sheet=sheet)
    except rows.UploadRejected as exc:
        raise _reject(str(exc)) from None
    context.add_output_metadata(
        {
            "rows": parsed.rows,
            "empty_rows": parsed.empty_rows,
            "format": parsed.format,
            "encoding": parsed.encoding or "",
            "header_row": parsed.header_row,
            "columns": dg.MetadataValue.json(parsed.columns),
            "extra_columns": len(parsed.extra_columns),
        }
    )
    return parsed


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"pandera"},
    description="Rows checked by the pandera schema and normalised; invalid rows go to the error report.",
)
def validated_rows(
    context: dg.AssetExecutionContext,
    config: ValidationConfig,
    parsed_rows: ParsedTable,
    db: DatabaseResource,
    storage: StorageResource,
) -> rows.ValidatedRows:
    upload = _upload(db, context.partition_key)
    strict = upload.strict if config.strict is None else config.strict
    try:
        validated = rows.validate_upload(
            db.engine(),
            storage.paths(),
            upload,
            parsed_rows,
            strict=strict,
            default_region=storage.default_phone_region,
        )
    except rows.UploadRejected as exc:
        raise _reject(str(exc)) from None
    context.add_output_metadata(
        {
            "rows_in_file": validated.rows_in_file,
            "valid_rows": len(validated.valid),
            "invalid_rows": validated.invalid_rows,
            "strict": strict,
            "errors": validated.error_count,
            "warnings": validated.warning_count,
            "error_report": dg.MetadataValue.path(validated.error_report_path or ""),
        }
    )
    return validated


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"sql"},
    description="Participants deduplicated (in file and against the event) and upserted in one transaction.",
)
def participants(
    context: dg.AssetExecutionContext, validated_rows: rows.ValidatedRows, db: DatabaseResource
) -> rows.LoadSummary:
    upload = _upload(db, context.partition_key)
    summary = rows.load_upload(db.engine(), upload, validated_rows)
    context.add_output_metadata(
        {
            "new": summary.counts.new,
            "updated": summary.counts.updated,
            "unchanged": summary.counts.unchanged,
            "duplicates_in_file": summary.duplicates_in_file,
        }
    )
    return summary


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"sql"},
    description="One live access token per participant; existing tokens are never rotated by a re-run.",
)
def access_tokens(
    context: dg.AssetExecutionContext,
    participants: rows.LoadSummary,
    upload_file: UploadFacts,
    db: DatabaseResource,
    tokens: AccessTokensResource,
) -> int:
    tokens.codec()  # fail fast on a missing or weak key, before anything is issued
    from event_pipeline.store.tokens import issue_missing_tokens

    issued = issue_missing_tokens(db.engine(), upload_file.event_id)
    context.add_output_metadata({"issued": issued})
    return issued


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"png"},
    description="A check-in QR code PNG per live token.",
)
def qr_codes(
    context: dg.AssetExecutionContext,
    access_tokens: int,
    upload_file: UploadFacts,
    db: DatabaseResource,
    storage: StorageResource,
    tokens: AccessTokensResource,
) -> int:
    rendered = tickets.render_missing_qr_codes(
        db.engine(),
        storage.paths(),
        tokens.codec(),
        event_id=upload_file.event_id,
        event_slug=upload_file.event_slug,
        base_url=tokens.checkin_base_url,
    )
    context.add_output_metadata(
        {"rendered": rendered, "folder": str(tickets.qr_dir(storage.paths(), upload_file.event_slug))}
    )
    return rendered


def mail_context(mailer: MailerResource, tokens: AccessTokensResource) -> messages.MailContext:
    return messages.MailContext(
        sender=mailer.sender(),
        from_email=mailer.from_email,
        from_name=mailer.from_name,
        codec=tokens.codec(),
        checkin_base_url=tokens.checkin_base_url,
        workers=mailer.workers,
    )


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"email"},
    pool="mail",
    description="One welcome email per participant: queued once, sent now; retries go out with the mail schedule.",
)
def welcome_emails(
    context: dg.AssetExecutionContext,
    qr_codes: int,
    upload_file: UploadFacts,
    db: DatabaseResource,
    mailer: MailerResource,
    tokens: AccessTokensResource,
) -> dict[str, int]:
    engine = db.engine()
    queued = deliveries_store.enqueue_welcome(engine, upload_file.event_id, upload_file.upload_id)

    def progress(stats: messages.DispatchStats) -> None:
        context.log.info(f"welcome emails: {stats.sent} sent, {stats.retrying} to retry, {stats.failed} failed")

    stats = messages.dispatch(
        engine,
        mail_context(mailer, tokens),
        event_id=upload_file.event_id,
        kinds=("welcome",),
        progress=progress,
    )
    result = {"queued": queued, **stats.as_metadata()}
    context.add_output_metadata(result)
    return result


@dg.asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    retry_policy=TRANSIENT_RETRY,
    kinds={"email"},
    check_specs=[
        dg.AssetCheckSpec(
            "counts_add_up",
            asset="import_report",
            description="rows_in_file == new + updated + unchanged + duplicates_in_file + rejected",
        )
    ],
    description="Counts that add up, the error report, the organiser notified; the file leaves the inbox.",
)
def import_report(
    context: dg.AssetExecutionContext,
    welcome_emails: dict[str, int],
    upload_file: UploadFacts,
    db: DatabaseResource,
    storage: StorageResource,
    mailer: MailerResource,
    tokens: AccessTokensResource,
) -> dg.MaterializeResult:
    engine = db.engine()
    upload = _upload(db, upload_file.upload_id)
    ok, parts = rows.invariant_holds(upload)
    uploads_store.update_upload(engine, upload.id, status="done", reason=None)
    notice = messages.notify_organiser(
        engine, mail_context(mailer, tokens), event_id=upload.event_id, upload_id=upload.id, kind="import_complete"
    )
    inbox.finish_upload_file(engine, storage.paths(), upload, ok=True)
    with engine.connect() as conn:
        mail = deliveries_store.status_counts(conn, upload_id=upload.id)
    metadata: dict[str, object] = {
        **parts,
        "empty_rows": upload.empty_rows or 0,
        "emails": dg.MetadataValue.json(mail),
        "organiser_notified": notice.sent > 0,
        "error_report": dg.MetadataValue.path(upload.error_report_path or ""),
    }
    return dg.MaterializeResult(
        metadata=metadata,  # type: ignore[arg-type]
        check_results=[
            dg.AssetCheckResult(
                check_name="counts_add_up",
                passed=ok,
                metadata=parts,
                severity=dg.AssetCheckSeverity.ERROR,
            )
        ],
    )


upload_assets = [
    upload_file,
    parsed_rows,
    validated_rows,
    participants,
    access_tokens,
    qr_codes,
    welcome_emails,
    import_report,
]
