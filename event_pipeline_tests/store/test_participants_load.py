"""load_participants: what counts as new / updated / unchanged, what is stored, and that a load
is all or nothing. Each test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from event_pipeline.steps.rows import ValidatedRows, invariant_holds, load_upload
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.participants import (
    BLANK,
    DATA_FIELDS,
    LoadCounts,
    count_participants,
    load_participants,
)
from event_pipeline.store.tables import participants
from event_pipeline_tests.store.conftest import COLUMNS, frame, person


def stored(engine: Engine, event_id: int) -> dict[str, dict[str, object]]:
    cols = ["email_norm", *DATA_FIELDS, "created_upload_id", "updated_upload_id", "created_at", "updated_at"]
    with engine.connect() as conn:
        result = conn.execute(sa.select(*(participants.c[c] for c in cols)).where(participants.c.event_id == event_id))
        return {r.email_norm: dict(r._mapping) for r in result}


def test_first_load_is_all_new_and_stamped_with_the_upload(engine: Engine, event: Event) -> None:
    counts = load_participants(engine, event_id=event.id, upload_id="u1", rows=frame([person(i) for i in range(3)]))

    assert counts == LoadCounts(new=3, updated=0, unchanged=0)
    rows = stored(engine, event.id)
    assert set(rows) == {"p0@example.com", "p1@example.com", "p2@example.com"}
    assert {(r["created_upload_id"], r["updated_upload_id"]) for r in rows.values()} == {("u1", "u1")}
    assert rows["p1@example.com"]["name"] == "Person 1"


def test_the_same_rows_from_another_upload_are_unchanged_and_untouched(engine: Engine, event: Event) -> None:
    rows = frame([person(i, phone="+821012345678") for i in range(3)])
    load_participants(engine, event_id=event.id, upload_id="u1", rows=rows)
    before = stored(engine, event.id)

    counts = load_participants(engine, event_id=event.id, upload_id="u2", rows=rows)

    assert counts == LoadCounts(new=0, updated=0, unchanged=3)
    assert stored(engine, event.id) == before


def test_a_blank_incoming_value_never_erases_a_stored_one(engine: Engine, event: Event) -> None:
    full = person(1, "Kim", phone="+821011112222", department="Sales", position="Lead", extra='{"diet": "vegan"}')
    load_participants(engine, event_id=event.id, upload_id="u1", rows=frame([full]))
    first = stored(engine, event.id)["p1@example.com"]

    # A partial re-export: new name, everything else blank.
    counts = load_participants(engine, event_id=event.id, upload_id="u2", rows=frame([person(1, "Kim Minjun")]))

    assert counts == LoadCounts(new=0, updated=1, unchanged=0)
    row = stored(engine, event.id)["p1@example.com"]
    assert row["name"] == "Kim Minjun"
    assert (row["phone"], row["department"], row["position"]) == ("+821011112222", "Sales", "Lead")
    assert json.loads(str(row["extra"])) == {"diet": "vegan"}
    assert (row["created_upload_id"], row["updated_upload_id"]) == ("u1", "u2")
    assert isinstance(row["updated_at"], datetime) and isinstance(first["updated_at"], datetime)
    assert row["updated_at"] > first["updated_at"]
    assert row["created_at"] == first["created_at"]


def test_a_row_with_only_blanks_changes_nothing(engine: Engine, event: Event) -> None:
    load_participants(engine, event_id=event.id, upload_id="u1", rows=frame([person(1, "Lee", phone="+8210")]))
    blank_row = ("p1@example.com", "", "", "", "", "{}")

    counts = load_participants(engine, event_id=event.id, upload_id="u2", rows=frame([blank_row]))

    assert counts == LoadCounts(new=0, updated=0, unchanged=1)
    assert stored(engine, event.id)["p1@example.com"]["updated_upload_id"] == "u1"


def test_missing_values_and_missing_columns_count_as_blank(engine: Engine, event: Event) -> None:
    load_participants(engine, event_id=event.id, upload_id="u1", rows=frame([person(1, "Park", phone="+8210")]))
    rows = pd.DataFrame({"email": ["p1@example.com", "p2@example.com"], "name": [None, "New"]})

    counts = load_participants(engine, event_id=event.id, upload_id="u2", rows=rows)

    assert counts == LoadCounts(new=1, updated=0, unchanged=1)
    result = stored(engine, event.id)
    assert (result["p1@example.com"]["name"], result["p1@example.com"]["phone"]) == ("Park", "+8210")
    assert {f: result["p2@example.com"][f] for f in DATA_FIELDS} == {**BLANK, "name": "New"}


def test_a_retried_upload_reports_the_counts_of_its_first_attempt(engine: Engine, event: Event) -> None:
    load_participants(engine, event_id=event.id, upload_id="u1", rows=frame([person(1), person(2)]))
    second = frame([person(1, "Renamed"), person(2), person(3)])

    first_attempt = load_participants(engine, event_id=event.id, upload_id="u2", rows=second)
    retry = load_participants(engine, event_id=event.id, upload_id="u2", rows=second)

    assert first_attempt == LoadCounts(new=1, updated=1, unchanged=1)
    assert retry == first_attempt
    assert count_participants(engine.connect(), event.id) == 3


def test_the_same_email_in_two_events_is_two_participants(engine: Engine, event: Event) -> None:
    other = create_event(engine, slug="other-2026", name="Other", organiser_email="org@example.com")
    rows = frame([person(1)])

    a = load_participants(engine, event_id=event.id, upload_id="u1", rows=rows)
    b = load_participants(engine, event_id=other.id, upload_id="u9", rows=rows)

    assert a.new == b.new == 1
    with engine.connect() as conn:
        assert count_participants(conn, event.id) == count_participants(conn, other.id) == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (frame([person(1), person(1, "Again")]), "deduplicated"),
        (pd.DataFrame({"email": ["a@example.com", ""], "name": ["A", "B"]}), "must all have an email"),
        (pd.DataFrame({"email": ["a@example.com", None], "name": ["A", "B"]}), "must all have an email"),
        (pd.DataFrame({"name": ["A"]}), "'email' column"),
    ],
)
def test_unusable_input_is_refused_before_anything_is_written(
    engine: Engine, event: Event, rows: pd.DataFrame, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_participants(engine, event_id=event.id, upload_id="u1", rows=rows)
    with engine.connect() as conn:
        assert count_participants(conn, event.id) == 0


AWKWARD = [
    'comma, "quoted" and ""doubled""',
    "line\nbreak and\r\ncrlf and \r cr",
    "tab\there",
    "back\\slash \\N \\. \\\\",
    "\\.",
    "NULL",
    "  spaces kept  ",
    "한국어 이름 홍길동",
    "emoji 🎉 and combining é",
    "x" * 200,
]


def test_awkward_text_round_trips_exactly(engine: Engine, event: Event) -> None:
    rows = frame(
        [
            (f"a{i}@example.com", value, value[:40], value, value, json.dumps({"memo": value}, ensure_ascii=False))
            for i, value in enumerate(AWKWARD)
        ]
    )

    counts = load_participants(engine, event_id=event.id, upload_id="u1", rows=rows)
    again = load_participants(engine, event_id=event.id, upload_id="u2", rows=rows)

    assert counts.new == len(AWKWARD) and again.unchanged == len(AWKWARD)
    result = stored(engine, event.id)
    for i, value in enumerate(AWKWARD):
        row = result[f"a{i}@example.com"]
        assert (row["name"], row["phone"], row["department"], row["position"]) == (value, value[:40], value, value)
        assert json.loads(str(row["extra"])) == {"memo": value}


def test_a_large_load_then_an_overlapping_one(engine: Engine, event: Event) -> None:
    n = 30_000
    load = frame([person(i, department="A") for i in range(n)])
    counts = load_participants(engine, event_id=event.id, upload_id="u1", rows=load)
    assert counts == LoadCounts(new=n, updated=0, unchanged=0)

    # A third of the rows changed, a third the same, and as many new ones.
    second = frame(
        [person(i, department="B") for i in range(0, n // 3)]
        + [person(i, department="A") for i in range(n // 3, 2 * n // 3)]
        + [person(i) for i in range(n, n + n // 3)]
    )
    counts = load_participants(engine, event_id=event.id, upload_id="u2", rows=second)

    assert counts == LoadCounts(new=n // 3, updated=n // 3, unchanged=n // 3)
    with engine.connect() as conn:
        assert count_participants(conn, event.id) == n + n // 3
        grouped = conn.execute(
            sa.select(participants.c.department, sa.func.count())
            .where(participants.c.event_id == event.id)
            .group_by(participants.c.department)
        )
        by_dept = {str(dept): int(n) for dept, n in grouped}
    assert by_dept == {"A": n - n // 3, "B": n // 3, "": n // 3}


def test_the_invariant_holds_through_the_load_step(engine: Engine, event: Event) -> None:
    load_participants(engine, event_id=event.id, upload_id="earlier", rows=frame([person(1), person(2)]))
    upload, _ = uploads_store.register_upload(
        engine,
        upload_id="devcon-2026-0123456789abcdef",
        event_id=event.id,
        sha256="0123456789abcdef" * 4,
        original_name="list.csv",
        stored_path="/nowhere/original.csv",
        size_bytes=1,
    )
    # 8 rows in the file: 2 rejected by validation, 6 valid of which one repeats an email.
    valid = frame([person(1), person(2, "Changed"), person(3), person(4), person(5), person(3)])
    valid.insert(0, "source_row", [2, 3, 4, 5, 6, 9])
    uploads_store.update_upload(engine, upload.id, rows_in_file=8, rejected_rows=2)
    validated = ValidatedRows(
        valid=valid,
        rows_in_file=8,
        invalid_rows=2,
        empty_rows=0,
        error_count=2,
        warning_count=0,
        error_report_path=None,
    )

    summary = load_upload(engine, upload, validated)

    assert (summary.counts, summary.duplicates_in_file) == (LoadCounts(new=3, updated=1, unchanged=1), 1)
    with engine.connect() as conn:
        after = uploads_store.get_upload(conn, upload.id)
    assert after is not None
    ok, parts = invariant_holds(after)
    assert ok, parts


# -- the reference model ----------------------------------------------------------------------


@dataclass
class Model:
    """The load semantics in plain Python, one row at a time: what the SQL must agree with."""

    rows: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def load(self, records: list[tuple[str, ...]], upload_id: str) -> LoadCounts:
        new = updated = unchanged = 0
        for email, *values in records:
            incoming = dict(zip(DATA_FIELDS, values, strict=True))
            old = self.rows.get(email)
            if old is None:
                self.rows[email] = {**incoming, "created": upload_id, "updated": upload_id}
                new += 1
                continue
            merged = {f: incoming[f] if incoming[f] != BLANK[f] else old[f] for f in DATA_FIELDS}
            if any(merged[f] != old[f] for f in DATA_FIELDS):
                old.update(merged, updated=upload_id)
                updated += 1
            elif old["created"] == upload_id:
                new += 1
            elif old["updated"] == upload_id:
                updated += 1
            else:
                unchanged += 1
        return LoadCounts(new=new, updated=updated, unchanged=unchanged)


_emails = st.sampled_from([f"m{i}@example.com" for i in range(8)])
_values = {
    "name": st.sampled_from(["", "Kim", "Lee", "김민준"]),
    "phone": st.sampled_from(["", "+821011112222", "+821033334444"]),
    "department": st.sampled_from(["", "Sales", "개발팀"]),
    "position": st.sampled_from(["", "Lead"]),
    "extra": st.sampled_from(["{}", '{"diet": "vegan"}', '{"a": 1}']),
}
_row = st.tuples(_emails, *(_values[f] for f in DATA_FIELDS))
_upload = st.tuples(
    st.sampled_from(["u1", "u2", "u3"]),
    st.lists(_row, max_size=8, unique_by=lambda r: r[0]),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(uploads=st.lists(_upload, min_size=1, max_size=5))
def test_counts_and_stored_rows_agree_with_the_reference_model(
    engine: Engine, uploads: list[tuple[str, list[tuple[str, ...]]]]
) -> None:
    slug = f"prop-{abs(hash(repr(uploads))) % 10**12}"
    event = create_event(engine, slug=slug, name=slug, organiser_email="org@example.com", exist_ok=True)
    with engine.begin() as conn:
        conn.execute(sa.delete(participants).where(participants.c.event_id == event.id))
    model = Model()

    for upload_id, records in uploads:
        expected = model.load(records, upload_id)
        got = load_participants(engine, event_id=event.id, upload_id=upload_id, rows=frame(records))
        assert got == expected, (upload_id, records)
        assert got.total == len(records)

    actual = {
        email: {
            **{f: row[f] for f in DATA_FIELDS},
            "created": row["created_upload_id"],
            "updated": row["updated_upload_id"],
        }
        for email, row in stored(engine, event.id).items()
    }
    assert actual == model.rows


def test_columns_constant_matches_the_load_contract() -> None:
    # The frame helper and load_participants must speak the same column names.
    assert ("email", *DATA_FIELDS) == COLUMNS


def test_an_upload_with_no_valid_rows_loads_nothing(engine: Engine, event: Event) -> None:
    load_participants(engine, event_id=event.id, upload_id="u1", rows=frame([person(1)]))

    assert load_participants(engine, event_id=event.id, upload_id="u2", rows=pd.DataFrame()) == LoadCounts(0, 0, 0)
    assert load_participants(engine, event_id=event.id, upload_id="u3", rows=frame([])) == LoadCounts(0, 0, 0)
    with engine.connect() as conn:
        assert count_participants(conn, event.id) == 1
