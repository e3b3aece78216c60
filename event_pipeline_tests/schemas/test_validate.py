from __future__ import annotations

import json

import pandas as pd
import pandera.pandas as pa
import pytest

from event_pipeline.schemas import CleanParticipants, RowError, validate_participants


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
    assert outcome.errors == [
        RowError(3, "name", "", "name is empty."),
        RowError(3, "email", "", "email is empty."),
        RowError(4, "name", "K", "name must be 2 to 100 characters long (it has 1)."),
        RowError(
            4,
            "email",
            "kim@@example.com",
            "not a valid email address: The part after the @-sign contains invalid characters: '@'.",
        ),
        RowError(5, "name", "x" * 39 + "…", "name must be 2 to 100 characters long (it has 101)."),
        RowError(
            5,
            "email",
            "a..b@example.com",
            "not a valid email address: An email address cannot have two periods in a row.",
        ),
        RowError(9, "email", "", "email is empty."),
        RowError(
            10,
            "email",
            "Lee <lee@example.com>",
            "not a valid email address: "
            "A display name and angle brackets around the email address are not permitted here.",
        ),
    ]


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
        RowError(2, "phone", " 12345 ", "phone number not recognised (default region KR); kept as given.")
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
    assert outcome.errors == [
        RowError(2, "phone", "12345", "not a valid phone number (default region KR)."),
        RowError(3, "phone", "  ", "phone is empty (phone is required)."),
    ]


def test_phone_required_without_phone_column() -> None:
    outcome = validate_participants(
        _frame([{"source_row": 2, "name": "Kim", "email": "k@example.com"}]), phone_required=True
    )
    assert outcome.errors == [RowError(2, "phone", "", "phone is empty (phone is required).")]


def test_default_region() -> None:
    frame = _frame([{"source_row": 2, "name": "Smith", "email": "s@example.co.uk", "phone": "020 7946 0958"}])
    assert validate_participants(frame, default_region="GB").valid["phone"].tolist() == ["+442079460958"]
    assert validate_participants(frame).warnings[0].column == "phone"


def test_multiline_value_preview_is_one_line() -> None:
    frame = _frame([{"source_row": 7, "name": "Kim", "email": "k@exa\nmple.com"}])
    outcome = validate_participants(frame)
    assert outcome.errors[0].value_preview == "k@exa⏎mple.com"


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
