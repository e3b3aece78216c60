"""Engine creation: one place that knows the differences between SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline import files

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URL; None for in-memory and URI forms, and for
    other databases (a PostgreSQL URL's database is a name, not a file)."""
    parsed = sa.make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or "uri" in parsed.query:
        return None
    return Path(database)


def _sqlite_on_connect(path: Path | None, dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the webserver read while a run writes; busy_timeout turns "database is locked"
    # into a wait. isolation_level=None hands transaction control to SQLAlchemy's BEGIN.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
    if path is not None:
        # SQLite gives its -wal/-shm files the database file's mode already; tightening them is
        # cheap insurance for files left by an older version or created under another umask.
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                files.make_private(path.with_name(path.name + suffix))


def _sqlite_begin(conn: sa.Connection) -> None:
    # IMMEDIATE takes the write lock up front, so two loads of the same event serialise
    # instead of failing on lock upgrade halfway through.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Return a process-wide engine for ``url`` (engines own pools; one per URL is enough)."""
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        # preserve_rowcount: SQLAlchemy 2.1 reports -1 for executemany INSERTs on PostgreSQL
        # otherwise, and our counts (tokens issued, mails queued) come from rowcount.
        options = {"preserve_rowcount": True}
        if url.startswith("sqlite"):
            path = sqlite_file(url)
            if path is not None:
                # The file holds participant data: create it 0600 in a 0700 folder before sqlite3
                # creates it under the umask. Best effort: if it cannot be made (a path that is
                # not ours), sqlite3's own error at connect says what is wrong with the path.
                with contextlib.suppress(OSError):
                    files.touch_private(path)
            engine = sa.create_engine(url, connect_args={"timeout": 30}, execution_options=options)
            sa.event.listen(engine, "connect", functools.partial(_sqlite_on_connect, path))
            sa.event.listen(engine, "begin", _sqlite_begin)
        else:
            # A host that silently drops packets must fail the step (and be retried), not hang it.
            engine = sa.create_engine(
                url,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=5,
                connect_args={"connect_timeout": 10},
                execution_options=options,
            )
        _engines[url] = engine
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes even for timezone=True columns; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_postgres(engine: Engine | sa.Connection) -> bool:
    return engine.dialect.name == "postgresql"


def dialect_insert(conn: sa.Connection) -> Any:
    """The dialect's ``insert``, which has ``on_conflict_do_nothing`` (plain ``sa.insert`` has not)."""
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert
