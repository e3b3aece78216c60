"""Schemas: pandera models, normalisation, row validation, in-file dedupe, the error report.

No I/O except writing and reading the error report.
"""

from event_pipeline.schemas.dedupe import dedupe_in_file, duplicate_findings
from event_pipeline.schemas.models import CleanParticipants, RawParticipants
from event_pipeline.schemas.report import read_findings, write_error_report
from event_pipeline.schemas.results import DedupeOutcome, Finding, Severity, ValidationOutcome, not_loaded_rows
from event_pipeline.schemas.validate import validate_participants

__all__ = [
    "CleanParticipants",
    "DedupeOutcome",
    "Finding",
    "RawParticipants",
    "Severity",
    "ValidationOutcome",
    "dedupe_in_file",
    "duplicate_findings",
    "not_loaded_rows",
    "read_findings",
    "validate_participants",
    "write_error_report",
]
