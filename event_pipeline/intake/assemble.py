"""RawGrid -> ParsedTable: find the header, map columns, drop empty rows, pack extras as JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from event_pipeline.intake.errors import IntakeError
from event_pipeline.intake.headers import HEADER_SCAN_ROWS, find_header_row, map_headers, no_header_error
from event_pipeline.intake.table import CANONICAL_FIELDS, ParsedTable, RawGrid


def _json_objects(body: pd.DataFrame, extras: list[tuple[str, int]]) -> pd.Series:
    """Column-wise JSON encoding: json.dumps once per distinct value, then vectorised concatenation.

    Produces exactly ``json.dumps({key: value, ...}, ensure_ascii=False)`` per row.
    """
    n = len(body)
    if not extras:
        return pd.Series(["{}"] * n, index=body.index, dtype="str")
    out: pd.Series | None = None
    for i, (key, position) in enumerate(extras):
        values = body[position]
        encoded_values = {v: json.dumps(v, ensure_ascii=False) for v in values.unique()}
        encoded = values.map(encoded_values).astype("str")
        prefix = ("{" if i == 0 else ", ") + json.dumps(key, ensure_ascii=False) + ": "
        part = prefix + encoded
        out = part if out is None else out + part
    assert out is not None
    return out + "}"


def assemble(
    grid: RawGrid, *, format: str, encoding: str | None, delimiter: str | None, warnings: list[str]
) -> ParsedTable:
    cells = grid.cells
    head_rows = cells.iloc[:HEADER_SCAN_ROWS].to_numpy(dtype=object).tolist()
    index = find_header_row(head_rows)
    if index is None:
        raise no_header_error(head_rows, grid.source_rows[:HEADER_SCAN_ROWS].tolist())
    header_row = int(grid.source_rows[index])
    header = [str(v) for v in head_rows[index]]
    body = cells.iloc[index + 1 :]
    body_rows = grid.source_rows[index + 1 :]

    # Whitespace-only cells (a stray space, an NBSP) do not make a row or column "have data".
    nonblank = pd.DataFrame({c: body[c].str.strip() != "" for c in body.columns}, index=body.index)
    has_data = nonblank.any(axis=0).tolist()
    keep = nonblank.any(axis=1).to_numpy(dtype=bool) if len(body.columns) else np.zeros(len(body), bool)
    empty_rows = int(len(body) - keep.sum())

    mapping = map_headers(header, header_row, has_data)
    if not keep.any():
        # A header alone is almost always the wrong file or an export cut short; 0 rows "imported"
        # would look like success.
        raise IntakeError.of("no_data_rows", {"header_row": header_row, "empty_rows": empty_rows})
    body = body.loc[keep].reset_index(drop=True)
    columns: dict[str, pd.Series] = {"source_row": pd.Series(body_rows[keep].astype(np.int64))}
    for field in CANONICAL_FIELDS:
        if field in mapping.canonical:
            columns[field] = body[mapping.canonical[field]]
    columns["extra"] = _json_objects(body, mapping.extras)
    out = pd.DataFrame(columns)

    notes = list(warnings) + list(grid.warnings) + mapping.warnings
    skipped_above = int(np.count_nonzero(nonblank_rows_above(cells, index)))
    if skipped_above:
        notes.append(f"{skipped_above} row(s) above the header (row {header_row}) were ignored as titles or notes.")
    phone_position = mapping.canonical.get("phone")
    numeric_phones = grid.numeric_cells.get(phone_position, 0) if phone_position is not None else 0
    if numeric_phones:
        notes.append(
            f"{numeric_phones} phone cell(s) are stored as numbers in the workbook, so Excel may have dropped "
            "their leading 0; they were read as text and are interpreted with the default region."
        )
    return ParsedTable(
        frame=out,
        format=format,
        encoding=encoding,
        delimiter=delimiter,
        header_row=header_row,
        columns=dict(mapping.sources),
        extra_columns=[key for key, _ in mapping.extras],
        empty_rows=empty_rows,
        rows=len(out),
        warnings=notes,
    )


def nonblank_rows_above(cells: pd.DataFrame, index: int) -> np.ndarray:
    above = cells.iloc[:index]
    if above.empty:
        return np.zeros(0, dtype=bool)
    return np.array([any(str(v).strip() for v in row) for row in above.to_numpy(dtype=object)], dtype=bool)
