from __future__ import annotations

import json
from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, normalise_header, read_table
from event_pipeline.intake.headers import canonical_for, column_label

from .corpus import write_csv


@pytest.mark.parametrize(
    ("header", "canonical"),
    [
        ("Name", "name"),
        (" FULL NAME ", "name"),
        ("Full_Name", "name"),
        ("성명", "name"),
        ("참가자명", "name"),
        ("참가자 명", "name"),
        ("이름*", "name"),
        ("Name (required)", "name"),
        ("E-mail", "email"),
        ("e_mail", "email"),
        ("ＥＭＡＩＬ", "email"),  # full-width letters (NFKC)
        ("Email Address", "email"),
        ("메일", "email"),
        ("전자우편", "email"),
        ("이메일 주소", "email"),
        ("Tel.", "phone"),
        ("Mobile", "phone"),
        ("휴대폰", "phone"),
        ("연락처[필수]", "phone"),
        ("핸드폰", "phone"),
        ("Dept", "department"),
        ("소속", "department"),
        ("Job-Title", "position"),
        ("직책", "position"),
        ("직위", "position"),
        ("Title", "position"),
        ("비고", None),
        ("", None),
        ("name2", None),
    ],
)
def test_aliases(header: str, canonical: str | None) -> None:
    assert canonical_for(header) == canonical


def test_normalise_header() -> None:
    assert normalise_header("  Ｅ－Ｍａｉｌ_Address ") == "emailaddress"


def test_column_labels() -> None:
    assert [column_label(i) for i in (0, 25, 26, 27, 701, 702)] == ["A", "Z", "AA", "AB", "ZZ", "AAA"]


def test_title_and_blank_rows_above_header(tmp_path: Path) -> None:
    rows = [
        ["2024 개발자 컨퍼런스 참가자 명단", "", ""],
        ["작성일: 2024-03-01", "", ""],
        ["", "", ""],
        ["No.", "성명", "이메일"],
        ["1", "홍길동", "hong@example.com"],
    ]
    table = read_table(write_csv(tmp_path / "a.csv", rows))
    assert table.header_row == 4
    assert table.frame["source_row"].tolist() == [5]
    assert table.extra_columns == ["No."]
    assert "2 row(s) above the header (row 4) were ignored as titles or notes." in table.warnings


def test_header_needs_two_known_columns_including_name_or_email(tmp_path: Path) -> None:
    # Row 1 has phone + department (two known, but neither name nor email): not the header.
    rows = [["연락처", "부서", ""], ["이름", "이메일", "연락처"], ["Kim", "k@example.com", "010"]]
    assert read_table(write_csv(tmp_path / "a.csv", rows)).header_row == 2


def test_no_header_found(tmp_path: Path) -> None:
    rows = [["참가자 목록"], ["Kim", "k@example.com"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "no_header", "headers": ["참가자 목록"]}
    assert str(info.value) == (
        "No header row found in the first 20 rows. A header row needs at least two known column names, "
        "one of them a name or email column (e.g. 이름/Name and 이메일/Email). "
        "The first non-empty row has: '참가자 목록'."
    )


def test_header_below_row_20_is_not_found(tmp_path: Path) -> None:
    rows = [[f"note {i}", ""] for i in range(20)] + [["name", "email"], ["Kim", "k@example.com"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail["code"] == "no_header"


def test_missing_required_column_lists_headers(tmp_path: Path) -> None:
    rows = [["이름", "연락처", "비고"], ["Kim", "010", ""]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {
        "code": "missing_columns",
        "missing": ["email"],
        "headers": ["이름", "연락처", "비고"],
        "header_row": 1,
    }
    assert str(info.value) == (
        "Required column(s) missing: email. The header row (row 1) has: '이름', '연락처', '비고'. "
        "Expected headers such as email: email, e-mail, email address, e-mail address."
    )


def test_duplicate_canonical_column_is_rejected(tmp_path: Path) -> None:
    rows = [["이름", "이메일", "Email"], ["Kim", "k@example.com", "k2@example.com"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "duplicate_columns", "header_row": 1, "fields": ["email"]}
    assert str(info.value) == (
        "The header row (row 1) has more than one column for the same field "
        "(email: columns B '이메일', C 'Email'). Keep one column per field and upload again."
    )


def test_duplicate_unknown_headers_are_kept_with_warning(tmp_path: Path) -> None:
    rows = [["name", "email", "비고", "비고"], ["Kim", "k@example.com", "a", "b"]]
    table = read_table(write_csv(tmp_path / "a.csv", rows))
    assert table.extra_columns == ["비고", "비고 (2)"]
    assert json.loads(table.frame["extra"][0]) == {"비고": "a", "비고 (2)": "b"}
    assert table.warnings == ["The header '비고' appears more than once (row 1); column D is kept as '비고 (2)'."]


def test_columns_map_keeps_header_as_written(tmp_path: Path) -> None:
    rows = [[" Full Name ", "E-Mail", "Tel."], ["Kim", "k@example.com", "010"]]
    table = read_table(write_csv(tmp_path / "a.csv", rows))
    assert table.columns == {"name": " Full Name ", "email": "E-Mail", "phone": "Tel."}
    assert list(table.frame.columns) == ["source_row", "name", "email", "phone", "extra"]


def test_header_only_file_is_accepted_with_zero_rows(tmp_path: Path) -> None:
    table = read_table(write_csv(tmp_path / "a.csv", [["이름", "이메일"], ["", ""]]))
    assert table.rows == 0
    assert table.empty_rows == 1
    assert list(table.frame.columns) == ["source_row", "name", "email", "extra"]
    assert table.warnings == ["The file has a header row but no data rows."]


def test_extra_json_escapes(tmp_path: Path) -> None:
    rows = [["name", "email", 'say "hi"', "경로\\"], ["Kim", "k@example.com", 'a"b', "c:\\x\n"]]
    table = read_table(write_csv(tmp_path / "a.csv", rows))
    assert json.loads(table.frame["extra"][0]) == {'say "hi"': 'a"b', "경로\\": "c:\\x\n"}
    assert table.frame["extra"][0] == json.dumps({'say "hi"': 'a"b', "경로\\": "c:\\x\n"}, ensure_ascii=False)


def test_no_header_message_keeps_personal_data_out(tmp_path: Path) -> None:
    rows = [["홍길동", "hong@example.com", "010-1234-5678", "개발팀"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "no_header", "headers": ["홍길동", "…", "…", "개발팀"]}
    assert str(info.value).endswith("The first non-empty row has: '홍길동', '…', '…', '개발팀'.")


def test_intake_error_pickles_with_detail() -> None:
    import pickle

    error = IntakeError("The file is empty.", {"code": "empty"})
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object, round trip only
    assert (str(copy), copy.reason, copy.detail, copy.code) == (
        "The file is empty.",
        "The file is empty.",
        {"code": "empty"},
        "empty",
    )
