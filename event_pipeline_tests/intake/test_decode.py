from __future__ import annotations

from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table
from event_pipeline.intake.decode import decode_text

from .corpus import write_csv

KOREAN = [
    ["이름", "이메일", "부서"],
    ["홍길동", "hong@example.com", "개발팀"],
    ["똠방각하", "ddom@example.com", "영업"],
]


@pytest.mark.parametrize(
    ("encoding", "reported"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        # 똠 exists in cp949 but not in EUC-KR: the reason cp949 (never euc_kr) is tried.
        ("cp949", "cp949"),
        ("utf-16", "utf-16"),
        ("utf-16-le", "utf-16-le"),
        ("utf-16-be", "utf-16-be"),
    ],
)
def test_korean_encodings(tmp_path: Path, encoding: str, reported: str) -> None:
    path = write_csv(tmp_path / f"{encoding}.csv", KOREAN, encoding=encoding)
    table = read_table(path)
    assert table.encoding == reported
    assert table.frame["name"].tolist() == ["홍길동", "똠방각하"]
    assert table.frame["department"].tolist() == ["개발팀", "영업"]
    assert table.columns == {"name": "이름", "email": "이메일", "department": "부서"}
    assert table.warnings == []


def test_utf16_le_and_be_boms() -> None:
    text = "이름,이메일\r\n김,k@example.com\r\n"
    assert decode_text(b"\xff\xfe" + text.encode("utf-16-le")).text == text
    assert decode_text(b"\xfe\xff" + text.encode("utf-16-be")).text == text


def test_bom_is_not_part_of_first_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [["name", "email"], ["Kim", "k@example.com"]], encoding="utf-8-sig")
    assert read_table(path).columns == {"name": "name", "email": "email"}


def test_broken_utf8_after_bom_reports_offset(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfname,email\n\xed\xa0\x80,x@example.com\n")
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.detail == {"code": "undecodable", "encoding": "UTF-8 (with BOM)", "offset": 14}
    assert str(info.value) == (
        "The file says it is UTF-8 (with BOM) text but it cannot be decoded: the first invalid byte is at "
        "byte offset 14: [ed] (the invalid byte in brackets). "
        "Save it in Excel as 'CSV UTF-8' or as an Excel workbook (XLSX) and upload it again."
    )


def test_broken_utf16_after_bom_reports_offset_in_the_file() -> None:
    data = b"\xff\xfe" + "name,email\n".encode("utf-16-le") + b"\x00\xdc" + "x".encode("utf-16-le")
    with pytest.raises(IntakeError) as info:
        decode_text(data)
    # The offset counts from the start of the file, BOM included: 2 + 11 code units * 2 bytes.
    assert info.value.detail == {"code": "undecodable", "encoding": "UTF-16", "offset": 24}


def _cp949_list_with_stray_byte() -> tuple[bytes, int]:
    rows = ["Name,Email,Department"] + [f"{name},user{i}@example.com,개발팀" for i, name in enumerate(NAMES)]
    good = ("\r\n".join(rows) + "\r\n").encode("cp949")
    at = good.index("김민수".encode("cp949"))  # at a line start, before a name
    return good[:at] + b"\x80" + good[at:], at


NAMES = ["홍길동", "이영희", "박철수", "최지우", "김민수", "정하늘", "강다은", "윤서준"] * 4


def test_cp949_with_one_stray_byte_is_refused_not_guessed(tmp_path: Path) -> None:
    # Korean Excel CSV (cp949), English headers, one stray 0x80 (a Windows-1252 euro sign pasted
    # in). A detector once accepted this as cp1257 and the re-import stored mojibake names.
    data, at = _cp949_list_with_stray_byte()
    path = tmp_path / "명단.csv"
    path.write_bytes(data)
    with pytest.raises(IntakeError) as info:
        read_table(path)
    error = info.value
    assert error.code == "undecodable"
    assert error.detail["encoding"] == "cp949"
    assert error.detail["offset"] == at
    assert error.detail["cp949_offset"] == at
    utf8_offset = error.detail["utf8_offset"]
    assert isinstance(utf8_offset, int) and utf8_offset < data.index(b"user0")  # UTF-8 fails on the first name
    context = "[80]"  # its neighbours would be a participant's name: never in a reason
    assert str(error) == (
        "The text of this file is neither UTF-8 nor Korean (cp949), so it cannot be read safely. "
        f"The first invalid byte (reading it as cp949) is at byte offset {at}: {context} "
        "(the invalid byte in brackets). "
        "Save it in Excel as 'CSV UTF-8' or as an Excel workbook (XLSX) and upload it again."
    )
    assert error.localized("ko") == (
        "이 파일의 텍스트는 UTF-8도 한국어(cp949)도 아니어서 안전하게 읽을 수 없습니다. "
        f"cp949 기준으로 첫 잘못된 바이트는 바이트 위치 {at}에 있습니다: {context} (대괄호 안이 잘못된 바이트). "
        "Excel에서 'CSV UTF-8' 또는 Excel 통합 문서(XLSX)로 저장해 다시 올려 주세요."
    )


def test_utf8_with_one_stray_byte_reports_the_utf8_offset() -> None:
    text = "name,email\n" + "".join(f"{name},u{i}@example.com\n" for i, name in enumerate(NAMES))
    good = text.encode("utf-8")
    at = good.index("박".encode())
    data = good[:at] + b"\xff" + good[at:]
    with pytest.raises(IntakeError) as info:
        decode_text(data)
    assert (info.value.detail["encoding"], info.value.detail["offset"]) == ("UTF-8", at)


def test_single_byte_latin_text_is_refused(tmp_path: Path) -> None:
    # Latin-1 is not guessed any more: it is refused with where the first non-UTF-8 byte is.
    rows = [["name", "email"]] + [[f"José Müller {i}", f"j{i}@example.com"] for i in range(30)]
    path = write_csv(tmp_path / "a.csv", rows, encoding="latin-1")
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.code == "undecodable"
    assert info.value.detail["utf8_offset"] == path.read_bytes().index("é".encode("latin-1"))


def test_undecodable_reports_offsets() -> None:
    with pytest.raises(IntakeError) as info:
        decode_text(b"name,email\n\xb0\xa1\x80")  # B0A1 is 가 in cp949; 0x80 fits neither
    assert info.value.detail == {
        "code": "undecodable",
        "encoding": "cp949",
        "offset": 13,
        "utf8_offset": 11,
        "cp949_offset": 13,
    }
    assert "at byte offset 13: [80] (the invalid byte in brackets)." in str(info.value)


def test_no_statistical_detector_is_used() -> None:
    import event_pipeline.intake.decode as decode

    assert "charset_normalizer" not in vars(decode)
