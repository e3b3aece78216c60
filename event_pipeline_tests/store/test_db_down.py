"""The database going away: a clear error, and after it is back, nothing half-written."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from event_pipeline.store.db import dispose_engines, make_engine
from event_pipeline.store.events import create_event
from event_pipeline.store.migrate import upgrade
from event_pipeline.store.participants import DatabaseUnavailable, LoadCounts, load_participants
from event_pipeline.store.tables import participants
from event_pipeline_tests.store.conftest import frame, person, register
from event_pipeline_tests.support.postgres import PostgresServer, PostgresUnavailable, free_port


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_unreachable_database_is_reported_clearly(tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        # make_engine creates a missing folder for the file, so: a "folder" that is a file.
        (tmp_path / "not-a-dir").write_bytes(b"")
        url = f"sqlite:///{tmp_path}/not-a-dir/db.sqlite"
    else:
        url = f"postgresql+psycopg://app:s3cret@127.0.0.1:{free_port()}/participants"  # nothing listens
    engine = make_engine(url)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            load_participants(engine, event_id=1, upload_id="devcon-2026-abc", upload_seq=1, rows=frame([person(1)]))
    finally:
        dispose_engines()

    message = str(caught.value)
    assert "unavailable while connecting to" in message
    assert "devcon-2026-abc" in message
    assert "nothing of this upload was written" in message
    assert "s3cret" not in message  # the URL is shown with its password masked
    assert isinstance(caught.value.__cause__, sa.exc.OperationalError)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of this test's own: it gets stopped, which the session's server must not be."""
    try:
        server = PostgresServer(tmp_path / "pg").start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for this test: {exc}")
    yield server
    dispose_engines()
    server.cleanup()


def _loader_waiting_on_lock(server: PostgresServer, dbname: str) -> int | None:
    """pid of the load's backend once it has written rows (has an xid) and is stuck on a row lock."""
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
            "AND backend_xid IS NOT NULL AND query LIKE %s",
            (dbname, "%INSERT INTO participants%"),
        ).fetchone()
    return None if row is None else int(row[0])


@pytest.mark.parametrize("how", ["server-stopped", "backend-terminated"])
def test_losing_the_database_mid_load_rolls_the_whole_load_back(own_server: PostgresServer, how: str) -> None:
    url = own_server.create_database("participants_db")
    engine = make_engine(url)
    upgrade(engine)
    event = create_event(engine, slug="devcon-2026", name="DevCon", organiser_email="org@example.com")
    (u1, seq1), (u2, seq2) = register(engine, event, "u1"), register(engine, event, "u2")
    load_participants(
        engine, event_id=event.id, upload_id=u1, upload_seq=seq1, rows=frame([person(i, "Old") for i in range(100)])
    )

    # Another session inserts one of the new emails and does not commit: the load's INSERT
    # waits on it after the UPDATE of the 100 renamed rows and part of the INSERT are done.
    blocker = psycopg.connect(own_server.dsn("participants_db"))
    blocker.execute(
        "INSERT INTO participants (event_id, email_norm, name, created_at, updated_at) "
        "VALUES (%s, 'p5000@example.com', 'blocker', now(), now())",
        (event.id,),
    )
    rows = frame([person(i, "New") for i in range(100)] + [person(i) for i in range(100, 10_000)])
    failure: list[BaseException] = []

    def load() -> None:
        try:
            load_participants(engine, event_id=event.id, upload_id=u2, upload_seq=seq2, rows=rows)
        except BaseException as exc:
            failure.append(exc)

    loader = threading.Thread(target=load)
    loader.start()
    deadline = time.monotonic() + 60
    while (pid := _loader_waiting_on_lock(own_server, "participants_db")) is None:
        assert loader.is_alive() and time.monotonic() < deadline, f"load never got stuck mid-write: {failure}"
        time.sleep(0.05)

    if how == "server-stopped":
        own_server.stop()
    else:
        with psycopg.connect(own_server.dsn("postgres"), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    loader.join(timeout=60)
    assert not loader.is_alive()
    blocker.close()

    assert len(failure) == 1 and isinstance(failure[0], DatabaseUnavailable), failure
    assert "unavailable while loading into" in str(failure[0])
    assert "nothing of this upload was written" in str(failure[0])

    if how == "server-stopped":
        own_server.start()  # same data directory, same port
    with engine.connect() as conn:
        left = conn.execute(sa.select(participants.c.email_norm, participants.c.name, participants.c.updated_upload_id))
        rows_after = {r.email_norm: (r.name, r.updated_upload_id) for r in left}
    assert rows_after == {f"p{i}@example.com": ("Old", u1) for i in range(100)}

    # Once the database is back, the retried load does everything, and counts as if first.
    assert load_participants(engine, event_id=event.id, upload_id=u2, upload_seq=seq2, rows=rows) == LoadCounts(
        new=9_900, updated=100, unchanged=0
    )
