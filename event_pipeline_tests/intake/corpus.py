"""Test files built on the fly: no downloaded fixtures, every byte is visible in the tests."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import openpyxl
import xlwt

Rows = Sequence[Sequence[object]] | Sequence[list[object]]


def write_csv(
    path: Path, rows: Rows, *, encoding: str = "utf-8", delimiter: str = ",", lineterminator: str = "\r\n"
) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=lineterminator)
    writer.writerows([[str(c) for c in row] for row in rows])
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, sheets: dict[str, Rows], *, hidden: Sequence[str] = ()) -> Path:
    """Rows are written from A1; None leaves a cell empty (so titles/blank rows can be placed)."""
    workbook = openpyxl.Workbook()
    first = True
    for name, rows in sheets.items():
        worksheet = workbook.active if first else workbook.create_sheet()
        assert worksheet is not None
        worksheet.title = name
        first = False
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    worksheet.cell(row=r, column=c, value=value)
        if name in hidden:
            worksheet.sheet_state = "hidden"
    workbook.save(path)
    return path


def write_xls(path: Path, rows: Rows, *, sheet: str = "Sheet1") -> Path:
    workbook = xlwt.Workbook(encoding="utf-8")
    worksheet = workbook.add_sheet(sheet)
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, dt.date):
                worksheet.write(r, c, value, date_style)
            else:
                worksheet.write(r, c, value)
    workbook.save(str(path))
    return path


MINIMAL_WORKBOOK_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheets/></workbook>'
)


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_zip_bomb(path: Path, *, inflated_bytes: int) -> Path:
    """An XLSX-looking ZIP whose sheet inflates to ``inflated_bytes`` of zeros, streamed in."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", b"<Types/>")
        zf.writestr("xl/workbook.xml", MINIMAL_WORKBOOK_XML)
        chunk = b"\x00" * (1024 * 1024)
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member:
            for _ in range(inflated_bytes // len(chunk)):
                member.write(chunk)
    return path


def forge_declared_sizes(path: Path, member: str, declared: int) -> None:
    """Rewrite the uncompressed size a ZIP declares for ``member`` (local header + directory)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    # Local file header: signature, then uncompressed size at offset 22.
    local = info.header_offset
    assert data[local : local + 4] == b"PK\x03\x04"
    data[local + 22 : local + 26] = declared.to_bytes(4, "little")
    # Central directory entry: find it by signature + file name; uncompressed size at offset 24.
    start = 0
    while True:
        start = data.index(b"PK\x01\x02", start)
        name_len = int.from_bytes(data[start + 28 : start + 30], "little")
        if bytes(data[start + 46 : start + 46 + name_len]) == name:
            data[start + 24 : start + 28] = declared.to_bytes(4, "little")
            break
        start += 4
    path.write_bytes(bytes(data))


PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82"
)
PDF_BYTES = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def fake_ole2(*stream_names: str) -> bytes:
    """Enough of a compound file for sniffing: magic plus UTF-16LE directory entry names."""
    body = b"".join(name.encode("utf-16-le") + b"\x00\x00" for name in stream_names)
    return OLE2_MAGIC + b"\x00" * 504 + body + b"\x00" * 512
