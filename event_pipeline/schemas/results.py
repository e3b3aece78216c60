"""Result types shared by validation, dedupe and the error report."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

PREVIEW_CHARS = 40


def preview(value: object, limit: int = PREVIEW_CHARS) -> str:
    """A cell value shortened for messages; line breaks shown as ⏎ so one error stays one line."""
    text = "" if value is None else str(value)
    text = text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class RowError:
    """One problem in one cell: row as the organiser sees it, canonical column, why."""

    row: int
    column: str
    value_preview: str
    message: str


@dataclass(frozen=True)
class ValidationOutcome:
    valid: pd.DataFrame
    errors: list[RowError]
    invalid_rows: int
    warnings: list[RowError]


@dataclass(frozen=True)
class DedupeOutcome:
    kept: pd.DataFrame
    duplicates: pd.DataFrame
