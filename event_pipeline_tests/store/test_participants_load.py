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

from event_pipeline.store.events import Event, create_event
from event_pipeline.store.participants import (
    BLANK,
    DATA_FIELDS,
    MAX_STALE_ROWS,
    LoadCounts,
    StaleRow,
    count_participants,
    load_participants,
)
from event_pipeline.store.tables import participants
from event_pipeline_tests.store.conftest import COLUMNS, frame, person, register

SEQS = [f"{f}_seq" for f in DATA_FIELDS]


def load(engine: Engine, event: Event, tag: str, rows: pd.DataFrame) -> LoadCounts:
    """Load ``rows`` as the upload registered under ``tag`` (registered on first use, so tags
    are numbered in the order a test first names them, and a tag used again is a re-run)."""
    upload_id, seq = register(engine, event, tag)
    return load_participants(engine, event_id=event.id, upload_id=upload_id, upload_seq=seq, rows=rows)


def uid(engine: Engine, event: Event, tag: str) -> str:
    return register(engine, event, tag)[0]


def stored(engine: Engine, event_id: int) -> dict[str, dict[str, object]]:
    cols = ["email_norm", *DATA_FIELDS, *SEQS, "created_upload_id", "updated_upload_id", "created_at", "updated_at"]
    with engine.connect() as conn:
        result = conn.execute(sa.select(*(participants.c[c] for c in cols)).where(participants.c.event_id == event_id))
        return {r.email_norm: dict(r._mapping) for r in result}


def test_first_load_is_all_new_and_stamped_with_the_upload(engine: Engine, event: Event) -> None:
    counts = load(engine, event, "u1", frame([person(i) for i in range(3)]))

    assert counts == LoadCounts(new=3, updated=0, unchanged=0)
    rows = stored(engine, event.id)
    assert set(rows) == {"p0@example.com", "p1@example.com", "p2@example.com"}
    u1 = uid(engine, event, "u1")
    assert {(r["created_upload_id"], r["updated_upload_id"]) for r in rows.values()} == {(u1, u1)}
    assert {r[c] for r in rows.values() for c in SEQS} == {register(engine, event, "u1")[1]}
    assert rows["p1@example.com"]["name"] == "Person 1"


def test_the_same_rows_from_another_upload_are_unchanged_and_untouched(engine: Engine, event: Event) -> None:
    rows = frame([person(i, phone="+821012345678") for i in range(3)])
    load(engine, event, "u1", rows)
    before = stored(engine, event.id)

    counts = load(engine, event, "u2", rows)

    assert counts == LoadCounts(new=0, updated=0, unchanged=3)
    assert stored(engine, event.id) == before


def test_a_blank_incoming_value_never_erases_a_stored_one(engine: Engine, event: Event) -> None:
    full = person(1, "Kim", phone="+821011112222", department="Sales", position="Lead", extra='{"diet": "vegan"}')
    load(engine, event, "u1", frame([full]))
    first = stored(engine, event.id)["p1@example.com"]

    # A partial re-export: new name, everything else blank.
    counts = load(engine, event, "u2", frame([person(1, "Kim Minjun")]))

    assert counts == LoadCounts(new=0, updated=1, unchanged=0)
    row = stored(engine, event.id)["p1@example.com"]
    assert row["name"] == "Kim Minjun"
    assert (row["phone"], row["department"], row["position"]) == ("+821011112222", "Sales", "Lead")
    assert json.loads(str(row["extra"])) == {"diet": "vegan"}
    assert (row["created_upload_id"], row["updated_upload_id"]) == (uid(engine, event, "u1"), uid(engine, event, "u2"))
    assert isinstance(row["updated_at"], datetime) and isinstance(first["updated_at"], datetime)
    assert row["updated_at"] > first["updated_at"]
    assert row["created_at"] == first["created_at"]


def test_a_row_with_only_blanks_changes_nothing(engine: Engine, event: Event) -> None:
    load(engine, event, "u1", frame([person(1, "Lee", phone="+8210")]))
    blank_row = ("p1@example.com", "", "", "", "", "{}")

    counts = load(engine, event, "u2", frame([blank_row]))

    assert counts == LoadCounts(new=0, updated=0, unchanged=1)
    assert stored(engine, event.id)["p1@example.com"]["updated_upload_id"] == uid(engine, event, "u1")


def test_missing_values_and_missing_columns_count_as_blank(engine: Engine, event: Event) -> None:
    load(engine, event, "u1", frame([person(1, "Park", phone="+8210")]))
    rows = pd.DataFrame({"source_row": [2, 3], "email": ["p1@example.com", "p2@example.com"], "name": [None, "New"]})

    counts = load(engine, event, "u2", rows)

    assert counts == LoadCounts(new=1, updated=0, unchanged=1)
    result = stored(engine, event.id)
    assert (result["p1@example.com"]["name"], result["p1@example.com"]["phone"]) == ("Park", "+8210")
    assert {f: result["p2@example.com"][f] for f in DATA_FIELDS} == {**BLANK, "name": "New"}


def test_a_retried_upload_reports_the_counts_of_its_first_attempt(engine: Engine, event: Event) -> None:
    load(engine, event, "u1", frame([person(1), person(2)]))
    second = frame([person(1, "Renamed"), person(2), person(3)])

    first_attempt = load(engine, event, "u2", second)
    retry = load(engine, event, "u2", second)

    assert first_attempt == LoadCounts(new=1, updated=1, unchanged=1)
    assert retry == first_attempt
    assert count_participants(engine.connect(), event.id) == 3


def test_the_same_email_in_two_events_is_two_participants(engine: Engine, event: Event) -> None:
    other = create_event(engine, slug="other-2026", name="Other", organiser_email="org@example.com")
    rows = frame([person(1)])

    a = load(engine, event, "u1", rows)
    b = load(engine, other, "u9", rows)

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
        (pd.DataFrame({"email": ["a@example.com"], "name": ["A"]}), "'source_row' column"),
    ],
)
def test_unusable_input_is_refused_before_anything_is_written(
    engine: Engine, event: Event, rows: pd.DataFrame, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load(engine, event, "u1", rows)
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

    counts = load(engine, event, "u1", rows)
    again = load(engine, event, "u2", rows)

    assert counts.new == len(AWKWARD) and again.unchanged == len(AWKWARD)
    result = stored(engine, event.id)
    for i, value in enumerate(AWKWARD):
        row = result[f"a{i}@example.com"]
        assert (row["name"], row["phone"], row["department"], row["position"]) == (value, value[:40], value, value)
        assert json.loads(str(row["extra"])) == {"memo": value}


def test_a_large_load_then_an_overlapping_one(engine: Engine, event: Event) -> None:
    n = 30_000
    first = frame([person(i, department="A") for i in range(n)])
    counts = load(engine, event, "u1", first)
    assert counts == LoadCounts(new=n, updated=0, unchanged=0)

    # A third of the rows changed, a third the same, and as many new ones.
    second = frame(
        [person(i, department="B") for i in range(0, n // 3)]
        + [person(i, department="A") for i in range(n // 3, 2 * n // 3)]
        + [person(i) for i in range(n, n + n // 3)]
    )
    counts = load(engine, event, "u2", second)

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


# -- newer data wins ---------------------------------------------------------------------------


def test_a_newer_correction_survives_a_rerun_of_the_older_upload(engine: Engine, event: Event) -> None:
    kim = person(1, "Kim", phone="+821011112222", department="Sales")
    a_rows = frame([person(0), kim, person(2)])
    first_a = load(engine, event, "A", a_rows)  # registered first: the older upload
    # B corrects row 3's name (it is the organiser's row 3 there too) and says nothing of the rest.
    b_rows = frame([person(0), person(1, "Kim Minjun"), person(2)])
    first_b = load(engine, event, "B", b_rows)
    assert first_a == LoadCounts(new=3, updated=0, unchanged=0)
    assert first_b == LoadCounts(new=0, updated=1, unchanged=2)
    after_b = stored(engine, event.id)

    rerun_a = load(engine, event, "A", a_rows)  # what a re-run of A's load step does

    assert rerun_a == LoadCounts(
        new=2,  # rows A created and nobody changed still count as A's new rows
        updated=0,
        unchanged=1,
        stale=1,
        stale_rows=[StaleRow(row=3, field="name", newer_upload_id=uid(engine, event, "B"))],
    )
    assert stored(engine, event.id) == after_b  # byte for byte, timestamps included
    row = after_b["p1@example.com"]
    assert row["name"] == "Kim Minjun"
    assert (row["phone"], row["department"]) == ("+821011112222", "Sales")  # B left them blank: still A's
    assert (row["name_seq"], row["phone_seq"]) == (register(engine, event, "B")[1], register(engine, event, "A")[1])
    # And B, run again, reports what it reported the first time.
    assert load(engine, event, "B", b_rows) == first_b


def test_a_field_only_the_older_upload_set_stays_its_to_change(engine: Engine, event: Event) -> None:
    load(engine, event, "A", frame([person(1, "Kim", phone="+821011112222")]))
    load(engine, event, "B", frame([person(1, "Kim Minjun")]))

    # A again, now with another phone (say its phone column was read differently) and its old name.
    counts = load(engine, event, "A", frame([person(1, "Kim", phone="+821033334444")]))

    assert counts == LoadCounts(new=0, updated=1, unchanged=0)  # the phone is applied, so not stale
    row = stored(engine, event.id)["p1@example.com"]
    assert (row["name"], row["phone"]) == ("Kim Minjun", "+821033334444")
    assert row["updated_upload_id"] == uid(engine, event, "A")


def test_an_older_upload_loading_after_a_newer_one_fills_nothing_the_newer_one_holds(
    engine: Engine, event: Event
) -> None:
    register(engine, event, "A")  # A registered first, but its load runs late
    load(engine, event, "B", frame([person(1, "From B")]))

    counts = load(engine, event, "A", frame([person(1, "From A", phone="+821011112222")]))

    # New rows are wholly their creator's: B's blank phone is B's too.
    b = uid(engine, event, "B")
    assert counts == LoadCounts(
        new=0,
        updated=0,
        unchanged=1,
        stale=1,
        stale_rows=[StaleRow(2, "name", b), StaleRow(2, "phone", b)],
    )
    assert (stored(engine, event.id)["p1@example.com"]["name"]) == "From B"


def test_stale_rows_are_listed_up_to_the_cap_and_counted_exactly(engine: Engine, event: Event) -> None:
    n = MAX_STALE_ROWS + 234
    a_rows = frame([person(i) for i in range(n)])
    load(engine, event, "A", a_rows)
    load(engine, event, "B", frame([person(i, "renamed") for i in range(n)]))

    counts = load(engine, event, "A", a_rows)

    assert (counts.new, counts.updated, counts.unchanged, counts.stale) == (0, 0, n, n)
    assert len(counts.stale_rows) == MAX_STALE_ROWS
    assert [s.row for s in counts.stale_rows] == list(range(2, 2 + MAX_STALE_ROWS))
    assert {(s.field, s.newer_upload_id) for s in counts.stale_rows} == {("name", uid(engine, event, "B"))}


# -- the reference model ----------------------------------------------------------------------


@dataclass
class Model:
    """The load semantics in plain Python, one row at a time: what the SQL must agree with."""

    seqs: dict[str, int]  # upload id -> seq
    rows: dict[str, dict[str, object]] = field(default_factory=dict)

    def load(self, records: list[tuple[str, ...]], upload_id: str) -> LoadCounts:
        seq = self.seqs[upload_id]
        by_seq = {n: u for u, n in self.seqs.items()}
        new = updated = unchanged = stale = 0
        stale_rows: list[StaleRow] = []
        for row_no, (email, *values) in enumerate(records, start=2):
            incoming = dict(zip(DATA_FIELDS, values, strict=True))
            old = self.rows.get(email)
            if old is None:
                seqs = {f"{f}_seq": seq for f in DATA_FIELDS}
                self.rows[email] = {**incoming, **seqs, "created": upload_id, "updated": upload_id}
                new += 1
                continue
            given = [f for f in DATA_FIELDS if incoming[f] != BLANK[f]]
            differs = [f for f in given if incoming[f] != old[f]]
            mine = [f for f in given if seq >= int(str(old[f"{f}_seq"]))]
            if set(differs) & set(mine):
                for f in mine:  # every field no newer upload holds is claimed, equal or not
                    old.update({f: incoming[f], f"{f}_seq": seq})
                old["updated"] = upload_id
                updated += 1
            elif differs:  # only newer uploads' fields would change
                unchanged += 1
                stale += 1
                stale_rows += [StaleRow(row_no, f, by_seq[int(str(old[f"{f}_seq"]))]) for f in differs]
            elif old["created"] == upload_id:
                new += 1
            elif old["updated"] == upload_id:
                updated += 1
            else:
                unchanged += 1
        return LoadCounts(new=new, updated=updated, unchanged=unchanged, stale=stale, stale_rows=stale_rows)


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
    st.sampled_from(["u1", "u2", "u3"]),  # in any order: an older upload often loads after a newer one
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
    registered = dict(register(engine, event, tag) for tag in ("u1", "u2", "u3"))  # seq order u1 < u2 < u3
    ids = {tag: uid(engine, event, tag) for tag in ("u1", "u2", "u3")}
    model = Model(seqs=registered)

    for tag, records in uploads:
        expected = model.load(records, ids[tag])
        got = load_participants(
            engine, event_id=event.id, upload_id=ids[tag], upload_seq=registered[ids[tag]], rows=frame(records)
        )
        assert got == expected, (tag, records)
        assert got.total == len(records)

    actual = {
        email: {
            **{f: row[f] for f in [*DATA_FIELDS, *SEQS]},
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
    load(engine, event, "u1", frame([person(1)]))

    assert load(engine, event, "u2", pd.DataFrame()) == LoadCounts(0, 0, 0)
    assert load(engine, event, "u3", frame([])) == LoadCounts(0, 0, 0)
    with engine.connect() as conn:
        assert count_participants(conn, event.id) == 1
