"""read_table: the single entry point from a file path to a ParsedTable."""

from __future__ import annotations

from pathlib import Path

from event_pipeline.intake.assemble import assemble
from event_pipeline.intake.csv_reader import read_delimited
from event_pipeline.intake.decode import decode_text
from event_pipeline.intake.dialect import sniff_delimiter
from event_pipeline.intake.errors import IntakeError
from event_pipeline.intake.sniff import sniff_bytes
from event_pipeline.intake.table import DEFAULT_MAX_BYTES, ParsedTable


def _human(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refusing before reading anything if it is over the limit."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise IntakeError.of("not_found", name=path.name) from exc
    if size > max_bytes:
        raise IntakeError.of(
            "too_large", {"size": size, "limit": max_bytes}, size=_human(size), limit=_human(max_bytes)
        )
    with path.open("rb") as fh:
        # The file may grow between stat and read (still being copied): never read past the limit.
        # Ask for what stat reported (+1 to notice growth): read(n) allocates n bytes up front.
        data = fh.read(min(size, max_bytes) + 1)
        if len(data) > size and len(data) <= max_bytes:
            data += fh.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise IntakeError.of("too_large.grew", {"size": len(data), "limit": max_bytes}, limit=_human(max_bytes))
    return data


def read_table(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, sheet: str | None = None) -> ParsedTable:
    """Read a CSV/TSV, XLSX or XLS participant list into text columns.

    The format is sniffed from content. Cell values are returned as written (no stripping);
    empty rows are dropped and counted. Raises IntakeError for anything that makes the whole
    file unusable (size, format, encoding, password, no header, missing or duplicated required
    columns, no data rows).
    """
    path = Path(path)
    data = read_bounded(path, max_bytes)
    fmt = sniff_bytes(data)
    if fmt == "csv":
        decoded = decode_text(data)
        del data
        delimiter = sniff_delimiter(decoded.text)
        grid = read_delimited(decoded.text, delimiter)
        return assemble(grid, format="csv", encoding=decoded.encoding, delimiter=delimiter, warnings=[])
    from event_pipeline.intake.excel_reader import read_workbook

    grid, sheet_warnings = read_workbook(data, fmt, sheet=sheet, max_bytes=max_bytes)
    return assemble(grid, format=fmt, encoding=None, delimiter=None, warnings=sheet_warnings)
