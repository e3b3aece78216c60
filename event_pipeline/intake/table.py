"""What intake hands on: the parsed table plus the facts about how it was read."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

# Canonical fields in output order; only name and email must be present in a file.
CANONICAL_FIELDS = ("name", "email", "phone", "department", "position")
REQUIRED_COLUMNS = ("name", "email")


@dataclass(frozen=True)
class ParsedTable:
    """Every non-empty data row of one file, as text.

    ``frame`` has ``source_row`` (int, 1-based row number as the organiser sees it: the
    spreadsheet row for Excel, the line where the record starts for CSV; header row counted),
    one ``str`` column per canonical field found, and ``extra`` (JSON object text of the
    unrecognised columns, ``"{}"`` if none). Cell values are exactly as in the file: no
    stripping, no NA conversion; cleaning is the job of ``event_pipeline.schemas``.
    """

    frame: pd.DataFrame
    format: str
    encoding: str | None
    delimiter: str | None
    header_row: int
    columns: dict[str, str]
    extra_columns: list[str]
    empty_rows: int
    rows: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RawGrid:
    """A sheet or CSV as positional text cells, before the header is known.

    ``cells`` has integer column labels 0..n-1 and only ``str`` values ("" for a missing cell);
    ``source_rows[i]`` is the 1-based row number (spreadsheet row or CSV start line) of row i;
    ``numeric_cells`` counts, per column, cells Excel stored as numbers (phones that lost a 0).
    """

    cells: pd.DataFrame
    source_rows: np.ndarray
    warnings: tuple[str, ...] = ()
    numeric_cells: dict[int, int] = field(default_factory=dict)
