from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pytest

from event_pipeline.intake import read_table
from event_pipeline.schemas import RowError, validate_participants, write_error_report
from event_pipeline.schemas.report import neutralise


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


def test_report_from_a_real_file(tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text(
        "이름,이메일,연락처,비고\r\n"
        "홍길동,hong@example.com,010-1234-5678,\r\n"
        "=cmd|' /C calc'!A0,bad@,+82 10 9999 0000,\"@SUM(1+1)\r\nsecond line\"\r\n"
        "합계,,,-3\r\n",
        encoding="utf-8",
    )
    table = read_table(source)
    outcome = validate_participants(table.frame)
    report = tmp_path / "errors.csv"
    written = write_error_report(report, outcome.errors, table.frame)
    assert written == 2
    assert _read(report) == [
        ["row", "column", "message", "name", "email", "phone", "비고"],
        [
            "3",
            "email",
            "not a valid email address: There must be something after the @-sign.",
            "'=cmd|' /C calc'!A0",
            "bad@",
            "'+82 10 9999 0000",
            "'@SUM(1+1)\r\nsecond line",
        ],
        ["5", "email", "email is empty.", "합계", "", "", "'-3"],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errors.csv", "list.csv"]


def test_rows_with_several_errors_repeat_and_warnings_can_be_included(tmp_path: Path) -> None:
    original = pd.DataFrame({"source_row": [2], "name": [""], "email": [""], "extra": ['{"a": "1", "b": "2"}']})
    errors = [RowError(2, "name", "", "name is empty."), RowError(2, "email", "", "email is empty.")]
    report = tmp_path / "r.csv"
    assert write_error_report(report, errors, original) == 2
    assert _read(report) == [
        ["row", "column", "message", "name", "email", "a", "b"],
        ["2", "name", "name is empty.", "", "", "1", "2"],
        ["2", "email", "email is empty.", "", "", "1", "2"],
    ]


def test_empty_report_has_header_only(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    assert write_error_report(report, [], pd.DataFrame({"source_row": [], "name": [], "email": []})) == 0
    assert _read(report) == [["row", "column", "message", "name", "email"]]


def test_atomic_replace_keeps_old_report_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "r.csv"
    report.write_text("old", encoding="utf-8")

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_error_report(report, [RowError(2, "email", "", "email is empty.")], pd.DataFrame({"source_row": [2]}))
    assert report.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]
