"""Result types shared by validation, dedupe and the error report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from event_pipeline.schemas.reasons import render

Severity = Literal["error", "warning"]
# error: the row was not loaded. warning: it was loaded as given (or, on the header row, the file
# was read with a note).
SEVERITIES: tuple[Severity, ...] = ("error", "warning")


@dataclass(frozen=True)
class Finding:
    """One line of the error report: the row as the organiser numbers it (the header row for a
    finding about columns), the canonical column, how bad, and why.

    The reason is kept in English (logs, Dagster metadata) and Korean (the organiser's mail and
    report). It never quotes a cell of a data row: the row and column point at it.
    """

    row: int
    column: str
    severity: Severity
    reason: str
    reason_ko: str

    @classmethod
    def of(cls, row: int, column: str, severity: Severity, key: str, **params: object) -> Finding:
        """The finding for reason ``key`` of ``schemas.reasons``."""
        english, korean = render(key, params)
        return cls(row=row, column=column, severity=severity, reason=english, reason_ko=korean)

    def localized(self, language: str) -> str:
        """The reason for a message written in ``language`` ("ko": Korean, anything else English)."""
        return self.reason_ko if language == "ko" else self.reason

    def as_dict(self) -> dict[str, object]:
        """The English form for JSON output (``check --json``, ``status --json``, metadata)."""
        return {"row": self.row, "column": self.column, "severity": self.severity, "reason": self.reason}


def not_loaded_rows(findings: list[Finding]) -> int:
    """Rows the findings say were not loaded: distinct rows with an error."""
    return len({f.row for f in findings if f.severity == "error"})


@dataclass(frozen=True)
class ValidationOutcome:
    valid: pd.DataFrame
    errors: list[Finding]
    invalid_rows: int
    warnings: list[Finding]


@dataclass(frozen=True)
class DedupeOutcome:
    kept: pd.DataFrame
    duplicates: pd.DataFrame
