"""What the Dagster UI shows an organiser about an upload, built from plain data: the top
reasons rows were refused as a markdown table, a masked preview of a few rows, the pandera
schema as a ``TableSchema``, and the record of a drop that started no run.

Only masked values leave this module: Dagster's storage (``DAGSTER_HOME``) holds no
participant's name, email or phone (docs/architecture.md), and the preview is the one place
row values come near it. Reasons are the rule messages the error report carries, which name
the rule and never quote a cell.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow.parquet as pq

from event_pipeline.identity import mask_email, mask_phone
from event_pipeline.schemas.results import Finding
from event_pipeline.steps.inbox import Drop

TOP_REASONS = 10
ROWS_PER_REASON = 10
PREVIEW_PROBLEMS = 5
PREVIEW_CLEAN = 3
PREVIEW_SOURCE_COLUMNS = ("name", "email", "phone")
# A masked name keeps one character, then a fixed run of stars so its length tells nothing.
NAME_STARS = "**"


def mask_name(text: str) -> str:
    """``김민준`` -> ``김**``: enough for the organiser to spot a row, not to say who it is."""
    value = text.strip()
    return f"{value[:1]}{NAME_STARS}" if value else ""


def _cell(text: str) -> str:
    """Text safe inside one markdown table cell (no row or column breaks, no HTML)."""
    flat = " ".join(text.split())
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _rows_text(rows: Sequence[str], limit: int) -> str:
    shown = ", ".join(rows[:limit])
    return shown if len(rows) <= limit else f"{shown}, … ({len(rows) - limit} more)"


def reasons_table(
    findings: Iterable[Finding], *, top: int = TOP_REASONS, rows_per_reason: int = ROWS_PER_REASON
) -> str:
    """A markdown table of the report's reasons, most frequent first: the column and reason,
    whether the row was left out (error) or loaded as given (warning), the rows, how many."""
    rows_by_reason: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for f in findings:
        rows_by_reason[(f.column, f.reason, f.severity)].add(f.row)
    if not rows_by_reason:
        return "Every row was loaded: no row was refused or repeats another."
    lines = sorted(rows_by_reason.items(), key=lambda item: (-len(item[1]), min(item[1])))
    out = ["| reason | severity | rows | count |", "| --- | --- | --- | ---: |"]
    for (column, reason, severity), rows in lines[:top]:
        shown = _rows_text([str(r) for r in sorted(rows)], rows_per_reason)
        out.append(f"| {_cell(f'{column}: {reason}')} | {severity} | {shown} | {len(rows)} |")
    if len(lines) > top:
        rest = sum(len(rows) for _, rows in lines[top:])
        out.append(f"| … and {len(lines) - top} more reasons | | | {rest} |")
    return "\n".join(out)


PREVIEW_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("row", "int", description="row number in the file (the header is row 1)"),
        dg.TableColumn("name", "string", description="masked: first character only"),
        dg.TableColumn("email", "string", description="masked: first character and the domain"),
        dg.TableColumn("phone", "string", description="masked: first group and last four digits"),
        dg.TableColumn("outcome", "string", description="ok, or why the row was left out"),
    ]
)


def preview_rows(source_rows: Iterable[int], findings: Iterable[Finding], *, problems: int, clean: int) -> list[int]:
    """Which rows a preview shows: the first rows with a finding, then the first clean ones."""
    flagged = {f.row for f in findings}
    present = sorted(set(source_rows))
    return sorted([r for r in present if r in flagged][:problems] + [r for r in present if r not in flagged][:clean])


def masked_preview(parsed: pd.DataFrame, findings: Iterable[Finding]) -> dg.TableMetadataValue:
    """The rows of ``parsed`` (text cells and ``source_row``, as intake read them) with every
    name, email and phone masked, and each row's outcome: ok, or the reasons it has."""
    outcome: dict[int, list[str]] = defaultdict(list)
    for f in findings:
        outcome[f.row].append(f"{f.column}: {f.reason}")

    def text(record: Mapping[str, object], column: str) -> str:
        value = record.get(column)
        return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()

    records = []
    for record in parsed.sort_values("source_row").to_dict(orient="records"):
        row = int(record["source_row"])
        email, phone = text(record, "email"), text(record, "phone")
        records.append(
            dg.TableRecord(
                {
                    "row": row,
                    "name": mask_name(text(record, "name")),
                    "email": mask_email(email) if email else "",
                    "phone": mask_phone(phone) if phone else "",
                    "outcome": "; ".join(outcome.get(row, [])) or "ok",
                }
            )
        )
    return dg.MetadataValue.table(records, schema=PREVIEW_SCHEMA)


def preview_of(
    parsed_file: Path, findings: Sequence[Finding], *, problems: int = PREVIEW_PROBLEMS, clean: int = PREVIEW_CLEAN
) -> dg.TableMetadataValue:
    """The masked preview of an upload's ``parsed.parquet``, reading only the rows and columns it
    shows (a 50 MB upload's frame is not read again for eight rows)."""
    present = set(pq.read_schema(parsed_file).names)
    numbers = pq.read_table(parsed_file, columns=["source_row"]).column("source_row").to_pylist()
    wanted = preview_rows(numbers, findings, problems=problems, clean=clean)
    if not wanted:
        return masked_preview(pd.DataFrame({"source_row": []}), findings)
    columns = ["source_row", *(c for c in PREVIEW_SOURCE_COLUMNS if c in present)]
    table = pq.read_table(parsed_file, columns=columns, filters=[("source_row", "in", wanted)])
    return masked_preview(table.to_pandas().head(len(wanted)), findings)


def _constraint(check: pa.Check) -> str:
    stats = {k: v for k, v in (check.statistics or {}).items() if v is not None}
    args = ", ".join(f"{k}={v!r}" for k, v in stats.items())
    return f"{check.name}({args})" if args else str(check.name)


def table_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    """A pandera schema as the UI's column table: type, nullability, uniqueness and each check."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=str(name),
                # "string[pyarrow]" is pandas' storage detail; the organiser reads "string".
                type=str(column.dtype).split("[")[0],
                description=column.description,
                constraints=dg.TableColumnConstraints(
                    nullable=bool(column.nullable),
                    unique=bool(column.unique),
                    other=[_constraint(c) for c in column.checks],
                ),
            )
            for name, column in schema.columns.items()
        ]
    )


def drop_metadata(drop: Drop) -> dict[str, dg.MetadataValue]:
    """A drop as the UI shows it on ``upload_file``. ``file`` is the name as stored beside the
    reason (file-system safe, no path): the organiser chose it and sees it in the folder anyway."""
    return {
        "event": dg.MetadataValue.text(drop.event or "(inbox top level)"),
        "file": dg.MetadataValue.text(drop.name),
        "reason": dg.MetadataValue.text(drop.reason),
        "moved_to": dg.MetadataValue.path(str(drop.path)),
    }
