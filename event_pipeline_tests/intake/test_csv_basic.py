from __future__ import annotations

from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table


def test_cp949_with_title_row_and_aliases(tmp_path: Path) -> None:
    path = tmp_path / "명단.csv"
    text = "2024 행사 참가자 명단\r\n\r\n성명,E-mail,휴대폰,소속\r\n홍길동,hong@example.com,010-1234-5678,개발팀\r\n"
    path.write_bytes(text.encode("cp949"))
    table = read_table(path)
    assert table.format == "csv"
    assert table.encoding == "cp949"
    assert table.delimiter == ","
    assert table.header_row == 3
    assert table.columns == {"name": "성명", "email": "E-mail", "phone": "휴대폰", "department": "소속"}
    assert table.frame.to_dict(orient="records") == [
        {
            "source_row": 4,
            "name": "홍길동",
            "email": "hong@example.com",
            "phone": "010-1234-5678",
            "department": "개발팀",
            "extra": "{}",
        }
    ]


def test_missing_email_column_lists_headers(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("name,phone\nKim,010\n", encoding="utf-8")
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.detail["code"] == "missing_columns"
    assert "'name', 'phone'" in str(info.value)
