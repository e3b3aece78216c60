from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest

from event_pipeline.intake import read_table
from event_pipeline.schemas import Finding, read_findings, validate_participants, write_error_report
from event_pipeline.schemas.report import ReportFormatError, neutralise


def _read(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8 Korean
    return list(csv.reader(io.StringIO(raw[3:].decode("utf-8"), newline="")))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+82 10", "'+82 10"),
        ("-1+2", "'-1+2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("＝1+1", "'＝1+1"),
        ("홍길동", "홍길동"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise(value: str, written: str) -> None:
    assert neutralise(value) == written


NAME_EMPTY = Finding.of(2, "name", "error", "name_required")
EMAIL_EMPTY = Finding.of(2, "email", "error", "email_required")


def test_report_from_a_real_file(tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text(
        "이름,이메일,연락처,비고\r\n"
        "홍길동,hong@example.com,010-1234-5678,\r\n"
        "=cmd|' /C calc'!A0,bad@,+82 10 9999 0000,\"@SUM(1+1)\r\nsecond line\"\r\n"
        "합계,,,-3\r\n"
        "김철수,kim@example.com,12345,\r\n",
        encoding="utf-8",
    )
    table = read_table(source)
    outcome = validate_participants(table.frame)
    report = tmp_path / "errors.csv"
    written = write_error_report(report, [*outcome.errors, *outcome.warnings], table.frame)
    assert written == 3
    assert _read(report) == [
        ["row", "column", "severity", "reason", "reason_ko", "name", "email", "phone", "비고"],
        [
            "3",
            "email",
            "error",
            "not a valid email address: there is nothing after the @ sign.",
            "올바른 이메일 주소가 아닙니다: @ 뒤에 아무것도 없습니다.",
            "'=cmd|' /C calc'!A0",
            "bad@",
            "'+82 10 9999 0000",
            "'@SUM(1+1)\r\nsecond line",
        ],
        ["5", "email", "error", "email is empty.", "이메일이 비어 있습니다.", "합계", "", "", "'-3"],
        [
            "6",
            "phone",
            "warning",
            "phone number not recognised (default region KR); kept as given.",
            "전화번호 형식을 알 수 없어(기본 국가 KR) 입력된 그대로 저장했습니다.",
            "김철수",
            "kim@example.com",
            "12345",
            "",
        ],
    ]
    assert oct(report.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errors.csv", "list.csv"]
    # What the CLI, the UI and the organiser's mail read back is exactly what was written.
    assert read_findings(report) == [*outcome.errors, *outcome.warnings]


def test_rows_with_several_findings_repeat_and_extra_columns_are_spread(tmp_path: Path) -> None:
    original = pd.DataFrame({"source_row": [2], "name": [""], "email": [""], "extra": ['{"a": "1", "b": "2"}']})
    report = tmp_path / "r.csv"
    assert write_error_report(report, [NAME_EMPTY, EMAIL_EMPTY], original) == 2
    assert _read(report) == [
        ["row", "column", "severity", "reason", "reason_ko", "name", "email", "a", "b"],
        ["2", "name", "error", "name is empty.", "이름이 비어 있습니다.", "", "", "1", "2"],
        ["2", "email", "error", "email is empty.", "이메일이 비어 있습니다.", "", "", "1", "2"],
    ]


def test_header_row_finding_has_no_row_values_and_round_trips_formula_text(tmp_path: Path) -> None:
    original = pd.DataFrame({"source_row": [2], "name": ["Kim"], "email": ["k@example.com"]})
    header = Finding(1, "=extra", "warning", "-1 columns kept aside", "+열")
    report = tmp_path / "r.csv"
    write_error_report(report, [header], original)
    assert _read(report)[1] == ["1", "'=extra", "warning", "'-1 columns kept aside", "'+열", "", ""]
    assert read_findings(report) == [header]


def test_empty_report_has_header_only(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    assert write_error_report(report, [], pd.DataFrame({"source_row": [], "name": [], "email": []})) == 0
    assert _read(report) == [["row", "column", "severity", "reason", "reason_ko", "name", "email"]]
    assert read_findings(report) == []


def test_reading_something_else_is_an_error(tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("row,column,message\r\n2,email,email is empty.\r\n", encoding="utf-8-sig")
    with pytest.raises(ReportFormatError, match="not an error report"):
        read_findings(old)


def test_atomic_replace_keeps_old_report_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "r.csv"
    report.write_text("old", encoding="utf-8")

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_error_report(report, [EMAIL_EMPTY], pd.DataFrame({"source_row": [2]}))
    assert report.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]
