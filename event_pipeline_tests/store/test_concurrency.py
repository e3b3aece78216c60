"""Two uploads of one event loading at the same time, from two real processes.

Gated: the test holds the event's write gate itself (PostgreSQL: the per-event advisory lock;
SQLite: the database write lock) until both loader processes are queued behind it, then lets go,
so the two loads really do contend instead of happening to run one after the other. Free race:
both start on one signal, which is what two Dagster runs do. Whichever order they end up in,
B (registered second) is the newer upload, so its names are the ones kept.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import is_postgres
from event_pipeline.store.events import Event
from event_pipeline.store.participants import count_participants, event_lock_key
from event_pipeline.store.tables import participants
from event_pipeline_tests.store.conftest import register

OVERLAP = 3_000
PER_UPLOAD = 6_000
DISTINCT = 2 * PER_UPLOAD - OVERLAP


def _rows(start: int, stop: int, name: str) -> Any:
    import pandas as pd

    emails = [f"p{i}@example.com" for i in range(start, stop)]
    return pd.DataFrame({"email": emails, "name": name, "phone": "", "department": "", "position": "", "extra": "{}"})


def load_in_child(
    url: str, event_id: int, upload_id: str, seq: int, start: int, name: str, ready: Any, go: Any, out: Any
) -> None:
    """Runs in a spawned process: its own interpreter, engine and connections."""
    from event_pipeline.store.db import make_engine
    from event_pipeline.store.participants import load_participants

    rows = _rows(start, start + PER_UPLOAD, name)
    rows.insert(0, "source_row", range(2, 2 + len(rows)))
    engine = make_engine(url)
    with engine.connect():
        pass  # connect before the start signal, so both loads begin within microseconds
    ready.set()
    go.wait(timeout=120)
    try:
        counts = load_participants(engine, event_id=event_id, upload_id=upload_id, upload_seq=seq, rows=rows)
    except Exception as exc:
        out.put((upload_id, "error", repr(exc)))
        raise
    out.put((upload_id, "ok", (counts.new, counts.updated, counts.unchanged, counts.stale)))


def _waiting_for_event_lock(conn: sa.Connection, event_id: int) -> int:
    key = event_lock_key(event_id)
    # A bigint advisory key is stored as two 32-bit halves.
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    return int(
        conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = :high AND objid = :low"
            ),
            {"high": high, "low": low},
        ).scalar_one()
    )


@pytest.mark.parametrize("gated", [True, False], ids=["queued-behind-gate", "free-race"])
def test_two_processes_loading_overlapping_rows_into_one_event(
    database_url: str, engine: Engine, event: Event, gated: bool
) -> None:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event(), ctx.Event()]
    (a, seq_a), (b, seq_b) = register(engine, event, "a"), register(engine, event, "b")
    jobs = [
        (a, seq_a, 0, "From A"),
        (b, seq_b, PER_UPLOAD - OVERLAP, "From B"),
    ]
    procs = [
        ctx.Process(target=load_in_child, args=(database_url, event.id, upload_id, seq, start, name, ready, go, out))
        for (upload_id, seq, start, name), ready in zip(jobs, readies, strict=True)
    ]

    if gated:
        _release_when_both_queued(engine, event, procs, readies, go)
    else:
        for p in procs:
            p.start()
        assert all(r.wait(timeout=120) for r in readies), "loader processes did not start"
        go.set()

    results: dict[str, Any] = {}
    try:
        for _ in procs:
            upload_id, status, payload = out.get(timeout=180)
            assert status == "ok", payload
            results[upload_id] = payload
    except queue.Empty:
        raise AssertionError(f"loads did not finish; got {results}") from None
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    got_a, got_b = tuple(results[a]), tuple(results[b])
    # Whichever went second found the overlap: B renames it, A finds it held by the newer B.
    assert (got_a, got_b) in [
        ((PER_UPLOAD, 0, 0, 0), (PER_UPLOAD - OVERLAP, OVERLAP, 0, 0)),  # A first
        ((PER_UPLOAD - OVERLAP, 0, OVERLAP, OVERLAP), (PER_UPLOAD, 0, 0, 0)),  # B first
    ], (got_a, got_b)

    with engine.connect() as conn:
        assert count_participants(conn, event.id) == DISTINCT
        dupes = conn.execute(
            sa.select(participants.c.email_norm)
            .where(participants.c.event_id == event.id)
            .group_by(participants.c.email_norm)
            .having(sa.func.count() > 1)
        ).all()
        assert dupes == []
        overlap_names = conn.execute(
            sa.select(participants.c.name, sa.func.count())
            .where(
                participants.c.event_id == event.id,
                participants.c.email_norm.in_([f"p{i}@example.com" for i in range(PER_UPLOAD - OVERLAP, PER_UPLOAD)]),
            )
            .group_by(participants.c.name)
        ).all()
        assert [tuple(r) for r in overlap_names] == [("From B", OVERLAP)]


def _release_when_both_queued(engine: Engine, event: Event, procs: list[Any], readies: list[Any], go: Any) -> None:
    with engine.connect() as gate:
        gate_tx = gate.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
        if is_postgres(gate):
            gate.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": event_lock_key(event.id)})
        for p in procs:
            p.start()
        assert all(r.wait(timeout=120) for r in readies), "loader processes did not start"
        go.set()
        deadline = time.monotonic() + 60
        if is_postgres(gate):
            with engine.connect() as watcher:
                while _waiting_for_event_lock(watcher, event.id) < 2:
                    assert time.monotonic() < deadline, "both loads should be queued on the event lock"
                    time.sleep(0.05)
        else:
            while not all(_in_sqlite_busy_wait(p.pid) for p in procs):
                assert time.monotonic() < deadline, "both loads should be in sqlite3's busy wait"
                time.sleep(0.01)
        gate_tx.commit()


def _in_sqlite_busy_wait(pid: int) -> bool:
    """SQLite has no lock queue to look at: a connection refused the write lock sleeps in its busy
    handler and tries again. After the start signal a loader sleeps nowhere else, so its main
    thread asleep in the kernel's nanosleep is the load waiting behind the gate (Linux)."""
    return Path(f"/proc/{pid}/wchan").read_text().strip() in {"hrtimer_nanosleep", "do_nanosleep"}
