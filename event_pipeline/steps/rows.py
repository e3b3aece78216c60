"""Rows of one upload: parse, validate, dedupe, load.

Rows never travel through Dagster: each step reads what the previous one left in the upload's
own folder of the upload store (Parquet, 0600) and writes its counts to the uploads row, so any
step can run in another process or on another machine that shares the store and the databases,
and `event-pipeline status`, the report and the UI read one source of truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from event_pipeline import files
from event_pipeline.intake import CANONICAL_FIELDS, IntakeError, ParsedTable, read_table
from event_pipeline.intake.headers import display_aliases
from event_pipeline.schemas import (
    Finding,
    Severity,
    dedupe_in_file,
    duplicate_findings,
    not_loaded_rows,
    read_findings,
    validate_participants,
    write_error_report,
)
from event_pipeline.schemas.models import CLEAN_COLUMNS
from event_pipeline.schemas.reasons import render as render_reason
from event_pipeline.schemas.results import ValidationOutcome
from event_pipeline.settings import Paths
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.participants import LoadCounts, load_participants
from event_pipeline.store.uploads import Upload

PARSED = "parsed.parquet"
VALID = "valid.parquet"
# Each step's findings, kept apart so a step run again replaces its own and the report is always
# the sum of the latest: {"intake": [...], "rows": [...], "load": [...]} (finding fields).
FINDINGS = "findings.json"
# A whole-file rejection in both languages, for the organiser's notice: {"en": ..., "ko": ...}.
REASON = "reason.json"
STAGES = ("intake", "rows", "load")


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
    # Findings about the file as read (columns kept aside, intake's notes), on the header row.
    intake: tuple[Finding, ...] = field(default=())

    @property
    def findings(self) -> list[Finding]:
        """Every finding, by row (the header row first) and column: what the error report lists."""
        found = [*self.intake, *self.outcome.errors, *self.outcome.warnings, *duplicate_findings(self.duplicates)]
        return sorted(found, key=finding_order)

    @property
    def counts(self) -> dict[str, int]:
        """The counts that go with ``findings``: ``not_loaded`` (distinct rows with an error) is
        ``rejected + duplicates_in_file``; warnings are rows loaded as given."""
        findings = self.findings
        return {
            "rows": self.rows_in_file,
            "valid": len(self.outcome.valid),
            "to_load": len(self.kept),
            "rejected": self.outcome.invalid_rows,
            "duplicates_in_file": len(self.duplicates),
            "not_loaded": not_loaded_rows(findings),
            "errors": sum(1 for f in findings if f.severity == "error"),
            "warnings": sum(1 for f in findings if f.severity == "warning"),
        }

    @property
    def rejection(self) -> str | None:
        """Why strict mode refuses the whole file (None: it may be loaded)."""
        localized = self.rejection_localized
        return None if localized is None else localized[0]

    @property
    def rejection_localized(self) -> tuple[str, str] | None:
        """``rejection`` in (English, Korean)."""
        if not (self.strict and self.outcome.invalid_rows):
            return None
        first = self.outcome.errors[0]
        # Row and column only: this text goes to Dagster's event log.
        return render_reason(
            "strict_rejected",
            {"invalid": self.outcome.invalid_rows, "rows": self.rows_in_file, "row": first.row, "column": first.column},
        )


def finding_order(finding: Finding) -> tuple[int, int]:
    column = CLEAN_COLUMNS.index(finding.column) if finding.column in CLEAN_COLUMNS else len(CLEAN_COLUMNS)
    return finding.row, column


def intake_findings(parsed: ParsedTable) -> list[Finding]:
    """Warnings on the header row: the columns kept aside (with the headers that would have made
    them a field) and every note intake made while reading the file."""
    out: list[Finding] = []
    if parsed.extra_columns:
        # Header texts may be quoted: this row was identified as the header (no participant data).
        columns = ", ".join(f"'{name}'" for name in parsed.extra_columns)
        missing = [f for f in CANONICAL_FIELDS if f not in parsed.columns]
        if missing:
            aliases = "; ".join(display_aliases(f) for f in missing)
            out.append(
                Finding.of(
                    parsed.header_row, "extra", "warning", "unmapped_columns.missing", columns=columns, aliases=aliases
                )
            )
        else:
            out.append(Finding.of(parsed.header_row, "extra", "warning", "unmapped_columns", columns=columns))
    out += [Finding.of(parsed.header_row, "", "warning", "intake_note", note=note) for note in parsed.warnings]
    return out


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


def judge(
    parsed_frame: pd.DataFrame, *, strict: bool, default_region: str, intake: Sequence[Finding] = ()
) -> Judgement:
    """The verdict on a parsed file; ``intake`` is ``intake_findings`` of its ParsedTable."""
    outcome = validate_participants(parsed_frame, default_region=default_region)
    deduped = dedupe_in_file(outcome.valid)
    return Judgement(
        rows_in_file=len(parsed_frame),
        outcome=outcome,
        kept=deduped.kept,
        duplicates=deduped.duplicates,
        strict=strict,
        intake=tuple(intake),
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
        name = upload.original_name
        raise reject(engine, upload, f"{name}: {exc}", paths=paths, korean=f"{name}: {exc.localized('ko')}") from None
    _write_frame(parsed.frame, paths.upload_dir(upload.id) / PARSED)
    save_findings(paths, upload, {"intake": intake_findings(parsed), "rows": [], "load": []})
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
    stages = load_findings(paths, upload)
    verdict = judge(parsed, strict=strict, default_region=default_region, intake=stages["intake"])
    # The load that follows lists its own findings again.
    report_path = save_findings(paths, upload, {"rows": verdict.findings, "load": []}, original=parsed)
    counts = verdict.counts
    uploads_store.update_upload(
        engine,
        upload.id,
        rejected_rows=counts["rejected"],
        duplicates_in_file=counts["duplicates_in_file"],
        error_report_path=report_path,
    )
    rejection = verdict.rejection_localized
    if rejection is not None:
        name = upload.original_name
        raise reject(engine, upload, f"{name}: {rejection[0]}", paths=paths, korean=f"{name}: {rejection[1]}")
    _write_frame(verdict.kept, paths.upload_dir(upload.id) / VALID)
    return ValidationFacts(
        rows_in_file=verdict.rows_in_file,
        valid_rows=counts["valid"],
        invalid_rows=counts["rejected"],
        duplicates_in_file=counts["duplicates_in_file"],
        errors=counts["errors"],
        warnings=counts["warnings"],
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
    stale = stale_findings(counts)
    if stale or load_findings(paths, upload)["load"]:
        report_path = save_findings(paths, upload, {"load": stale}, original=_read_frame(paths, upload, PARSED))
        uploads_store.update_upload(engine, upload.id, error_report_path=report_path)
    return counts


def report_file(paths: Paths, upload: Upload) -> Path:
    return paths.reports / f"{upload.id}-errors.csv"


def upload_findings(upload: Upload) -> list[Finding]:
    """The findings of an upload as its error report lists them ([] if it has none)."""
    if not upload.error_report_path or not Path(upload.error_report_path).is_file():
        return []
    return read_findings(Path(upload.error_report_path))


def stale_findings(counts: LoadCounts) -> list[Finding]:
    """Rows loaded as the same person as an earlier upload whose change a newer upload overrides."""
    return [
        Finding.of(s.row, s.field, "warning", "stale", field=s.field, upload=s.newer_upload_id)
        for s in counts.stale_rows
    ]


def _finding_from(data: Mapping[str, object]) -> Finding:
    severity: Severity = "error" if data["severity"] == "error" else "warning"
    row = data["row"]
    return Finding(
        int(row) if isinstance(row, int | str) else 0,
        str(data["column"]),
        severity,
        str(data["reason"]),
        str(data["reason_ko"]),
    )


def load_findings(paths: Paths, upload: Upload) -> dict[str, list[Finding]]:
    """Each step's findings as last saved (empty lists for steps that saved none)."""
    source = paths.upload_dir(upload.id) / FINDINGS
    saved: dict[str, object] = json.loads(source.read_text(encoding="utf-8")) if source.is_file() else {}
    out: dict[str, list[Finding]] = {}
    for stage in STAGES:
        items = saved.get(stage, [])
        listed = items if isinstance(items, list) else []
        out[stage] = [_finding_from(item) for item in listed if isinstance(item, dict)]
    return out


def save_findings(
    paths: Paths, upload: Upload, replace: Mapping[str, Sequence[Finding]], *, original: pd.DataFrame | None = None
) -> str | None:
    """Replace the given steps' findings; with ``original`` (the parsed frame), rewrite the error
    report as every step's findings. Returns the report's path (None: nothing to report)."""
    stages = {**load_findings(paths, upload), **{k: list(v) for k, v in replace.items()}}
    document = {stage: [{**f.as_dict(), "reason_ko": f.reason_ko} for f in stages[stage]] for stage in STAGES}
    files.write_private_text(paths.upload_dir(upload.id) / FINDINGS, json.dumps(document, ensure_ascii=False))
    if original is None:
        return None
    # "rows" already holds the intake findings: judge() lists them with the file's.
    findings = sorted([*stages["rows"], *stages["load"]], key=finding_order)
    if not findings:
        return None
    target = report_file(paths, upload)
    write_error_report(target, findings, original)
    return str(target)


def reject(
    engine: Engine, upload: Upload, reason: str, *, paths: Paths | None = None, korean: str | None = None
) -> UploadRejected:
    """Mark the upload rejected. With ``korean`` (and ``paths``), the organiser's notice can give
    the reason in Korean too (``rejection_reason``)."""
    if paths is not None and korean is not None:
        files.write_private_text(
            paths.upload_dir(upload.id) / REASON, json.dumps({"en": reason, "ko": korean}, ensure_ascii=False)
        )
    uploads_store.update_upload(engine, upload.id, status="rejected", reason=reason)
    return UploadRejected(reason)


def rejection_reason(paths: Paths, upload: Upload, language: str) -> str | None:
    """The upload's recorded reason in ``language`` ("ko" or "en"), if it has one."""
    if not upload.reason:
        return None
    source = paths.upload_dir(upload.id) / REASON
    if language == "ko" and source.is_file():
        saved = json.loads(source.read_text(encoding="utf-8"))
        # Only if it is still the reason on record: a later failure of another kind replaces it.
        if isinstance(saved, dict) and saved.get("en") == upload.reason and isinstance(saved.get("ko"), str):
            return str(saved["ko"])
    return upload.reason


def invariant_holds(upload: Upload) -> tuple[bool, dict[str, int]]:
    """rows_in_file == new + updated + unchanged + duplicates_in_file + rejected (docs/architecture.md)."""
    parts = upload.counts()
    total = sum(v for k, v in parts.items() if k != "rows_in_file")
    return parts["rows_in_file"] == total, parts
