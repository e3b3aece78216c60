"""Schemas: pandera models, normalisation, row validation, in-file dedupe, the error report.

No I/O except ``write_error_report``.
"""

from event_pipeline.schemas.dedupe import dedupe_in_file
from event_pipeline.schemas.models import CleanParticipants, RawParticipants
from event_pipeline.schemas.report import write_error_report
from event_pipeline.schemas.results import DedupeOutcome, RowError, ValidationOutcome
from event_pipeline.schemas.validate import validate_participants

__all__ = [
    "CleanParticipants",
    "DedupeOutcome",
    "RawParticipants",
    "RowError",
    "ValidationOutcome",
    "dedupe_in_file",
    "validate_participants",
    "write_error_report",
]
