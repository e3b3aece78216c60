"""Intake: from an uploaded file's bytes to a table of text cells with source row numbers.

No database, no Dagster: pure functions over files, so everything here is testable on its own.
"""

from event_pipeline.intake.errors import IntakeError
from event_pipeline.intake.headers import ALIASES, normalise_header
from event_pipeline.intake.reader import read_table
from event_pipeline.intake.sniff import sniff_format
from event_pipeline.intake.table import CANONICAL_FIELDS, DEFAULT_MAX_BYTES, REQUIRED_COLUMNS, ParsedTable

__all__ = [
    "ALIASES",
    "CANONICAL_FIELDS",
    "DEFAULT_MAX_BYTES",
    "REQUIRED_COLUMNS",
    "IntakeError",
    "ParsedTable",
    "normalise_header",
    "read_table",
    "sniff_format",
]
