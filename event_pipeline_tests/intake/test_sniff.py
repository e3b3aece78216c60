from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table, sniff_format

from .corpus import (
    MINIMAL_WORKBOOK_XML,
    PDF_BYTES,
    PNG_BYTES,
    encrypted_xlsx,
    fake_ole2,
    rename_ole_stream,
    to_root_layout,
    with_filepass,
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
        (
            {
                "[Content_Types].xml": b'<Types><Override PartName="/document.xml" ContentType="application/'
                b'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
            },
            "a Word document (DOCX)",
        ),
    ],
)
def test_office_zips_named(tmp_path: Path, members: dict[str, bytes], looks_like: str) -> None:
    error = _reason(write_zip(tmp_path / "a.xlsx", members))
    assert error.detail["looks_like"] == looks_like


XLSB_CONTENT_TYPES = (
    b'<Types><Override PartName="/workbook.bin" '
    b'ContentType="application/vnd.ms-excel.sheet.binary.macroEnabled.main"/></Types>'
)


@pytest.mark.parametrize(
    ("members", "fmt", "named"),
    [
        ({"[Content_Types].xml": b"<Types/>", "xl/workbook.bin": b"\x00"}, "xlsb", "an Excel binary workbook (XLSB)"),
        (
            {"[Content_Types].xml": XLSB_CONTENT_TYPES, "workbook.bin": b"\x00"},
            "xlsb",
            "an Excel binary workbook (XLSB)",
        ),
        (
            {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<office/>"},
            "ods",
            "an OpenDocument spreadsheet (ODS)",
        ),
    ],
)
def test_xlsb_and_ods_are_unsupported_formats(tmp_path: Path, members: dict[str, bytes], fmt: str, named: str) -> None:
    error = _reason(write_zip(tmp_path / "a.xlsx", members))
    assert error.detail == {"code": "unsupported_format", "format": fmt}
    assert str(error) == (
        f"This file is {named}, which cannot be read here. Open it in Excel and save it as "
        "'Excel Workbook (*.xlsx)', then upload it again."
    )
    assert error.localized("ko").startswith("이 파일은 ")
    assert "'Excel 통합 문서(*.xlsx)'로 저장한 뒤 다시 올려 주세요." in error.localized("ko")


def test_xlsx_with_parts_at_the_zip_root_is_left_to_the_library(tmp_path: Path) -> None:
    # Some generators put workbook.xml at the root; [Content_Types].xml and the relationships say
    # where it is, and calamine/openpyxl follow them.
    standard = write_xlsx(tmp_path / "standard.xlsx", {"Sheet": ROWS}).read_bytes()
    path = tmp_path / "root.xlsx"
    path.write_bytes(to_root_layout(standard))
    assert not any(name.startswith("xl/") for name in __import__("zipfile").ZipFile(path).namelist())
    assert sniff_format(path) == "xlsx"
    table = read_table(path)
    assert table.frame[["source_row", "name", "email"]].values.tolist() == [[2, "홍길동", "hong@example.com"]]


@pytest.mark.parametrize("stream", ["WORKBOOK", "BOOK"])
def test_xls_stream_names_are_case_insensitive(tmp_path: Path, stream: str) -> None:
    written = write_xls(tmp_path / "a.xls", ROWS).read_bytes()
    path = tmp_path / f"{stream}.xls"
    path.write_bytes(rename_ole_stream(written, "Workbook", stream))
    assert sniff_format(path) == "xls"
    assert read_table(path).frame[["name", "email"]].values.tolist() == [["홍길동", "hong@example.com"]]


def test_stream_names_in_cell_text_do_not_count(tmp_path: Path) -> None:
    # The Hangul makes xlwt store the text as UTF-16LE, exactly how directory names look.
    rows = [["이름", "이메일", "비고"], ["홍길동", "hong@example.com", "EncryptedPackage 확인"]]
    path = write_xls(tmp_path / "a.xls", rows)
    assert "EncryptedPackage".encode("utf-16-le") in path.read_bytes()
    assert sniff_format(path) == "xls"
    assert read_table(path).rows == 1


PASSWORD_MESSAGE = (
    "The workbook is password-protected. Open it in Excel, remove the password "
    "(File > Info > Protect Workbook), save and upload again."
)


def test_password_protected_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "암호.xlsx"
    path.write_bytes(encrypted_xlsx())
    error = _reason(path)
    assert error.detail == {"code": "password_protected"}
    assert str(error) == PASSWORD_MESSAGE
    assert error.localized("ko") == (
        "통합 문서에 암호가 설정되어 있습니다. Excel에서 파일을 열어 암호를 해제하고"
        "(파일 > 정보 > 통합 문서 보호) 저장한 뒤 다시 올려 주세요."
    )


def test_password_protected_xls(tmp_path: Path) -> None:
    # The sniffer cannot see a FILEPASS record; calamine reports it, and that is what is shown.
    written = write_xls(tmp_path / "a.xls", ROWS).read_bytes()
    path = tmp_path / "locked.xls"
    path.write_bytes(with_filepass(written))
    assert sniff_format(path) == "xls"
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.detail == {"code": "password_protected"}
    assert str(info.value) == PASSWORD_MESSAGE


def test_truncated_xls_is_corrupt_with_offset(tmp_path: Path) -> None:
    written = write_xls(tmp_path / "a.xls", ROWS).read_bytes()
    path = tmp_path / "cut.xls"
    path.write_bytes(written[:3000])
    with pytest.raises(IntakeError) as info:
        read_table(path)
    offset = info.value.detail["offset"]
    assert info.value.code == "corrupt"
    assert isinstance(offset, int) and offset >= 3000  # the sector it needs lies past the end
    assert str(info.value).startswith(f"This Excel (XLS) file could not be read at byte offset {offset} (")
    assert info.value.localized("ko").startswith(f"이 Excel(XLS) 파일을 바이트 위치 {offset}에서 읽을 수 없습니다(")


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
    ("streams", "message_start"),
    [
        (
            ("Root Entry", "WordDocument", "1Table"),
            "This file is not a spreadsheet: it looks like a legacy Word document",
        ),
        (
            ("Root Entry", "Foo"),
            "This file is not a spreadsheet: it looks like a Microsoft Office compound file",
        ),
    ],
)
def test_ole2_that_is_not_a_workbook(tmp_path: Path, streams: tuple[str, ...], message_start: str) -> None:
    path = tmp_path / "a.xls"
    path.write_bytes(fake_ole2(*streams))
    error = _reason(path)
    assert error.detail["code"] == "not_a_table"
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


@pytest.mark.parametrize(
    ("compression", "flip"),
    [
        (zipfile.ZIP_DEFLATED, 49),  # the first byte of the deflate stream: zlib.error
        (zipfile.ZIP_STORED, 134),  # the central directory's offset, pointing before the start: ValueError
    ],
)
def test_damaged_content_types_is_corrupt_not_a_library_exception(tmp_path: Path, compression: int, flip: int) -> None:
    # Found by the intake fuzzer (faults/test_fuzz_intake.py): sniffing reads [Content_Types].xml,
    # and zipfile's errors other than BadZipFile escaped sniff_format and read_table.
    with zipfile.ZipFile(buffer := io.BytesIO(), "w", compression) as zf:
        zf.writestr("[Content_Types].xml", b"<a/>")
    data = bytearray(buffer.getvalue())
    data[flip] ^= 0xFF
    path = tmp_path / "damaged.xlsx"
    path.write_bytes(bytes(data))
    error = _reason(path)
    assert error.key == "corrupt.zip"
    assert str(error).startswith("This file looks like a ZIP/XLSX file but it is damaged or incomplete")
