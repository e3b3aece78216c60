"""The per-upload assets. Each is one call into ``event_pipeline.steps.imports`` and returns a
``MaterializeResult``: assets hand each other nothing but the partition key (the upload id), so
no row reaches Dagster's storage and any step can run in another process or on another machine.
Metadata holds counts, row numbers, paths and ids only, never names, emails, phones or tokens."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import dagster as dg

from event_pipeline import settings
from event_pipeline.defs.metadata import preview_of, reasons_table, table_schema
from event_pipeline.defs.partitions import uploads_partitions
from event_pipeline.defs.resources import (
    AccessTokensResource,
    DatabaseResource,
    MailerResource,
    StorageResource,
    mail_context,
)
from event_pipeline.mail.dispatch import DispatchStats
from event_pipeline.schemas.models import CleanParticipants
from event_pipeline.steps import imports, rows
from event_pipeline.steps.messages import MailRun
from event_pipeline.steps.rows import UploadRejected
from event_pipeline.steps.tickets import TicketError

GROUP = "participant_import"
# Transient trouble (DB restarting, disk hiccup) is retried per step; bad data raises
# dg.Failure(allow_retries=False) and is not.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


# ``@dg.asset`` with what every per-upload asset shares, applied once.
upload_asset = partial(dg.asset, partitions_def=uploads_partitions, group_name=GROUP, retry_policy=TRANSIENT_RETRY)


class ParseConfig(dg.Config):
    """Launchpad options for reading the file (default: the upload's manifest)."""

    sheet: str | None = None


class ValidationConfig(dg.Config):
    """Launchpad options: strict = all or nothing (default: as chosen at upload time)."""

    strict: bool | None = None


@contextmanager
def rejections() -> Iterator[None]:
    """A whole-file rejection is for the organiser, and retrying cannot change it."""
    try:
        yield
    except UploadRejected as exc:
        raise dg.Failure(description=str(exc), allow_retries=False, metadata={"reason": str(exc)}) from None


@upload_asset(
    kinds={"file"}, description="The uploaded file as received: stored bytes and facts (event, size, sha256)."
)
def upload_file(context: dg.AssetExecutionContext, db: DatabaseResource) -> dg.MaterializeResult:
    with rejections():
        got = imports.receive(db.engine(), context.partition_key)
    return dg.MaterializeResult(
        metadata={
            "event": got.event_slug,
            "file_name": got.file_name,
            "size_bytes": got.size_bytes,
            "sha256": got.sha256,
            "strict": got.strict,
            "stored": dg.MetadataValue.path(got.stored_path),
        }
    )


@upload_asset(
    deps=[upload_file],
    kinds={"parquet"},
    description="Every data row of the file as text, with the row number the organiser sees "
    "(parsed.parquet in the upload store).",
)
def parsed_rows(
    context: dg.AssetExecutionContext, config: ParseConfig, db: DatabaseResource, storage: StorageResource
) -> dg.MaterializeResult:
    with rejections():
        facts = imports.parse(
            db.engine(), storage.paths(), context.partition_key, sheet=config.sheet, max_bytes=storage.max_upload_bytes
        )
    return dg.MaterializeResult(
        metadata={
            "rows": facts.rows,
            "empty_rows": facts.empty_rows,
            "format": facts.format,
            "encoding": facts.encoding or "",
            "header_row": facts.header_row,
            "columns": dg.MetadataValue.json(facts.columns),
            "extra_columns": facts.extra_columns,
        }
    )


@upload_asset(
    deps=[parsed_rows],
    kinds={"pandera", "parquet"},
    description="Rows checked by the pandera schema, normalised and deduplicated in file (valid.parquet); "
    "invalid rows go to the error report.",
    metadata={"dagster/column_schema": table_schema(CleanParticipants.to_schema())},
)
def validated_rows(
    context: dg.AssetExecutionContext, config: ValidationConfig, db: DatabaseResource, storage: StorageResource
) -> dg.MaterializeResult:
    with rejections():
        facts = imports.validate(
            db.engine(),
            storage.paths(),
            context.partition_key,
            strict=config.strict,
            default_region=storage.default_phone_region,
        )
    # Reasons and a masked preview only: no cell of a row as it was written reaches Dagster.
    findings = rows.upload_findings(imports.get_upload(db.engine(), context.partition_key))
    parsed_file = storage.paths().upload_dir(context.partition_key) / rows.PARSED
    return dg.MaterializeResult(
        metadata={
            "rows_in_file": facts.rows_in_file,
            "valid_rows": facts.valid_rows,
            "invalid_rows": facts.invalid_rows,
            "duplicates_in_file": facts.duplicates_in_file,
            "strict": facts.strict,
            "errors": facts.errors,
            "warnings": facts.warnings,
            "error_report": dg.MetadataValue.path(facts.error_report_path or ""),
            "reasons": dg.MetadataValue.md(reasons_table(findings)),
            "preview": preview_of(parsed_file, findings),
        }
    )


@upload_asset(
    deps=[validated_rows],
    kinds={"sql"},
    description="Participants upserted in one transaction; a field a newer upload wrote is never overwritten.",
)
def participants(
    context: dg.AssetExecutionContext, db: DatabaseResource, storage: StorageResource
) -> dg.MaterializeResult:
    counts = imports.load(db.engine(), storage.paths(), context.partition_key)
    return dg.MaterializeResult(
        metadata={
            "new": counts.new,
            "updated": counts.updated,
            "unchanged": counts.unchanged,
            "kept_newer_values": counts.stale,
        }
    )


@upload_asset(
    deps=[participants],
    kinds={"sql"},
    description="One live access token per participant; existing tokens are never rotated by a re-run.",
)
def access_tokens(
    context: dg.AssetExecutionContext, db: DatabaseResource, tokens: AccessTokensResource
) -> dg.MaterializeResult:
    issued = imports.issue_tokens(db.engine(), context.partition_key, tokens.codec)
    return dg.MaterializeResult(metadata={"issued": issued})


@upload_asset(
    deps=[access_tokens],
    kinds={"png"},
    description="Check-in QR codes: rendered inside each welcome mail (no file per participant, no token at "
    "rest); here one code of the event is rendered and read back before anyone is mailed. "
    "`event-pipeline badges` writes all of them to one ZIP for printing.",
)
def qr_codes(
    context: dg.AssetExecutionContext, db: DatabaseResource, storage: StorageResource, tokens: AccessTokensResource
) -> dg.MaterializeResult:
    try:
        checked = imports.check_tickets(
            db.engine(), storage.paths(), context.partition_key, tokens.codec(), base_url=tokens.checkin_base_url
        )
    except TicketError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    return dg.MaterializeResult(
        metadata={
            "live_tokens": checked.live_tokens,
            "sample_png_bytes": checked.sample_png_bytes,
            "rendered": "inside each welcome mail, when it is sent",
            "artifact": "none on the way to mail; `event-pipeline badges --event SLUG -o FILE` writes one ZIP (0600)",
        }
    )


@dg.op(out=dg.DynamicOut(tuple), ins={"after": dg.In(dg.Nothing)}, retry_policy=TRANSIENT_RETRY)
def plan_welcome(
    context: dg.OpExecutionContext, db: DatabaseResource, mailer: MailerResource, tokens: AccessTokensResource
) -> Iterator[dg.DynamicOutput[tuple[int, int]]]:
    chunks = imports.plan_welcome(
        db.engine(), mail_context(mailer, tokens, context), context.partition_key, chunk_size=mailer.chunk_size
    )
    size = f" of up to {mailer.chunk_size}" if mailer.chunk_size < settings.WHOLE_UPLOAD else ""
    context.log.info(f"welcome emails: {len(chunks)} chunk(s){size}")
    for first, last in chunks:
        yield dg.DynamicOutput((first, last), mapping_key=f"ids_{first}_{last}")


@dg.op(pool="mail", retry_policy=TRANSIENT_RETRY)
def send_welcome_chunk(
    context: dg.OpExecutionContext,
    db: DatabaseResource,
    mailer: MailerResource,
    tokens: AccessTokensResource,
    chunk: tuple[int, int],
) -> MailRun:
    def progress(stats: DispatchStats) -> None:
        context.log.info(f"welcome emails {chunk}: {stats.sent} sent, {stats.retrying} to retry, {stats.failed} failed")

    run = imports.send_welcome_chunk(
        db.engine(), mail_context(mailer, tokens, context), context.partition_key, chunk, progress=progress
    )
    if run.new_pause:
        context.log.error(f"{run.paused}; queued mail waits, nothing was marked sent or failed")
    return run


@dg.op(out=dg.Out(dg.Nothing), retry_policy=TRANSIENT_RETRY)
def finish_welcome(context: dg.OpExecutionContext, db: DatabaseResource, runs: list[MailRun]) -> dg.Output[None]:
    welcome = imports.finish_welcome(db.engine(), context.partition_key, runs)
    metadata = {"chunks": welcome.chunks, "emails": dg.MetadataValue.json(welcome.emails), **welcome.run.as_metadata()}
    return dg.Output(None, metadata=metadata)


# A graph: one step per chunk of mail (settings.mail_chunk_size), so a big upload's mail spreads
# over every worker; the lineage keeps one node. The steps hand each other id ranges and counts.
@dg.graph_asset(
    partitions_def=uploads_partitions,
    group_name=GROUP,
    ins={"qr_codes": dg.AssetIn(dagster_type=dg.Nothing)},
    kinds={"email"},
    description="One welcome email per participant: queued once, sent in chunks of ids (one step each); retries "
    "go out with the mail schedule. A provider refusing the key pauses mail without failing the import.",
)
def welcome_emails(qr_codes: None) -> None:
    return finish_welcome(plan_welcome(qr_codes).map(send_welcome_chunk).collect())


@upload_asset(
    deps=[welcome_emails],
    kinds={"email"},
    check_specs=[
        dg.AssetCheckSpec(
            "counts_add_up",
            asset="import_report",
            description="rows_in_file == new + updated + unchanged + duplicates_in_file + rejected",
        )
    ],
    description="Counts that add up, the error report, the organiser notified; the original goes to processed/.",
)
def import_report(
    context: dg.AssetExecutionContext,
    db: DatabaseResource,
    storage: StorageResource,
    mailer: MailerResource,
    tokens: AccessTokensResource,
) -> dg.MaterializeResult:
    done = imports.finish(db.engine(), storage.paths(), mail_context(mailer, tokens, context), context.partition_key)
    done_upload = imports.get_upload(db.engine(), context.partition_key)
    metadata: dict[str, object] = {
        **done.counts,
        "empty_rows": done.empty_rows,
        "welcome_emails": dg.MetadataValue.json(done.emails),
        "organiser_notified": done.organiser_notified,
        "error_report": dg.MetadataValue.path(done.error_report or ""),
        # The whole report: validation's findings and what the load added (newer values kept).
        "reasons": dg.MetadataValue.md(reasons_table(rows.upload_findings(done_upload))),
    }
    if done.mail_note:
        metadata["mail"] = done.mail_note
    return dg.MaterializeResult(
        metadata=metadata,  # type: ignore[arg-type]
        check_results=[
            dg.AssetCheckResult(
                check_name="counts_add_up",
                passed=done.counts_add_up,
                metadata=done.counts,
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
