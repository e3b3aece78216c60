from __future__ import annotations

import json

import pandas as pd
import pandera.pandas as pa
import pytest

from event_pipeline.schemas import CleanParticipants, Finding, validate_participants


def _said(findings: list[Finding]) -> list[tuple[int, str, str, str]]:
    return [(f.row, f.column, f.severity, f.reason) for f in findings]


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if column != "source_row":
            frame[column] = frame[column].astype("str")
    return frame


def test_valid_output_shape_and_normalisation() -> None:
    frame = _frame(
        [
            {
                "source_row": 4,
                "name": " 홍\u00a0\u00a0길동 ",
                "email": " Hong@Example.COM ",
                "phone": "010-1234-5678",
                "department": " 개발팀 ",
                "position": "",
                "extra": '{"비고": "VIP"}',
            }
        ]
    )
    outcome = validate_participants(frame)
    assert outcome.errors == []
    assert outcome.warnings == []
    assert outcome.invalid_rows == 0
    assert outcome.valid.to_dict(orient="records") == [
        {
            "source_row": 4,
            "name": "홍 길동",
            "email": "hong@example.com",
            "phone": "+821012345678",
            "department": "개발팀",
            "position": "",
            "extra": '{"비고": "VIP"}',
        }
    ]
    CleanParticipants.validate(outcome.valid)


def test_optional_columns_may_be_absent() -> None:
    outcome = validate_participants(_frame([{"source_row": 2, "name": "Kim", "email": "k@example.com"}]))
    assert outcome.valid.to_dict(orient="records") == [
        {
            "source_row": 2,
            "name": "Kim",
            "email": "k@example.com",
            "phone": "",
            "department": "",
            "position": "",
            "extra": "{}",
        }
    ]


def test_row_errors_with_exact_messages() -> None:
    frame = _frame(
        [
            {"source_row": 2, "name": "Kim", "email": "kim@example.com", "phone": "", "extra": "{}"},
            {"source_row": 3, "name": "", "email": "", "phone": "", "extra": "{}"},
            {"source_row": 4, "name": "K", "email": "kim@@example.com", "phone": "", "extra": "{}"},
            {"source_row": 5, "name": "x" * 101, "email": "a..b@example.com", "phone": "", "extra": "{}"},
            {"source_row": 9, "name": "합계", "email": "", "phone": "", "extra": '{"인원": "3"}'},
            {"source_row": 10, "name": "Lee", "email": "Lee <lee@example.com>", "phone": "", "extra": "{}"},
        ]
    )
    outcome = validate_participants(frame)
    assert outcome.valid["source_row"].tolist() == [2]
    assert outcome.invalid_rows == 5
    assert _said(outcome.errors) == [
        (3, "name", "error", "name is empty."),
        (3, "email", "error", "email is empty."),
        (4, "name", "error", "name must be 2 to 100 characters long (it has 1)."),
        (
            4,
            "email",
            "error",
            "not a valid email address: it contains characters an address cannot have (spaces, a second @, "
            "brackets, ...).",
        ),
        (5, "name", "error", "name must be 2 to 100 characters long (it has 101)."),
        (
            5,
            "email",
            "error",
            "not a valid email address: a period or hyphen is misplaced (at the start or end, or two in a row).",
        ),
        (9, "email", "error", "email is empty."),
        (
            10,
            "email",
            "error",
            "not a valid email address: it has a name or angle brackets around the address; keep the address only.",
        ),
    ]
    # No reason quotes the cell it is about.
    for finding in outcome.errors:
        assert "kim@@" not in finding.reason and "a..b" not in finding.reason and "lee@" not in finding.reason


def test_phone_not_required_unparseable_is_a_warning_and_kept() -> None:
    frame = _frame(
        [
            {"source_row": 2, "name": "Kim", "email": "k@example.com", "phone": " 12345 "},
            {"source_row": 3, "name": "Lee", "email": "l@example.com", "phone": ""},
            {"source_row": 4, "name": "Park", "email": "p@example.com", "phone": "1012345678"},
        ]
    )
    outcome = validate_participants(frame)
    assert outcome.errors == []
    assert outcome.valid["phone"].tolist() == ["12345", "", "+821012345678"]
    assert outcome.warnings == [
        Finding(
            2,
            "phone",
            "warning",
            "phone number not recognised (default region KR); kept as given.",
            "전화번호 형식을 알 수 없어(기본 국가 KR) 입력된 그대로 저장했습니다.",
        )
    ]


def test_phone_required() -> None:
    frame = _frame(
        [
            {"source_row": 2, "name": "Kim", "email": "k@example.com", "phone": "12345"},
            {"source_row": 3, "name": "Lee", "email": "l@example.com", "phone": "  "},
            {"source_row": 4, "name": "Park", "email": "p@example.com", "phone": "+82 10 1234 5678"},
        ]
    )
    outcome = validate_participants(frame, phone_required=True)
    assert outcome.valid["source_row"].tolist() == [4]
    assert outcome.warnings == []
    assert _said(outcome.errors) == [
        (2, "phone", "error", "not a valid phone number (default region KR)."),
        (3, "phone", "error", "phone is empty (phone is required)."),
    ]


def test_phone_required_without_phone_column() -> None:
    outcome = validate_participants(
        _frame([{"source_row": 2, "name": "Kim", "email": "k@example.com"}]), phone_required=True
    )
    assert _said(outcome.errors) == [(2, "phone", "error", "phone is empty (phone is required).")]


def test_default_region() -> None:
    frame = _frame([{"source_row": 2, "name": "Smith", "email": "s@example.co.uk", "phone": "020 7946 0958"}])
    assert validate_participants(frame, default_region="GB").valid["phone"].tolist() == ["+442079460958"]
    assert validate_participants(frame).warnings[0].column == "phone"


def test_a_reason_is_one_line_and_never_quotes_the_cell() -> None:
    frame = _frame([{"source_row": 7, "name": "Kim", "email": "k@exa\nmple.com"}])
    outcome = validate_participants(frame)
    [error] = outcome.errors
    assert "\n" not in error.reason and "exa" not in error.reason and "exa" not in error.reason_ko


def test_raw_frame_without_email_column_is_a_programming_error() -> None:
    with pytest.raises(pa.errors.SchemaErrors):
        validate_participants(_frame([{"source_row": 2, "name": "Kim"}]))


def test_empty_frame() -> None:
    frame = pd.DataFrame(
        {
            "source_row": pd.Series([], dtype="int64"),
            "name": pd.Series([], dtype="str"),
            "email": pd.Series([], dtype="str"),
        }
    )
    outcome = validate_participants(frame)
    assert outcome.valid.empty
    assert list(outcome.valid.columns) == ["source_row", "name", "email", "phone", "department", "position", "extra"]
    assert (outcome.errors, outcome.invalid_rows, outcome.warnings) == ([], 0, [])


def test_counts_add_up_on_a_mixed_frame() -> None:
    rows = []
    for i in range(1000):
        email = f"user{i}@example.com" if i % 7 else f"broken{i}@"
        name = "" if i % 11 == 0 else f"참가자{i}"
        rows.append({"source_row": i + 2, "name": name, "email": email, "extra": json.dumps({"i": i})})
    outcome = validate_participants(_frame(rows))
    bad = {i for i in range(1000) if i % 7 == 0 or i % 11 == 0}
    assert outcome.invalid_rows == len(bad)
    assert len(outcome.valid) + outcome.invalid_rows == 1000
    assert len(outcome.errors) == sum((i % 7 == 0) + (i % 11 == 0) for i in range(1000))
    assert {e.row for e in outcome.errors} == {i + 2 for i in bad}


def test_nul_characters_are_dropped_before_they_reach_the_database() -> None:
    import pandas as pd

    from event_pipeline.schemas import validate_participants

    frame = pd.DataFrame(
        {
            "source_row": [2, 3],
            "name": ["Kim\x00 Minjun", "Lee Seoyeon"],
            "email": ["kim@example.com\x00", "lee@example.com"],
            "extra": ['{"memo": "a\x00b"}', "{}"],
        }
    )
    outcome = validate_participants(frame)
    assert outcome.invalid_rows == 0
    assert list(outcome.valid["name"]) == ["Kim Minjun", "Lee Seoyeon"]
    assert list(outcome.valid["email"]) == ["kim@example.com", "lee@example.com"]
    assert not outcome.valid.apply(lambda col: col.astype(str).str.contains("\x00", regex=False)).any().any()


def test_values_longer_than_their_column_are_row_errors_with_the_limit() -> None:
    """A 201-character department failed the whole load on PostgreSQL (VARCHAR(200))."""
    import sqlalchemy as sa

    from event_pipeline.schemas.rules import LENGTH_LIMITS
    from event_pipeline.store.tables import participants

    declared = {}
    for field in ("phone", "department", "position"):
        column_type = participants.c[field].type
        assert isinstance(column_type, sa.String)
        declared[field] = column_type.length
    assert declared == LENGTH_LIMITS == {"phone": 40, "department": 200, "position": 200}
    frame = _frame(
        [
            {"source_row": 2, "name": "Kim", "email": "k@example.com", "department": "가" * 201, "phone": ""},
            {"source_row": 3, "name": "Lee", "email": "l@example.com", "department": "가" * 200, "phone": ""},
            {"source_row": 4, "name": "Park", "email": "p@example.com", "department": "", "phone": "9" * 41},
        ]
    )
    outcome = validate_participants(frame)
    assert outcome.valid["source_row"].tolist() == [3]
    assert _said(outcome.errors) == [
        (2, "department", "error", "department is longer than 200 characters (it has 201). The row was not loaded."),
        (4, "phone", "error", "phone is longer than 40 characters (it has 41). The row was not loaded."),
    ]
    assert outcome.errors[0].reason_ko == "부서이(가) 200자를 넘습니다(현재 201자). 이 행은 등록되지 않았습니다."
    assert outcome.warnings == []  # the long phone's row is rejected, so no "kept as given" warning


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("kim＠example.com", "it has a full-width or special at sign instead of @."),
        ("@example.com", "there is nothing before the @ sign."),
        ("kim@example", "the part after the @ sign is not a domain such as example.com."),
        ("kim@example.invalid", "the part after the @ sign is a reserved name that cannot receive mail."),
        ("ki m@example.com", "it contains characters an address cannot have (spaces, a second @, brackets, ...)."),
        (".kim@example.com", "a period or hyphen is misplaced (at the start or end, or two in a row)."),
        ("k@" + ("a" * 60 + ".") * 5 + "com", "it is too long."),
    ],
)
def test_email_reasons_say_what_is_wrong_without_quoting_it(email: str, reason: str) -> None:
    [error] = validate_participants(_frame([{"source_row": 2, "name": "Kim", "email": email}])).errors
    assert error.reason == "not a valid email address: " + reason
    assert error.reason_ko.startswith("올바른 이메일 주소가 아닙니다: ")
