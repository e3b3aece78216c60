"""The error report an organiser downloads: one line per finding, with the row's original values.

Columns: ``row,column,severity,reason,reason_ko`` then the file's own columns (that row's values,
so the organiser can fix the file without cross-referencing). ``severity`` is ``error`` (the row
was not loaded) or ``warning`` (loaded as given); the reason is in English and Korean side by
side, since the file is read both by people and, through ``read_findings``, by the CLI, the UI
metadata and the organiser's mail, which pick the language they need.

It is opened in Excel, so: UTF-8 with BOM (Excel only detects UTF-8 with it; Korean names turn to
mojibake otherwise) and OWASP CSV-injection escaping, since the cells are attacker-controlled.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pandas as pd

from event_pipeline import files
from event_pipeline.schemas.results import SEVERITIES, Finding, Severity

# Leading characters that make Excel/LibreOffice treat a cell as a formula (OWASP), plus their
# full-width forms, which East Asian IMEs produce and some spreadsheet versions also evaluate.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
REPORT_HEADER = ("row", "column", "severity", "reason", "reason_ko")


def neutralise(value: object) -> str:
    """Prefix a cell with ' when a spreadsheet would otherwise evaluate it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _restore(text: str) -> str:
    """``neutralise`` undone, for the report's own columns (whose texts never start with a ')."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_TRIGGERS) else text


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


def write_error_report(path: Path, findings: Sequence[Finding], original: pd.DataFrame) -> int:
    """Write the report as CSV atomically (0600, UTF-8 with BOM); return the findings written.

    ``original`` is the raw frame (``ParsedTable.frame``); each line carries that row's values
    (none for the header row). Lines follow ``findings``' order. The file appears complete or not
    at all.
    """
    path = Path(path)
    names, values = _original_columns(original, {f.row for f in findings})
    with files.atomic_writer(path) as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow([neutralise(h) for h in (*REPORT_HEADER, *names)])
        for finding in findings:
            row_values = values.get(finding.row, {})
            writer.writerow(
                [
                    str(finding.row),
                    neutralise(finding.column),
                    finding.severity,
                    neutralise(finding.reason),
                    neutralise(finding.reason_ko),
                    *(neutralise(row_values.get(name, "")) for name in names),
                ]
            )
        fh.flush()
        fh.detach()  # the writer closes (and renames) the underlying file
    return len(findings)


class ReportFormatError(ValueError):
    """A file at the report's path that is not a report this module wrote."""


def read_findings(path: Path) -> list[Finding]:
    """The findings of a report written by ``write_error_report``, in its order."""
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        lines = csv.reader(fh)
        header = next(lines, None)
        if header is None or tuple(header[: len(REPORT_HEADER)]) != REPORT_HEADER:
            raise ReportFormatError(f"{path} is not an error report (its header is not {','.join(REPORT_HEADER)})")
        findings = []
        for number, line in enumerate(lines, start=2):
            row, column, severity, reason, reason_ko = (_restore(v) for v in [*line, "", "", ""][:5])
            if severity not in SEVERITIES or not row.isdigit():
                raise ReportFormatError(f"{path}, line {number}: not a finding")
            findings.append(Finding(int(row), column, cast(Severity, severity), reason, reason_ko))
    return findings
