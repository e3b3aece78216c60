from __future__ import annotations

import pandas as pd

from event_pipeline.schemas import dedupe_in_file, duplicate_findings, validate_participants


def test_first_occurrence_kept_by_normalised_email() -> None:
    raw = pd.DataFrame(
        {
            "source_row": [2, 3, 4, 5, 6],
            "name": ["Kim", "Kim Again", "Lee", "KIM third", "Park"],
            "email": ["kim@example.com", " KIM@example.com", "lee@example.com", "Kim@Example.Com", "park@example.com"],
        }
    ).astype({"name": "str", "email": "str"})
    outcome = dedupe_in_file(validate_participants(raw).valid)
    assert outcome.kept["source_row"].tolist() == [2, 4, 6]
    assert outcome.kept["name"].tolist() == ["Kim", "Lee", "Park"]
    assert outcome.duplicates.to_dict(orient="records") == [
        {"source_row": 3, "email": "kim@example.com", "first_row": 2, "other_name": True},
        {"source_row": 5, "email": "kim@example.com", "first_row": 2, "other_name": True},
    ]


def test_input_order_does_not_matter() -> None:
    valid = pd.DataFrame({"source_row": [9, 3, 5], "email": ["a@x.com", "a@x.com", "b@x.com"], "name": ["c", "a", "b"]})
    outcome = dedupe_in_file(valid)
    assert outcome.kept[["source_row", "name"]].values.tolist() == [[3, "a"], [5, "b"]]
    assert outcome.duplicates.to_dict(orient="records") == [
        {"source_row": 9, "email": "a@x.com", "first_row": 3, "other_name": True}
    ]


def test_no_duplicates() -> None:
    valid = pd.DataFrame({"source_row": [2], "email": ["a@x.com"]})
    outcome = dedupe_in_file(valid)
    assert len(outcome.kept) == 1
    assert outcome.duplicates.empty
    assert list(outcome.duplicates.columns) == ["source_row", "email", "first_row", "other_name"]
    assert duplicate_findings(outcome.duplicates) == []


def test_each_dropped_row_is_an_error_naming_the_row_it_repeats() -> None:
    valid = pd.DataFrame(
        {"source_row": [2, 5, 7], "email": ["a@x.com", "a@x.com", "a@x.com"], "name": ["Kim", "kim", "Lee"]}
    )
    findings = duplicate_findings(dedupe_in_file(valid).duplicates)
    assert [(f.row, f.column, f.severity) for f in findings] == [(5, "email", "error"), (7, "email", "error")]
    assert findings[0].reason == "repeats row 2 (the same email); only row 2 was loaded."
    assert findings[0].reason_ko == "2행과 이메일이 같은 중복 행입니다. 2행만 등록되었습니다."
    # Another name under the same address: said, without quoting either name.
    assert findings[1].reason.startswith("repeats row 2 (the same email under another name)")
    assert "Lee" not in findings[1].reason and "Kim" not in findings[1].reason
