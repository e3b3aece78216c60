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
    rows = [[""], ["참가자 목록"], ["Kim", "k@example.com"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "no_header", "scanned_rows": 20, "first_row": 2}
    assert str(info.value) == (
        "No header row found in the first 20 rows (the first non-empty row is row 2). "
        "The list needs a header row with a name column (e.g. 이름 / Name) and an email column (e.g. 이메일 / Email)."
    )
    assert info.value.localized("ko") == (
        "처음 20행에서 머리글 행을 찾지 못했습니다(내용이 있는 첫 행은 2행입니다). "
        "명단에는 이름 열(예: 이름 / Name)과 이메일 열(예: 이메일 / Email)이 있는 머리글 행이 필요합니다."
    )


def test_only_delimiters_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(",,\n,,\n", encoding="utf-8")
    with pytest.raises(IntakeError) as info:
        read_table(path)
    assert info.value.detail == {"code": "empty"}


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
        "The email column is missing. The header row (row 1) has: '이름', '연락처', '비고'. "
        "Add a column headed one of: " + EMAIL_ALIASES + "."
    )


EMAIL_ALIASES = "이메일 / 메일 / 전자우편 / 이메일 주소 / Email / E-mail / Email address / E-mail address"


def test_a_row_with_one_known_required_header_is_the_header(tmp_path: Path) -> None:
    # Only 이름 is known, so this used to be "no header row found"; the organiser needs to hear that
    # the email column is missing.
    rows = [["ID", "이름", "가격"], ["1", "홍길동", "10000"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "missing_columns", "missing": ["email"], "headers": ["이름"], "header_row": 1}
    assert str(info.value) == (
        "The email column is missing. The header row (row 1) has: '이름' and 2 other column(s). "
        f"Add a column headed one of: {EMAIL_ALIASES}."
    )
    assert info.value.localized("ko") == (
        "이메일 열이 없습니다. 머리글 행(1행)에 있는 열: '이름' 외 2개. "
        f"다음 중 하나를 머리글로 하는 열을 추가해 주세요: {EMAIL_ALIASES}."
    )


def test_a_form_row_taken_as_header_is_not_quoted(tmp_path: Path) -> None:
    # A one-person form ("성명 | 홍길동") has a single known alias per row: the row becomes the
    # header, and only its recognised cell may be named.
    rows = [["성명", "홍길동"], ["연락처", "010-9876-5432"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.code == "missing_columns"
    for shown in (str(info.value), info.value.localized("ko"), repr(info.value.detail)):
        assert "홍길동" not in shown and "9876" not in shown


def test_missing_name_column_lists_name_aliases(tmp_path: Path) -> None:
    rows = [["title", "note"], ["메모", "x"], ["No.", "E-mail", "소속"], ["1", "k@example.com", "개발팀"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail["header_row"] == 3
    assert info.value.detail["missing"] == ["name"]
    assert str(info.value).startswith(
        "The name column is missing. The header row (row 3) has: 'No.', 'E-mail', '소속'."
    )
    assert str(info.value).endswith(
        "Add a column headed one of: 이름 / 성명 / 참가자명 / 참가자 이름 / Name / Full name / Participant name."
    )


def test_a_better_header_row_below_wins_over_a_weak_one(tmp_path: Path) -> None:
    # Row 1 has a name alias and a note; row 2 has name + email: row 2 is the header.
    rows = [["성명", "작성자 메모"], ["이름", "이메일"], ["Kim", "k@example.com"]]
    assert read_table(write_csv(tmp_path / "a.csv", rows)).header_row == 2


def test_duplicate_canonical_column_is_rejected(tmp_path: Path) -> None:
    rows = [["이름", "이메일", "Email"], ["Kim", "k@example.com", "k2@example.com"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "duplicate_columns", "header_row": 1, "fields": ["email"]}
    assert str(info.value) == (
        "The header row (row 1) has more than one column for the same field "
        "(email: columns B '이메일', C 'Email'). Keep one column per field and upload again."
    )
    assert info.value.localized("ko") == (
        "머리글 행(1행)에 같은 항목의 열이 여러 개 있습니다(이메일: B '이메일', C 'Email' 열). "
        "항목마다 열을 하나만 남기고 다시 올려 주세요."
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


@pytest.mark.parametrize("rows", [[["이름", "이메일"]], [["이름", "이메일"], ["", ""], [" ", "\u00a0"]]])
def test_header_only_file_is_rejected(tmp_path: Path, rows: list[list[str]]) -> None:
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "no_data_rows", "header_row": 1, "empty_rows": len(rows) - 1}
    assert str(info.value) == "The file has a header row but no data rows."
    assert info.value.localized("ko") == "파일에 머리글 행만 있고 데이터 행이 없습니다."


def test_extra_json_escapes(tmp_path: Path) -> None:
    rows = [["name", "email", 'say "hi"', "경로\\"], ["Kim", "k@example.com", 'a"b', "c:\\x\n"]]
    table = read_table(write_csv(tmp_path / "a.csv", rows))
    assert json.loads(table.frame["extra"][0]) == {'say "hi"': 'a"b', "경로\\": "c:\\x\n"}
    assert table.frame["extra"][0] == json.dumps({'say "hi"': 'a"b', "경로\\": "c:\\x\n"}, ensure_ascii=False)


def test_no_header_message_keeps_personal_data_out(tmp_path: Path) -> None:
    # A header-less file starts with a participant; reasons go to Dagster's event log.
    rows = [["홍길동", "hong@example.com", "010-1234-5678", "개발팀"], ["김영희", "kim@example.com", "", "영업"]]
    with pytest.raises(IntakeError) as info:
        read_table(write_csv(tmp_path / "a.csv", rows))
    assert info.value.detail == {"code": "no_header", "scanned_rows": 20, "first_row": 1}
    shown = str(info.value) + info.value.localized("ko") + repr(info.value.detail)
    for cell in ("홍길동", "hong", "1234", "개발팀", "김영희", "영업"):
        assert cell not in shown


def test_intake_error_pickles_with_detail() -> None:
    import pickle

    error = IntakeError.of("empty.sheet", {"sheet": "참가자"}, sheet="참가자")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object, round trip only
    assert (str(copy), copy.reason, copy.detail, copy.code, copy.localized("ko")) == (
        "The sheet '참가자' is empty.",
        "The sheet '참가자' is empty.",
        {"code": "empty", "sheet": "참가자"},
        "empty",
        "'참가자' 시트가 비어 있습니다.",
    )
