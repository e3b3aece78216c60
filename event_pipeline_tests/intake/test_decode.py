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
        "The file says it is UTF-8 (with BOM) text but it cannot be decoded: invalid bytes at byte offset 14. "
        "Please save it again as 'CSV UTF-8'."
    )


def test_latin1_falls_back_to_detector_with_warning(tmp_path: Path) -> None:
    rows = [["name", "email"]] + [[f"José Müller Ñuñez {i}", f"j{i}@example.com"] for i in range(30)]
    path = write_csv(tmp_path / "a.csv", rows, encoding="latin-1")
    table = read_table(path)
    # Single-byte Latin encodings are indistinguishable in general; what matters is that the
    # guess is reported, warned about, and the text decoded with exactly that guess.
    assert table.encoding is not None
    assert table.encoding not in ("utf-8", "cp949")
    assert table.frame["name"][0] == "José Müller Ñuñez 0".encode("latin-1").decode(table.encoding)
    assert table.warnings[0].startswith("The file is neither UTF-8 nor cp949; its encoding was guessed as ")


def test_undecodable_reports_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the detector to give up so the final message is exercised deterministically.
    class NoGuess:
        def best(self) -> None:
            return None

    monkeypatch.setattr("charset_normalizer.from_bytes", lambda _data: NoGuess())
    with pytest.raises(IntakeError) as info:
        decode_text(b"name,email\n\xb0\xa1\x80")  # B0A1 is 가 in cp949; 0x80 fits neither
    assert info.value.detail == {"code": "undecodable", "offset": 13, "utf8_offset": 11, "cp949_offset": 13}
    assert str(info.value) == (
        "The text in this file cannot be decoded as UTF-8 or Korean (cp949): invalid bytes at byte offset "
        "11 (UTF-8) / 13 (cp949). Please save it again as 'CSV UTF-8'."
    )
