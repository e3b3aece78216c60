"""The SQLite database file holds participant data: it is private from the moment it exists."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from event_pipeline.store.db import dispose_engines, make_engine


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)
    dispose_engines()


@pytest.mark.usefixtures("loose_umask")
def test_a_new_database_file_and_its_folder_are_private(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "nested" / "participants.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))

        assert _mode(db) == 0o600
        assert _mode(db.parent) == 0o700 and _mode(db.parent.parent) == 0o700
        for suffix in ("-wal", "-shm"):
            side = db.with_name(db.name + suffix)
            assert side.exists() and _mode(side) == 0o600


@pytest.mark.usefixtures("loose_umask")
def test_an_existing_loose_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with make_engine(f"sqlite:///{db}").begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    dispose_engines()
    for path in [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]:
        if path.exists():
            path.chmod(0o644)

    with make_engine(f"sqlite:///{db}").connect() as conn:
        conn.execute(sa.text("SELECT count(*) FROM t"))
        assert _mode(db) == 0o600
        for suffix in ("-wal", "-shm"):
            side = db.with_name(db.name + suffix)
            assert not side.exists() or _mode(side) == 0o600


def test_in_memory_databases_are_left_alone() -> None:
    with make_engine("sqlite://").connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    dispose_engines()
