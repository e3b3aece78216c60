from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table

from .corpus import MINIMAL_WORKBOOK_XML, forge_declared_sizes, write_zip, write_zip_bomb

MB = 1024 * 1024


def test_highly_compressed_member_is_refused_before_inflating(tmp_path: Path) -> None:
    path = write_zip_bomb(tmp_path / "bomb.xlsx", inflated_bytes=200 * MB)
    assert path.stat().st_size < 1 * MB
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(IntakeError) as info:
            read_table(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 2.0
    assert peak < 20 * MB
    assert info.value.detail["code"] == "zip_bomb"
    assert info.value.detail["member"] == "xl/worksheets/sheet1.xml"
    assert int(str(info.value.detail["ratio"])) > 100
    assert str(info.value).startswith(
        "This Excel file was refused because it expands to far more data than it contains "
        "(member 'xl/worksheets/sheet1.xml' is compressed "
    )


def test_declared_total_over_budget(tmp_path: Path) -> None:
    path = write_zip_bomb(tmp_path / "bomb.xlsx", inflated_bytes=20 * MB)
    with pytest.raises(IntakeError) as info:
        read_table(path, max_bytes=1 * MB)  # budget: 16 x 1 MB
    assert info.value.detail["code"] == "zip_bomb"
    assert info.value.detail["budget"] == 16 * MB
    assert int(str(info.value.detail["declared"])) > 20 * MB


def test_lying_size_declaration_is_caught_while_streaming(tmp_path: Path) -> None:
    # The directory claims the sheet inflates to 1000 bytes; really it is 30 MB. zipfile stops at
    # the declared size and the CRC no longer matches, so nothing big is ever materialised.
    path = write_zip(
        tmp_path / "liar.xlsx",
        {"xl/workbook.xml": MINIMAL_WORKBOOK_XML.encode(), "xl/worksheets/sheet1.xml": b"<c/>" * (30 * MB // 4)},
    )
    forge_declared_sizes(path, "xl/worksheets/sheet1.xml", 1000)
    tracemalloc.start()
    try:
        with pytest.raises(IntakeError) as info:
            read_table(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * MB
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("xl/worksheets/sheet1.xml").header_offset
    assert info.value.detail["code"] == "corrupt"
    assert info.value.detail["offset"] == offset
    assert str(info.value).startswith(
        "This Excel (XLSX) file is damaged: its ZIP structure is inconsistent "
        f"(member 'xl/worksheets/sheet1.xml' at byte offset {offset}: BadZipFile: "
    )


def test_size_limit_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"name,email\n" + b"Kim,k@example.com\n" * 1000)
    with pytest.raises(IntakeError) as info:
        read_table(path, max_bytes=1000)
    assert info.value.detail == {"code": "too_large", "size": 18011, "limit": 1000}
    assert str(info.value) == (
        "The file is too large (17.6 KB); the limit is 1000 bytes. Split the list into smaller files."
    )


def _one_member_zip(compression: int, *, flip: int) -> bytes:
    """A ZIP holding xl/workbook.xml with the byte at ``flip`` inverted."""
    with zipfile.ZipFile(buffer := io.BytesIO(), "w", compression) as zf:
        zf.writestr("xl/workbook.xml", b"<a/>")
    data = bytearray(buffer.getvalue())
    data[flip] ^= 0xFF
    return bytes(data)


# Found by the intake fuzzer (faults/test_fuzz_intake.py): zipfile raises more than BadZipFile on a
# damaged archive, and each of these escaped intake as a plain library exception. The header of
# the one member is 45 bytes (30 + the name), so its data starts at byte 45.
@pytest.mark.parametrize(
    ("compression", "flip", "escaped"),
    [
        (zipfile.ZIP_DEFLATED, 45, "zlib.error: invalid code lengths set"),
        (zipfile.ZIP_BZIP2, 45, "OSError: Invalid data stream"),
        (zipfile.ZIP_LZMA, 45 + 9, "LZMAError: Corrupt input data"),
        (zipfile.ZIP_STORED, 28, "EOFError (the member's extra field runs past the end)"),
        (zipfile.ZIP_STORED, 126, "ValueError: negative seek value (central directory offset)"),
    ],
)
def test_damaged_member_is_a_clear_error_not_a_library_exception(
    tmp_path: Path, compression: int, flip: int, escaped: str
) -> None:
    path = tmp_path / "damaged.xlsx"
    path.write_bytes(_one_member_zip(compression, flip=flip))
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.code == "corrupt", escaped
    assert info.value.key in ("corrupt.zip_member", "corrupt.zip")
    assert str(info.value).startswith(("This Excel (XLSX) file is damaged", "This file looks like a ZIP/XLSX file"))
    assert info.value.localized("ko").strip()
