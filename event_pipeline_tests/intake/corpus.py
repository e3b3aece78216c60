"""Test files built on the fly: no downloaded fixtures, every byte is visible in the tests."""

from __future__ import annotations

import csv
import datetime as dt
import io
import struct
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


_FREE, _END, _FATSECT, _NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
_SECTOR = 512


def _dir_entry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
    encoded = name.encode("utf-16-le") + b"\x00\x00"
    return (
        encoded.ljust(64, b"\x00")
        + struct.pack("<HBBIII", len(encoded), kind, 1, _NONE, right, child)
        + b"\x00" * 36  # CLSID, state bits, creation and modification times
        + struct.pack("<IQ", start, size)
    )


def write_ole2(streams: dict[str, bytes]) -> bytes:
    """A real (version 3) compound file with these streams under the root, each in regular sectors.

    Streams are padded to the 4096-byte mini-stream cutoff so no mini FAT is needed; the
    directory is a right-leaning chain, which readers accept.
    """
    padded = {name: data.ljust(4096, b"\x00") for name, data in streams.items()}
    entries = 1 + len(padded)
    dir_sectors = -(-entries * 128 // _SECTOR)
    fat = [_FATSECT] + [i + 2 for i in range(dir_sectors - 1)] + [_END]
    directory = [_dir_entry("Root Entry", 5, 1 if padded else _NONE, _NONE, _END, 0)]
    body = b""
    for i, (name, data) in enumerate(padded.items(), start=1):
        first = len(fat)
        count = len(data) // _SECTOR + (len(data) % _SECTOR > 0)
        fat += [first + j + 1 for j in range(count - 1)] + [_END]
        right = i + 1 if i < len(padded) else _NONE
        directory.append(_dir_entry(name, 2, _NONE, right, first, len(data)))
        body += data.ljust(count * _SECTOR, b"\x00")
    assert len(fat) <= _SECTOR // 4, "one FAT sector is enough for test files"
    header = (
        OLE2_MAGIC
        + b"\x00" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + b"\x00" * 6
        + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, _END, 0, _END, 0)
        + struct.pack("<109I", 0, *([_FREE] * 108))
    )
    fat_sector = struct.pack(f"<{_SECTOR // 4}I", *fat, *([_FREE] * (_SECTOR // 4 - len(fat))))
    dir_bytes = b"".join(directory).ljust(dir_sectors * _SECTOR, b"\x00")
    return header + fat_sector + dir_bytes + body


def fake_ole2(*stream_names: str) -> bytes:
    """A compound file with these (empty) streams: enough for sniffing, which reads the directory."""
    return write_ole2({name: b"" for name in stream_names if name != "Root Entry"})


def encrypted_xlsx() -> bytes:
    """What Excel writes for an XLSX saved with a password: an OLE2 file, not a ZIP."""
    return write_ole2(
        {
            "EncryptionInfo": b"\x04\x00\x04\x00\x40\x00\x00\x00<encryption/>",
            "EncryptedPackage": b"\x00\x10\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 16,
        }
    )


def rename_ole_stream(data: bytes, old: str, new: str) -> bytes:
    """Rename a directory entry in place (name and name length; entries sit on 128-byte boundaries)."""
    out = bytearray(data)
    needle = old.encode("utf-16-le") + b"\x00\x00"
    at = next(i for i in range(512, len(data), 128) if data[i : i + len(needle)] == needle)
    encoded = new.encode("utf-16-le") + b"\x00\x00"
    out[at : at + 64] = encoded.ljust(64, b"\x00")
    out[at + 64 : at + 66] = struct.pack("<H", len(encoded))
    return bytes(out)


def with_filepass(xls: bytes) -> bytes:
    """An xlwt workbook whose second BIFF record (after BOF) is turned into FILEPASS (0x002F).

    xlwt puts the Workbook stream at the first sector; FILEPASS right after BOF is where Excel
    writes it in an encrypted workbook, and readers stop there.
    """
    out = bytearray(xls)
    bof_type, bof_length = struct.unpack_from("<HH", out, 512)
    assert bof_type == 0x0809
    struct.pack_into("<H", out, 512 + 4 + bof_length, 0x002F)
    return bytes(out)


def to_root_layout(xlsx: bytes) -> bytes:
    """The same workbook with its parts at the ZIP root instead of under xl/, references fixed."""
    source = zipfile.ZipFile(io.BytesIO(xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            data = source.read(name)
            if name in ("[Content_Types].xml", "_rels/.rels") or name.endswith(".rels"):
                data = data.replace(b'"/xl/', b'"/').replace(b'Target="xl/', b'Target="')
            target.writestr(name.removeprefix("xl/"), data)
    return out.getvalue()
