"""XLSX / XLS to a RawGrid: python-calamine first (fast, Rust), openpyxl as the XLSX fallback."""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import python_calamine as calamine
from pandas.api.types import infer_dtype

from event_pipeline.intake.cells import cell_text, is_number
from event_pipeline.intake.errors import IntakeError, library_error
from event_pipeline.intake.messages import Phrase
from event_pipeline.intake.table import RawGrid
from event_pipeline.intake.zipguard import check_xlsx_container


def _text_column(values: np.ndarray) -> tuple[pd.Series, int]:
    """One column of cell objects as text, plus how many were numbers (phones that lost a 0)."""
    # infer_dtype is a single C pass; most columns (names, emails) are all text already.
    if infer_dtype(values, skipna=False) in ("string", "empty"):
        return pd.Series(values, dtype="str"), 0
    numeric = sum(1 for v in values if is_number(v))
    text = [v if type(v) is str else cell_text(v) for v in values]
    return pd.Series(text, dtype="str"), numeric


def _grid(rows: list[list[Any]], first_row: int = 1) -> RawGrid:
    """Cell objects (rows from the sheet's A1) to a RawGrid of text, converted column by column."""
    width = max((len(r) for r in rows), default=0)
    if any(len(r) != width for r in rows):
        rows = [r + [None] * (width - len(r)) for r in rows]
    matrix = np.empty((len(rows), width), dtype=object)
    if rows:
        matrix[:] = rows
    columns: dict[int, pd.Series] = {}
    numeric: dict[int, int] = {}
    for position in range(width):
        columns[position], count = _text_column(matrix[:, position])
        if count:
            numeric[position] = count
    cells = pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
    cells.columns = pd.RangeIndex(width)
    return RawGrid(
        cells=cells,
        source_rows=np.arange(first_row, first_row + len(rows), dtype=np.int64),
        numeric_cells=numeric,
    )


def _has_content(rows: Sequence[Sequence[object]]) -> bool:
    return any(str(cell).strip() for row in rows for cell in row if cell is not None)


_SECTOR = re.compile(r"\bSector (\d+)\b")


def _library_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a reader library refusing the file. A Rust panic inside calamine (a
    slice index past the end of a cut-short XLS) reaches Python as pyo3's PanicException, which
    derives from BaseException, so ``except Exception`` alone lets it escape intake."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _sheet_not_found(sheet: str, names: list[str]) -> IntakeError:
    return IntakeError.of("sheet_not_found", {"sheets": names}, sheet=sheet, sheets=", ".join(f"'{n}'" for n in names))


def _xls_error(data: bytes, exc: BaseException) -> IntakeError:
    """Why calamine cannot read an XLS: password (a FILEPASS record) or damage, with the byte offset if known.

    Reading from a file-like object, calamine tries every format and only says "Cannot detect file
    format"; opened as a path named .xls it reports the XLS reader's own error. So reopen once from
    a private temporary copy to learn the real cause.
    """
    cause: BaseException = exc
    if not isinstance(exc, calamine.PasswordError):
        with tempfile.NamedTemporaryFile(suffix=".xls") as copy:
            copy.write(data)
            copy.flush()
            try:
                calamine.CalamineWorkbook.from_path(copy.name).close()
            except BaseException as specific:
                if not _library_failure(specific):
                    raise
                cause = specific
    if isinstance(cause, calamine.PasswordError):
        return IntakeError.of("password_protected")
    detail: dict[str, object] = {"error": library_error(cause)}
    where = Phrase("")
    sector = _SECTOR.search(str(cause))
    if sector and len(data) > 0x1E and data[0x1E] in (9, 12):
        # calamine names the compound-file sector; sector n starts after the header, at (n + 1) * size.
        detail["offset"] = (int(sector.group(1)) + 1) << data[0x1E]
        where = Phrase("at_offset", {"offset": detail["offset"]})
    return IntakeError.of("corrupt.xls", detail, where=where, error=detail["error"])


def _pick_sheet(
    workbook: calamine.CalamineWorkbook, sheet: str | None
) -> tuple[str, list[list[Any]] | None, list[str]]:
    """(sheet name, its rows or None if every sheet is empty, warnings)."""
    names: list[str] = list(workbook.sheet_names)
    if sheet is not None:
        if sheet not in names:
            raise _sheet_not_found(sheet, names)
        rows = workbook.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
        if not _has_content(rows):
            raise IntakeError.of("empty.sheet", {"sheet": sheet}, sheet=sheet)
        return sheet, rows, []
    metadata = {m.name: m for m in workbook.sheets_metadata}
    visible = [
        n
        for n in names
        if metadata[n].typ == calamine.SheetTypeEnum.WorkSheet
        and metadata[n].visible == calamine.SheetVisibleEnum.Visible
    ]
    # Hidden sheets often hold lookup lists; only fall back to them if nothing visible has data.
    ordered = visible + [n for n in names if n not in visible]
    skipped: list[str] = []
    for name in ordered:
        rows = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
        if _has_content(rows):
            warnings = (
                [f"Sheet(s) {', '.join(repr(s) for s in skipped)} are empty; read sheet '{name}'."] if skipped else []
            )
            if len(visible) > 1 and name == visible[0]:
                warnings.append(
                    f"The workbook has {len(visible)} sheets; only the first non-empty one, '{name}', was read."
                )
            return name, rows, warnings
        skipped.append(name)
    return (ordered[0] if ordered else ""), None, []


def _openpyxl_rows(data: bytes, sheet: str | None) -> tuple[str, list[list[Any]]]:
    import openpyxl

    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise _sheet_not_found(sheet, list(workbook.sheetnames))
        names = [sheet] if sheet is not None else list(workbook.sheetnames)
        for name in names:
            worksheet = workbook[name]
            rows = [list(r) for r in worksheet.iter_rows(min_row=1, min_col=1, values_only=True)]
            if _has_content(rows):
                return name, rows
            if sheet is not None:
                raise IntakeError.of("empty.sheet", {"sheet": sheet}, sheet=sheet)
        return names[0] if names else "", []
    finally:
        workbook.close()


def read_workbook(data: bytes, fmt: str, *, sheet: str | None, max_bytes: int) -> tuple[RawGrid, list[str]]:
    """The first non-empty visible worksheet (or ``sheet``) as a RawGrid with spreadsheet row numbers."""
    if fmt == "xlsx":
        check_xlsx_container(data, max_bytes)
    warnings: list[str] = []
    try:
        workbook = calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        try:
            _sheet_name, rows, warnings = _pick_sheet(workbook, sheet)
        finally:
            workbook.close()
    except IntakeError:
        raise
    except BaseException as exc:  # calamine raises its own types plus ValueError/OSError on odd files
        if not _library_failure(exc):
            raise
        if fmt != "xlsx":
            raise _xls_error(data, exc) from exc
        # openpyxl reads some XLSX calamine refuses (and the reverse); its error is the final word.
        try:
            _sheet_name, raw = _openpyxl_rows(data, sheet)
        except IntakeError:
            raise
        except Exception as fallback_exc:
            error = library_error(fallback_exc)
            raise IntakeError.of("corrupt.xlsx", {"error": error}, where=Phrase(""), error=error) from fallback_exc
        rows = raw if _has_content(raw) else None
    if rows is None:
        raise IntakeError.of("empty.workbook")
    return _grid(rows), warnings
