"""Rows of one upload: parse, validate, dedupe, load.

Rows never travel through Dagster: each step reads what the previous one left in the upload's
own folder of the upload store (Parquet, 0600) and writes its counts to the uploads row, so any
step can run in another process or on another machine that shares the store and the databases,
and `event-pipeline status`, the report and the UI read one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from event_pipeline import files
from event_pipeline.intake import IntakeError, read_table
from event_pipeline.schemas import RowError, dedupe_in_file, validate_participants, write_error_report
from event_pipeline.schemas.results import ValidationOutcome
from event_pipeline.settings import Paths
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.participants import LoadCounts, load_participants
from event_pipeline.store.uploads import Upload

PARSED = "parsed.parquet"
VALID = "valid.parquet"


class UploadRejected(Exception):
    """The file as a whole cannot be imported; the reason is for the organiser (and holds no row data)."""


@dataclass(frozen=True)
class ParseFacts:
    rows: int
    empty_rows: int
    format: str
    encoding: str | None
    header_row: int
    columns: dict[str, str]
    extra_columns: int


@dataclass(frozen=True)
class Judgement:
    """What the rules say about a parsed file, before anything is written: the one verdict that
    `event-pipeline check` prints and the import acts on."""

    rows_in_file: int
    outcome: ValidationOutcome
    kept: pd.DataFrame
    duplicates: pd.DataFrame
    strict: bool

    @property
    def findings(self) -> list[RowError]:
        return sorted([*self.outcome.errors, *self.outcome.warnings], key=lambda e: (e.row, e.column))

    @property
    def rejection(self) -> str | None:
        """Why strict mode refuses the whole file (None: it may be loaded)."""
        if not (self.strict and self.outcome.invalid_rows):
            return None
        first = self.outcome.errors[0]
        # Row and column only: the message of a cell check can quote the cell, and this text
        # goes to Dagster's event log.
        return (
            f"strict mode: {self.outcome.invalid_rows} of {self.rows_in_file} rows are invalid, nothing was "
            f"loaded (first: row {first.row}, column {first.column})"
        )


@dataclass(frozen=True)
class ValidationFacts:
    rows_in_file: int
    valid_rows: int
    invalid_rows: int
    duplicates_in_file: int
    errors: int
    warnings: int
    strict: bool
    error_report_path: str | None


def judge(parsed_frame: pd.DataFrame, *, strict: bool, default_region: str) -> Judgement:
    outcome = validate_participants(parsed_frame, default_region=default_region)
    deduped = dedupe_in_file(outcome.valid)
    return Judgement(
        rows_in_file=len(parsed_frame),
        outcome=outcome,
        kept=deduped.kept,
        duplicates=deduped.duplicates,
        strict=strict,
    )


def _write_frame(frame: pd.DataFrame, target: Path) -> None:
    with files.atomic_writer(target) as fh:
        frame.to_parquet(fh, index=False)


def _read_frame(paths: Paths, upload: Upload, name: str) -> pd.DataFrame:
    source = paths.upload_dir(upload.id) / name
    if not source.is_file():
        raise FileNotFoundError(
            f"{source} is missing: every process that runs steps of upload {upload.id} must share the upload store"
        )
    return pd.read_parquet(source)


def parse_upload(engine: Engine, paths: Paths, upload: Upload, *, max_bytes: int, sheet: str | None) -> ParseFacts:
    """Read the stored original into ``parsed.parquet``; an unreadable file rejects the upload."""
    try:
        parsed = read_table(Path(upload.stored_path), max_bytes=max_bytes, sheet=sheet)
    except IntakeError as exc:
        raise reject(engine, upload, f"{upload.original_name}: {exc}") from None
    _write_frame(parsed.frame, paths.upload_dir(upload.id) / PARSED)
    uploads_store.update_upload(
        engine,
        upload.id,
        status="running",
        format=parsed.format,
        encoding=parsed.encoding,
        rows_in_file=parsed.rows,
        empty_rows=parsed.empty_rows,
    )
    return ParseFacts(
        rows=parsed.rows,
        empty_rows=parsed.empty_rows,
        format=parsed.format,
        encoding=parsed.encoding,
        header_row=parsed.header_row,
        columns=parsed.columns,
        extra_columns=len(parsed.extra_columns),
    )


def validate_upload(
    engine: Engine, paths: Paths, upload: Upload, *, strict: bool | None, default_region: str
) -> ValidationFacts:
    """Validate and dedupe ``parsed.parquet`` into ``valid.parquet`` and the error report."""
    parsed = _read_frame(paths, upload, PARSED)
    strict = upload.strict if strict is None else strict
    verdict = judge(parsed, strict=strict, default_region=default_region)
    report_path: str | None = None
    findings = verdict.findings
    if findings:
        target = report_file(paths, upload)
        write_error_report(target, findings, parsed)
        report_path = str(target)
    uploads_store.update_upload(
        engine,
        upload.id,
        rejected_rows=verdict.outcome.invalid_rows,
        duplicates_in_file=len(verdict.duplicates),
        error_report_path=report_path,
    )
    if verdict.rejection is not None:
        raise reject(engine, upload, f"{upload.original_name}: {verdict.rejection}")
    _write_frame(verdict.kept, paths.upload_dir(upload.id) / VALID)
    return ValidationFacts(
        rows_in_file=verdict.rows_in_file,
        valid_rows=len(verdict.outcome.valid),
        invalid_rows=verdict.outcome.invalid_rows,
        duplicates_in_file=len(verdict.duplicates),
        errors=len(verdict.outcome.errors),
        warnings=len(verdict.outcome.warnings),
        strict=strict,
        error_report_path=report_path,
    )


def load_upload(engine: Engine, paths: Paths, upload: Upload) -> LoadCounts:
    """Upsert the deduplicated rows; fields a newer upload already wrote are left alone."""
    kept = _read_frame(paths, upload, VALID)
    counts = load_participants(engine, event_id=upload.event_id, upload_id=upload.id, upload_seq=upload.seq, rows=kept)
    uploads_store.update_upload(
        engine, upload.id, loaded_new=counts.new, updated=counts.updated, unchanged=counts.unchanged
    )
    if counts.stale_rows:
        target = report_file(paths, upload)
        write_error_report(target, stale_findings(counts), _read_frame(paths, upload, PARSED), keep_existing=True)
        uploads_store.update_upload(engine, upload.id, error_report_path=str(target))
    return counts


def report_file(paths: Paths, upload: Upload) -> Path:
    return paths.reports / f"{upload.id}-errors.csv"


def stale_findings(counts: LoadCounts) -> list[RowError]:
    return [
        RowError(
            row=s.row,
            column=s.field,
            value_preview="",
            message=f"not applied: the newer upload {s.newer_upload_id} already set this field (counted unchanged).",
        )
        for s in counts.stale_rows
    ]


def reject(engine: Engine, upload: Upload, reason: str) -> UploadRejected:
    uploads_store.update_upload(engine, upload.id, status="rejected", reason=reason)
    return UploadRejected(reason)


def invariant_holds(upload: Upload) -> tuple[bool, dict[str, int]]:
    """rows_in_file == new + updated + unchanged + duplicates_in_file + rejected (docs/architecture.md)."""
    parts = upload.counts()
    total = sum(v for k, v in parts.items() if k != "rows_in_file")
    return parts["rows_in_file"] == total, parts
