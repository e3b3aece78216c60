"""The database itself refuses duplicates: constraints hold even for writers that skip our code."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import is_postgres
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.participants import count_participants, load_participants
from event_pipeline.store.tables import access_tokens, participants
from event_pipeline_tests.store.conftest import frame, person, register

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _load(engine: Engine, event: Event, tag: str, rows: pd.DataFrame) -> None:
    upload_id, seq = register(engine, event, tag)
    load_participants(engine, event_id=event.id, upload_id=upload_id, upload_seq=seq, rows=rows)


def _participant(conn: sa.Connection, event_id: int, email: str) -> int:
    values = dict(event_id=event_id, email_norm=email, name="N", created_at=NOW, updated_at=NOW)
    return int(conn.execute(sa.insert(participants).values(**values).returning(participants.c.id)).scalar_one())


def _token(conn: sa.Connection, event_id: int, participant_id: int, public_id: str, status: str = "live") -> None:
    conn.execute(
        sa.insert(access_tokens).values(
            event_id=event_id, participant_id=participant_id, public_id=public_id, status=status, issued_at=NOW
        )
    )


def test_one_email_once_per_event(engine: Engine, event: Event) -> None:
    other = create_event(engine, slug="other-2026", name="Other", organiser_email="org@example.com")
    with engine.begin() as conn:
        _participant(conn, event.id, "a@example.com")
        _participant(conn, other.id, "a@example.com")  # another event: allowed

    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        _participant(conn, event.id, "a@example.com")
    with engine.connect() as conn:
        assert count_participants(conn, event.id) == 1


def test_participants_need_an_existing_event(engine: Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        _participant(conn, 999, "a@example.com")


def test_one_live_token_per_participant_but_any_number_revoked(engine: Engine, event: Event) -> None:
    with engine.begin() as conn:
        pid = _participant(conn, event.id, "a@example.com")
        _token(conn, event.id, pid, "tok-revoked-1", status="revoked")
        _token(conn, event.id, pid, "tok-revoked-2", status="revoked")
        _token(conn, event.id, pid, "tok-live-1")

    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        _token(conn, event.id, pid, "tok-live-2")

    # Revoking the live one frees the slot for a new live token.
    with engine.begin() as conn:
        conn.execute(sa.update(access_tokens).where(access_tokens.c.public_id == "tok-live-1").values(status="revoked"))
        _token(conn, event.id, pid, "tok-live-2")
        live = conn.execute(
            sa.select(access_tokens.c.public_id).where(
                access_tokens.c.participant_id == pid, access_tokens.c.status == "live"
            )
        ).scalars()
        assert list(live) == ["tok-live-2"]


def test_public_ids_are_unique_across_participants(engine: Engine, event: Event) -> None:
    with engine.begin() as conn:
        a = _participant(conn, event.id, "a@example.com")
        b = _participant(conn, event.id, "b@example.com")
        _token(conn, event.id, a, "same-id")
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        _token(conn, event.id, b, "same-id")


def test_a_failing_load_writes_nothing(engine: Engine, event: Event) -> None:
    _load(engine, event, "u1", frame([person(1, "Kim")]))
    # The changed row is written before the failing insert, so a partial write would show.
    rows = frame([person(1, "Kim Changed"), person(2), person(3)])
    if is_postgres(engine):
        rows.loc[2, "name"] = "x" * 201  # over varchar(200): PostgreSQL refuses the INSERT
        expected: type[Exception] = sa.exc.DataError
    else:
        # SQLite has no length limits; a trigger plays the part of a constraint that fails mid-load.
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_p3 BEFORE INSERT ON participants WHEN NEW.email_norm = 'p3@example.com' "
                "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END"
            )
        expected = sa.exc.IntegrityError

    with pytest.raises(expected):
        _load(engine, event, "u2", rows)

    u1 = register(engine, event, "u1")[0]
    with engine.connect() as conn:
        names = conn.execute(
            sa.select(participants.c.email_norm, participants.c.name, participants.c.updated_upload_id)
        )
        assert [tuple(r) for r in names] == [("p1@example.com", "Kim", u1)]


def test_reloading_does_not_burn_participant_ids(engine: Engine, event: Event) -> None:
    # participants.id is a 32-bit serial; an upsert that drew an id per skipped row would run it
    # out after a few thousand re-uploads of a large file.
    rows = frame([person(i) for i in range(500)])
    _load(engine, event, "u1", rows)
    _load(engine, event, "u2", rows)
    _load(engine, event, "u3", frame([person(i, "changed") for i in range(500)]))

    _load(engine, event, "u4", frame([person(10_000)]))

    with engine.connect() as conn:
        newest = conn.execute(sa.select(sa.func.max(participants.c.id))).scalar_one()
    assert newest == 501
