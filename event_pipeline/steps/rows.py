"""Rows of one upload: parse, validate, dedupe, load. Counts are written to the uploads row as
each step finishes, so `event-pipeline status` and the report read one source of truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from event_pipeline.intake import IntakeError, ParsedTable, read_table
from event_pipeline.schemas import RowError, dedupe_in_file, validate_participants, write_error_report
from event_pipeline.settings import Paths
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.participants import LoadCounts, load_participants
from event_pipeline.store.uploads import Upload


class UploadRejected(Exception):
    """The file as a whole cannot be imported; the reason is for the organiser."""


@dataclass(frozen=True)
class ValidatedRows:
    valid: pd.DataFrame
    rows_in_file: int
    invalid_rows: int
    empty_rows: int
    error_count: int
    warning_count: int
    error_report_path: str | None


@dataclass(frozen=True)
class LoadSummary:
    counts: LoadCounts
    duplicates_in_file: int
    participant_emails: int


def parse_upload(engine: Engine, upload: Upload, *, max_bytes: int, sheet: str | None = None) -> ParsedTable:
    try:
        parsed = read_table(Path(upload.stored_path), max_bytes=max_bytes, sheet=sheet)
    except IntakeError as exc:
        reason = f"{upload.original_name}: {exc}"
        uploads_store.update_upload(engine, upload.id, status="rejected", reason=reason)
        raise UploadRejected(reason) from None
    uploads_store.update_upload(
        engine,
        upload.id,
        status="running",
        format=parsed.format,
        encoding=parsed.encoding,
        rows_in_file=parsed.rows,
        empty_rows=parsed.empty_rows,
    )
    return parsed


def validate_upload(
    engine: Engine,
    paths: Paths,
    upload: Upload,
    parsed: ParsedTable,
    *,
    strict: bool | None = None,
    default_region: str = "KR",
) -> ValidatedRows:
    outcome = validate_participants(parsed.frame, default_region=default_region)
    report_path: str | None = None
    findings: list[RowError] = [*outcome.errors, *outcome.warnings]
    if findings:
        target = paths.reports / f"{upload.id}-errors.csv"
        write_error_report(target, sorted(findings, key=lambda e: (e.row, e.column)), parsed.frame)
        report_path = str(target)
    uploads_store.update_upload(engine, upload.id, rejected_rows=outcome.invalid_rows, error_report_path=report_path)
    if (upload.strict if strict is None else strict) and outcome.invalid_rows:
        reason = (
            f"{upload.original_name}: strict mode: {outcome.invalid_rows} of {parsed.rows} rows are invalid, "
            f"nothing was loaded (first: row {outcome.errors[0].row}, column {outcome.errors[0].column}: "
            f"{outcome.errors[0].message})"
        )
        uploads_store.update_upload(engine, upload.id, status="rejected", reason=reason)
        raise UploadRejected(reason)
    return ValidatedRows(
        valid=outcome.valid,
        rows_in_file=parsed.rows,
        invalid_rows=outcome.invalid_rows,
        empty_rows=parsed.empty_rows,
        error_count=len(outcome.errors),
        warning_count=len(outcome.warnings),
        error_report_path=report_path,
    )


def load_upload(engine: Engine, upload: Upload, validated: ValidatedRows) -> LoadSummary:
    deduped = dedupe_in_file(validated.valid)
    counts = load_participants(engine, event_id=upload.event_id, upload_id=upload.id, rows=deduped.kept)
    uploads_store.update_upload(
        engine,
        upload.id,
        duplicates_in_file=len(deduped.duplicates),
        loaded_new=counts.new,
        updated=counts.updated,
        unchanged=counts.unchanged,
    )
    return LoadSummary(counts=counts, duplicates_in_file=len(deduped.duplicates), participant_emails=len(deduped.kept))


def invariant_holds(upload: Upload) -> tuple[bool, dict[str, int]]:
    """rows_in_file == new + updated + unchanged + duplicates_in_file + rejected (DESIGN.md)."""
    parts = upload.counts()
    total = sum(v for k, v in parts.items() if k != "rows_in_file")
    return parts["rows_in_file"] == total, parts
