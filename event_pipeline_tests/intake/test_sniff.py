from __future__ import annotations

from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table, sniff_format

from .corpus import (
    MINIMAL_WORKBOOK_XML,
    PDF_BYTES,
    PNG_BYTES,
    fake_ole2,
    write_csv,
    write_xls,
    write_xlsx,
    write_zip,
)

ROWS = [["이름", "이메일"], ["홍길동", "hong@example.com"]]


def _reason(path: Path) -> IntakeError:
    with pytest.raises(IntakeError) as info:
        sniff_format(path)
    with pytest.raises(IntakeError) as via_read:
        read_table(path)
    assert str(via_read.value) == str(info.value)
    return info.value


def test_formats_by_content_not_name(tmp_path: Path) -> None:
    # XLSX content named .csv, CSV content named .xlsx, XLS named .txt: the name never matters.
    xlsx_as_csv = write_xlsx(tmp_path / "list.csv", {"Sheet": ROWS})
    csv_as_xlsx = write_csv(tmp_path / "list.xlsx", ROWS)
    xls_as_txt = write_xls(tmp_path / "list.txt", ROWS)
    assert sniff_format(xlsx_as_csv) == "xlsx"
    assert sniff_format(csv_as_xlsx) == "csv"
    assert sniff_format(xls_as_txt) == "xls"
    assert read_table(xlsx_as_csv).format == "xlsx"
    assert read_table(csv_as_xlsx).format == "csv"
    assert read_table(xls_as_txt).format == "xls"
    for path in (xlsx_as_csv, csv_as_xlsx, xls_as_txt):
        assert read_table(path).frame[["source_row", "name", "email"]].values.tolist() == [
            [2, "홍길동", "hong@example.com"]
        ]


def test_tsv_is_csv_format(tmp_path: Path) -> None:
    assert sniff_format(write_csv(tmp_path / "a.tsv", ROWS, delimiter="\t")) == "csv"


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (PNG_BYTES, "a PNG image"),
        (PDF_BYTES, "a PDF document"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "a gzip archive"),
        (b"Rar!\x1a\x07\x00" + b"\x00" * 20, "a RAR archive"),
        (b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 60, "a Windows executable"),
    ],
)
def test_binary_files_are_named(tmp_path: Path, content: bytes, looks_like: str) -> None:
    path = tmp_path / "participants.csv"
    path.write_bytes(content)
    error = _reason(path)
    assert error.detail == {"code": "not_a_table", "looks_like": looks_like}
    assert str(error) == (
        f"This file is not a spreadsheet: it looks like {looks_like}. "
        "Please upload the participant list as CSV, XLSX or XLS."
    )


def test_mz_title_row_is_still_csv(tmp_path: Path) -> None:
    # "MZ" is also a Korean generation label; without executable structure it is just text.
    path = tmp_path / "mz.csv"
    path.write_text("MZ세대 행사 참가자\n이름,이메일\n김,k@example.com\n", encoding="utf-8")
    assert sniff_format(path) == "csv"


def test_zip_that_is_not_xlsx(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "a.xlsx", {"participants.csv": b"name,email\n"})
    error = _reason(path)
    assert error.detail["looks_like"] == "a ZIP archive that is not an Excel workbook"
    assert "If the list is inside it, unzip it first." in str(error)


@pytest.mark.parametrize(
    ("members", "looks_like"),
    [
        ({"word/document.xml": b"<w/>"}, "a Word document (DOCX)"),
        ({"ppt/presentation.xml": b"<p/>"}, "a PowerPoint presentation (PPTX)"),
        ({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet"}, "an OpenDocument spreadsheet (ODS)"),
        ({"xl/workbook.bin": b"\x00"}, "an Excel binary workbook (XLSB)"),
    ],
)
def test_office_zips_named(tmp_path: Path, members: dict[str, bytes], looks_like: str) -> None:
    error = _reason(write_zip(tmp_path / "a.xlsx", members))
    assert error.detail["looks_like"] == looks_like


def test_xlsx_detected_by_workbook_member(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "a.bin", {"xl/workbook.xml": MINIMAL_WORKBOOK_XML.encode()})
    assert sniff_format(path) == "xlsx"


def test_truncated_zip(tmp_path: Path) -> None:
    good = write_xlsx(tmp_path / "good.xlsx", {"S": ROWS}).read_bytes()
    path = tmp_path / "cut.xlsx"
    path.write_bytes(good[: len(good) // 2])
    error = _reason(path)
    assert error.detail["code"] == "corrupt"
    assert str(error).startswith("This file looks like a ZIP/XLSX file but it is damaged or incomplete")


@pytest.mark.parametrize(
    ("streams", "code", "message_start"),
    [
        (("Root Entry", "EncryptedPackage", "EncryptionInfo"), "encrypted", "This Excel file is password-protected."),
        (
            ("Root Entry", "WordDocument", "1Table"),
            "not_a_table",
            "This file is not a spreadsheet: it looks like a legacy Word document (DOC).",
        ),
        (
            ("Root Entry", "Foo"),
            "not_a_table",
            "This file is not a spreadsheet: it looks like a Microsoft Office compound file",
        ),
    ],
)
def test_ole2_that_is_not_a_workbook(tmp_path: Path, streams: tuple[str, ...], code: str, message_start: str) -> None:
    path = tmp_path / "a.xls"
    path.write_bytes(fake_ole2(*streams))
    error = _reason(path)
    assert error.detail["code"] == code
    assert str(error).startswith(message_start)


def test_html_saved_as_xls(tmp_path: Path) -> None:
    path = tmp_path / "export.xls"
    path.write_text("\n<html><body><table><tr><td>이름</td></tr></table></body></html>", encoding="utf-8")
    error = _reason(path)
    assert error.detail["looks_like"] == "a web page (HTML)"
    assert "Some systems export HTML tables with an .xls name" in str(error)


def test_spreadsheetml_2003(tmp_path: Path) -> None:
    path = tmp_path / "export.xls"
    path.write_text(
        '<?xml version="1.0"?>\n<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet"></Workbook>',
        encoding="utf-8",
    )
    assert _reason(path).detail["looks_like"] == "an Excel 2003 XML spreadsheet"


def test_binary_with_nul_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"name,email\n\x01\x02\x00\x03\x04\x05\x06\x07\x08\x00\x00\x00\x00\x11")
    error = _reason(path)
    assert error.detail == {"code": "not_a_table", "looks_like": "binary data", "offset": 13}
    assert "a NUL byte at byte offset 13" in str(error)


@pytest.mark.parametrize("content", [b"", b"\r\n\r\n  \n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"])
def test_empty_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    error = _reason(path)
    assert error.detail == {"code": "empty"}
    assert str(error) == "The file is empty."
