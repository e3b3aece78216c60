"""The error report an organiser downloads: one line per problem, with the row's original values.

It is opened in Excel, so: UTF-8 with BOM (Excel only detects UTF-8 with it; Korean names turn to
mojibake otherwise) and OWASP CSV-injection escaping, since the cells are attacker-controlled.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from event_pipeline import files
from event_pipeline.schemas.results import RowError

# Leading characters that make Excel/LibreOffice treat a cell as a formula (OWASP), plus their
# full-width forms, which East Asian IMEs produce and some spreadsheet versions also evaluate.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
REPORT_HEADER = ("row", "column", "message")


def neutralise(value: object) -> str:
    """Prefix a cell with ' when a spreadsheet would otherwise evaluate it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _original_columns(original: pd.DataFrame, rows: set[int]) -> tuple[list[str], dict[int, dict[str, str]]]:
    """Column names and values (extra JSON spread back into its source headers) of the error rows."""
    base = [c for c in original.columns if c not in ("source_row", "extra")]
    names: list[str] = list(base)
    values: dict[int, dict[str, str]] = {}
    if "source_row" not in original.columns or not rows:
        return names, values
    subset = original.loc[original["source_row"].isin(rows)]
    for record in subset.to_dict(orient="records"):
        row_values = {c: "" if record[c] is None else str(record[c]) for c in base}
        extra = record.get("extra")
        if isinstance(extra, str) and extra not in ("", "{}"):
            try:
                decoded = json.loads(extra)
            except ValueError:
                decoded = {"extra": extra}
            if isinstance(decoded, dict):
                for key, value in decoded.items():
                    key = str(key)
                    if key not in names:
                        names.append(key)
                    row_values[key] = "" if value is None else str(value)
        values[int(record["source_row"])] = row_values
    return names, values


def _existing(path: Path) -> tuple[list[str], list[list[str]]]:
    """The original-column names and the lines of a report written earlier ([] if none)."""
    if not path.is_file():
        return [], []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.reader(fh))
    return (lines[0][len(REPORT_HEADER) :], lines[1:]) if lines else ([], [])


def write_error_report(
    path: Path, errors: Sequence[RowError], original: pd.DataFrame, *, keep_existing: bool = False
) -> int:
    """Write ``row,column,message,<original columns...>`` as CSV atomically; return data rows written.

    ``original`` is the raw frame (``ParsedTable.frame``); each error line carries that row's
    values so the organiser can fix the file without cross-referencing. Lines follow ``errors``'
    order; with ``keep_existing`` they come after the lines of the report already at ``path``
    (a later step adding its findings). The file appears complete or not at all.
    """
    path = Path(path)
    kept_names, kept_lines = _existing(path) if keep_existing else ([], [])
    names, values = _original_columns(original, {e.row for e in errors})
    names = [*kept_names, *(n for n in names if n not in kept_names)]
    width = len(REPORT_HEADER) + len(names)
    with files.atomic_writer(path) as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow([neutralise(h) for h in (*REPORT_HEADER, *names)])
        # Earlier lines were neutralised when first written (and neutralising is idempotent).
        writer.writerows(line + [""] * (width - len(line)) for line in kept_lines)
        for error in errors:
            row_values = values.get(error.row, {})
            writer.writerow(
                [
                    str(error.row),
                    neutralise(error.column),
                    neutralise(error.message),
                    *(neutralise(row_values.get(name, "")) for name in names),
                ]
            )
        fh.flush()
        fh.detach()  # the writer closes (and renames) the underlying file
    return len(errors)
