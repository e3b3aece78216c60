"""The error report an organiser downloads: one line per problem, with the row's original values.

It is opened in Excel, so: UTF-8 with BOM (Excel only detects UTF-8 with it; Korean names turn to
mojibake otherwise) and OWASP CSV-injection escaping, since the cells are attacker-controlled.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from event_pipeline.files import private_dir
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


def write_error_report(path: Path, errors: Sequence[RowError], original: pd.DataFrame) -> int:
    """Write ``row,column,message,<original columns...>`` as CSV atomically; return data rows written.

    ``original`` is the raw frame (``ParsedTable.frame``); each error line carries that row's
    values so the organiser can fix the file without cross-referencing. Lines follow ``errors``'
    order. The file appears complete or not at all (temp file + fsync + rename).
    """
    path = Path(path)
    names, values = _original_columns(original, {e.row for e in errors})
    private_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
            writer.writerow([neutralise(h) for h in (*REPORT_HEADER, *names)])
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
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return len(errors)
