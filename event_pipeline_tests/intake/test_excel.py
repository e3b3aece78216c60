from __future__ import annotations

import datetime as dt
import io
import json
import struct
import zipfile
from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table

from .corpus import write_xls, write_xlsx

TITLED: list[list[object]] = [
    ["2024 행사 참가자 명단"],
    [],
    [None, "이름", "이메일", "휴대폰", "등록일", "인원", "확정"],
    [None, "홍길동", "hong@example.com", 1012345678, dt.datetime(2024, 3, 1), 2, True],
    [None, "김영희", "kim@example.com", "010-2222-3333", dt.datetime(2024, 3, 1, 9, 30), 1.5, False],
    [],
    [None, "합계", None, None, None, 3.5, None],
]


def test_xlsx_with_title_rows(tmp_path: Path) -> None:
    table = read_table(write_xlsx(tmp_path / "a.xlsx", {"참가자": TITLED}))
    assert (table.format, table.encoding, table.delimiter) == ("xlsx", None, None)
    assert table.header_row == 3
    assert table.columns == {"name": "이름", "email": "이메일", "phone": "휴대폰"}
    assert table.extra_columns == ["등록일", "인원", "확정"]
    assert table.frame["source_row"].tolist() == [4, 5, 7]
    assert table.frame["phone"].tolist() == ["1012345678", "010-2222-3333", ""]
    assert [json.loads(x) for x in table.frame["extra"]] == [
        {"등록일": "2024-03-01", "인원": "2", "확정": "TRUE"},
        {"등록일": "2024-03-01T09:30:00", "인원": "1.5", "확정": "FALSE"},
        {"등록일": "", "인원": "3.5", "확정": ""},
    ]
    assert table.empty_rows == 1
    assert table.warnings == [
        "1 row(s) above the header (row 3) were ignored as titles or notes.",
        "1 phone cell(s) are stored as numbers in the workbook, so Excel may have dropped their leading 0; "
        "they were read as text and are interpreted with the default region.",
    ]


def test_legacy_xls(tmp_path: Path) -> None:
    rows: list[list[object]] = [
        ["참가자 명단"],
        [],
        ["성명", "E-mail", "연락처", "생일"],
        ["홍길동", "hong@example.com", 1012345678.0, dt.date(1990, 5, 17)],
        ["Lee", "lee@example.com", "+82 10-1234-5678", None],
    ]
    table = read_table(write_xls(tmp_path / "a.xls", rows))
    assert table.format == "xls"
    assert table.header_row == 3
    assert table.frame.to_dict(orient="records") == [
        {
            "source_row": 4,
            "name": "홍길동",
            "email": "hong@example.com",
            "phone": "1012345678",
            "extra": '{"생일": "1990-05-17"}',
        },
        {
            "source_row": 5,
            "name": "Lee",
            "email": "lee@example.com",
            "phone": "+82 10-1234-5678",
            "extra": '{"생일": ""}',
        },
    ]


def test_big_integers_and_fractions(tmp_path: Path) -> None:
    rows: list[list[object]] = [["name", "email", "id", "ratio"], ["Kim", "k@example.com", 12345678901234.0, 0.1]]
    table = read_table(write_xlsx(tmp_path / "a.xlsx", {"S": rows}))
    assert json.loads(table.frame["extra"][0]) == {"id": "12345678901234", "ratio": "0.1"}


def test_first_non_empty_visible_sheet(tmp_path: Path) -> None:
    rows = [["name", "email"], ["Kim", "k@example.com"]]
    path = write_xlsx(
        tmp_path / "a.xlsx",
        {"코드표": [["code", "value"], ["a", "b"]], "빈 시트": [], "참가자": rows},
        hidden=["코드표"],
    )
    table = read_table(path)
    assert table.frame["name"].tolist() == ["Kim"]
    assert table.warnings == ["Sheet(s) '빈 시트' are empty; read sheet '참가자'."]


def test_named_sheet(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "a.xlsx",
        {
            "1일차": [["name", "email"], ["Kim", "k@example.com"]],
            "2일차": [["name", "email"], ["Lee", "l@example.com"]],
        },
    )
    assert read_table(path, sheet="2일차").frame["name"].tolist() == ["Lee"]
    first = read_table(path)
    assert first.frame["name"].tolist() == ["Kim"]
    assert first.warnings == ["The workbook has 2 sheets; only the first non-empty one, '1일차', was read."]


def test_missing_sheet_lists_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "a.xlsx", {"A": [["name", "email"]], "B": []})
    with pytest.raises(IntakeError) as info:
        read_table(path, sheet="C")
    assert info.value.detail == {"code": "sheet_not_found", "sheets": ["A", "B"]}
    assert str(info.value) == "The workbook has no sheet named 'C'. Its sheets are: 'A', 'B'"


def test_empty_workbook(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "a.xlsx", {"A": [], "B": [[None, "  "]]})
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.detail == {"code": "empty"}
    assert str(info.value) == "The workbook contains no data (every sheet is empty)."


def test_named_empty_sheet(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "a.xlsx", {"A": [["name", "email"], ["Kim", "k@example.com"]], "B": []})
    with pytest.raises(IntakeError) as info:
        read_table(path, sheet="B")
    assert info.value.detail == {"code": "empty", "sheet": "B"}
    assert str(info.value) == "The sheet 'B' is empty."


@pytest.mark.parametrize("writer", ["xls", "xlsx"])
def test_header_only_workbook_is_rejected(tmp_path: Path, writer: str) -> None:
    rows: list[list[object]] = [["참가자 명단"], [], ["이름", "이메일"], [None, "  "]]
    path = write_xls(tmp_path / "a.xls", rows) if writer == "xls" else write_xlsx(tmp_path / "a.xlsx", {"S": rows})
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.detail == {"code": "no_data_rows", "header_row": 3, "empty_rows": 1}
    assert str(info.value) == "The file has a header row but no data rows."


def test_openpyxl_fallback_when_calamine_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import python_calamine

    def broken(_source: object) -> None:
        raise python_calamine.CalamineError("unsupported feature")

    path = write_xlsx(tmp_path / "a.xlsx", {"참가자": TITLED})
    expected = read_table(path)
    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", broken)
    fallback = read_table(path)
    assert fallback.frame.to_dict(orient="records") == expected.frame.to_dict(orient="records")
    assert fallback.header_row == expected.header_row == 3


def test_broken_xls_is_a_clear_error(tmp_path: Path) -> None:
    damaged = bytearray(write_xls(tmp_path / "good.xls", [["name", "email"], ["Kim", "k@example.com"]]).read_bytes())
    damaged[512:1024] = b"\xff" * 512  # the first sector after the header: the workbook stream starts there
    path = tmp_path / "bad.xls"
    path.write_bytes(bytes(damaged))
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.detail["code"] == "corrupt"
    assert str(info.value).startswith("This Excel (XLS) file could not be read (")
    assert str(info.value).endswith("Open it in Excel and save it as XLSX.")


def test_library_errors_do_not_carry_cell_text(tmp_path: Path) -> None:
    # A numeric cell holding text: both libraries fail, and openpyxl's message quotes the value.
    written = write_xlsx(tmp_path / "a.xlsx", {"S": [["name", "email", "n"], ["Kim", "k@example.com", 5]]})
    source = zipfile.ZipFile(written)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<v>5</v>", "<v>홍길동</v>".encode())
            target.writestr(name, data)
    path = tmp_path / "bad.xlsx"
    path.write_bytes(out.getvalue())
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.code == "corrupt"
    assert str(info.value).startswith("This Excel (XLSX) file could not be read (ValueError: ")
    assert "홍길동" not in str(info.value) + info.value.localized("ko") + repr(info.value.detail)


def test_xls_cut_inside_its_directory_is_a_clear_error_not_a_panic(tmp_path: Path) -> None:
    # Found by the intake fuzzer (faults/test_fuzz_intake.py): a compound-file header, a FAT
    # sector, and one byte of the directory sector. calamine panics indexing past the end, and
    # pyo3 raises the panic as PanicException, a BaseException that `except Exception` missed.
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE2 magic
        + bytes(16)
        + struct.pack("<HHHHH6x", 0x3E, 3, 0xFFFE, 9, 6)  # versions, byte order, 512-byte sectors, mini sectors
        + struct.pack("<IIIII", 0, 1, 1, 0, 4096)  # directory sectors, FAT sectors, first directory sector
        + struct.pack("<IIII", 0xFFFFFFFE, 0, 0xFFFFFFFE, 0)  # no mini FAT, no DIFAT sectors
        + struct.pack("<I", 0)  # the FAT is sector 0
        + b"\xff" * (4 * 108)
    )
    fat = struct.pack("<II", 0xFFFFFFFD, 0xFFFFFFFE) + b"\xff" * 504
    path = tmp_path / "cut.xls"
    path.write_bytes(header + fat + b"\x00")
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.code == "corrupt"
    assert str(info.value).startswith("This Excel (XLS) file could not be read (PanicException: ")
    assert info.value.localized("ko").startswith("이 Excel(XLS) 파일을 읽을 수 없습니다(")
