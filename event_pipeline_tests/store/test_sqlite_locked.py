"""SQLite under a flood: another process holding the write lock for much longer than a normal
write (milliseconds) makes our writes wait and then succeed, never raise "database is locked".

The holder is a plain ``sqlite3`` connection in a spawned process, as another run worker, the
sensor or the webserver would be. Our side goes through ``make_engine``, as every step does.
"""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import dispose_engines, make_engine
from event_pipeline.store.events import create_event
from event_pipeline.store.migrate import upgrade
from event_pipeline.store.tables import events

HOLD_S = 2.0


def hold_write_lock(db: str, holding: Any, hold_s: float) -> None:
    """Runs in a spawned process: take the write lock, write a row, keep the lock, commit."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO events (slug, name, organiser_email, created_at) "
        "VALUES ('held', 'Held', 'o@example.com', '2026-01-01')"
    )
    holding.set()
    time.sleep(hold_s)  # the fault itself: a writer that keeps the lock for seconds
    conn.execute("COMMIT")
    conn.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'locked.sqlite'}")
    upgrade(engine)
    yield engine
    dispose_engines()


@pytest.fixture
def held(engine: Engine) -> Iterator[float]:
    """Another process holds the write lock for HOLD_S from the moment this returns."""
    ctx = mp.get_context("spawn")
    holding = ctx.Event()
    proc = ctx.Process(target=hold_write_lock, args=(engine.url.database, holding, HOLD_S))
    proc.start()
    assert holding.wait(timeout=60), "the lock holder did not start"
    yield time.monotonic()
    proc.join(timeout=60)
    assert proc.exitcode == 0


def test_a_write_waits_for_a_held_lock_and_succeeds(engine: Engine, held: float) -> None:
    event = create_event(engine, slug="after-lock", name="After", organiser_email="org@example.com")

    waited = time.monotonic() - held
    assert waited >= HOLD_S / 2  # it really was blocked, not lucky
    with engine.connect() as conn:
        slugs = conn.execute(sa.select(events.c.slug).order_by(events.c.id)).scalars().all()
    assert slugs == ["held", "after-lock"] and event.slug == "after-lock"


def test_a_read_then_write_transaction_sees_the_holders_commit(engine: Engine, held: float) -> None:
    # A deferred BEGIN would read a snapshot from before the holder's commit and then fail at once
    # with "database is locked" (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out) when it
    # writes; taking the write lock at BEGIN makes the whole transaction wait instead.
    with engine.begin() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
        conn.execute(
            sa.insert(events).values(
                slug=f"event-{before}", name="N", organiser_email="org@example.com", created_at=sa.func.now()
            )
        )

    assert time.monotonic() - held >= HOLD_S / 2
    assert before == 1  # the holder's row, committed before this transaction read
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 2
