"""From a file on disk to the numbers the import report adds up (DESIGN.md invariant, our part)."""

from __future__ import annotations

from pathlib import Path

from event_pipeline.intake import read_table
from event_pipeline.schemas import (
    dedupe_in_file,
    duplicate_findings,
    read_findings,
    validate_participants,
    write_error_report,
)


def test_counts_add_up_for_a_korean_excel_style_csv(tmp_path: Path) -> None:
    text = (
        "2024 개발자 행사 참가자 명단,,,,\r\n"  # 1 title (Excel pads it with delimiters)
        ",,,,\r\n"  # 2 blank
        "성명,이메일,휴대폰,소속,비고\r\n"  # 3 header
        "홍길동,Hong@Example.com,010-1234-5678,개발팀,\r\n"  # 4 ok
        "김영희,kim@example.com,1012345678,영업팀,\r\n"  # 5 ok (phone lost its 0)
        "홍길동,hong@example.com ,010-1234-5678,개발팀,중복\r\n"  # 6 duplicate of 4
        "이순신,lee@,010-0000,인사팀,\r\n"  # 7 invalid email; phone warning suppressed on a rejected row
        ",,,,\r\n"  # 8 empty
        '"박\r\n지성",park@example.com,12345,"R&D, 플랫폼",\r\n'  # 9-10 ok, phone warning
        "합계,,,,4명\r\n"  # 11 footer: invalid
    )
    path = tmp_path / "명단.csv"
    path.write_bytes(text.encode("cp949"))

    table = read_table(path)
    assert (table.encoding, table.delimiter, table.header_row) == ("cp949", ",", 3)
    assert (table.rows, table.empty_rows) == (6, 1)
    assert table.frame["source_row"].tolist() == [4, 5, 6, 7, 9, 11]

    outcome = validate_participants(table.frame)
    assert outcome.valid["source_row"].tolist() == [4, 5, 6, 9]
    assert outcome.valid["phone"].tolist() == ["+821012345678", "+821012345678", "+821012345678", "12345"]
    assert outcome.valid["name"].tolist() == ["홍길동", "김영희", "홍길동", "박 지성"]
    assert [(f.row, f.column, f.severity, f.reason) for f in outcome.errors] == [
        (7, "email", "error", "not a valid email address: there is nothing after the @ sign."),
        (11, "email", "error", "email is empty."),
    ]
    assert [(f.row, f.column, f.severity, f.reason) for f in outcome.warnings] == [
        (9, "phone", "warning", "phone number not recognised (default region KR); kept as given.")
    ]

    dedupe = dedupe_in_file(outcome.valid)
    assert dedupe.duplicates.to_dict(orient="records") == [
        {"source_row": 6, "email": "hong@example.com", "first_row": 4, "other_name": False}
    ]
    assert table.rows == len(dedupe.kept) + len(dedupe.duplicates) + outcome.invalid_rows == 3 + 1 + 2

    report = tmp_path / "reports" / "errors.csv"
    findings = [*outcome.errors, *outcome.warnings, *duplicate_findings(dedupe.duplicates)]
    assert write_error_report(report, findings, table.frame) == 4
    lines = report.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "row,column,severity,reason,reason_ko,name,email,phone,department,비고"
    assert lines[2] == "11,email,error,email is empty.,이메일이 비어 있습니다.,합계,,,,4명"
    assert lines[-1].startswith("6,email,error,repeats row 4 (the same email); only row 4 was loaded.,")
    # Errors are the rows not loaded: the invalid ones and the duplicate, never the warning.
    assert {f.row for f in read_findings(report) if f.severity == "error"} == {6, 7, 11}
