from __future__ import annotations

import pandas as pd

from event_pipeline.schemas import Finding, dedupe_in_file, validate_participants


def test_validate_and_dedupe() -> None:
    frame = pd.DataFrame(
        {
            "source_row": [2, 3, 4, 5],
            "name": ["\u00a0김\u3000철수 ", "Lee", "합계", "Park"],
            "email": [" Kim@Example.COM", "kim@example.com", "", "park@"],
            "phone": ["010-1234-5678", "", "", "1012345678"],
            "extra": ["{}", "{}", "{}", "{}"],
        }
    )
    outcome = validate_participants(frame)
    assert outcome.valid["source_row"].tolist() == [2, 3]
    assert outcome.valid["name"].tolist() == ["김 철수", "Lee"]
    assert outcome.valid["email"].tolist() == ["kim@example.com", "kim@example.com"]
    assert outcome.valid["phone"].tolist() == ["+821012345678", ""]
    assert outcome.invalid_rows == 2
    assert outcome.errors[0] == Finding(4, "email", "error", "email is empty.", "이메일이 비어 있습니다.")
    assert outcome.errors[1].row == 5
    dedupe = dedupe_in_file(outcome.valid)
    assert dedupe.kept["source_row"].tolist() == [2]
    assert dedupe.duplicates.to_dict(orient="records") == [
        {"source_row": 3, "email": "kim@example.com", "first_row": 2, "other_name": True}
    ]
