"""Moving a DataFrame of text columns into a session-private staging table, fast.

PostgreSQL gets one ``COPY ... FROM STDIN`` of a CSV rendered by pyarrow (psycopg 3's
``cursor.copy``, or psycopg2's ``copy_expert`` when the URL picked that driver); SQLite gets one
``executemany``. Either way there is no per-row round trip, and the staging table disappears with
the transaction, so a failed load leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from event_pipeline.store.db import is_postgres

_COPY_CHUNK = 1 << 20


def quote(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def create_stage(conn: sa.Connection, table: str, columns: Sequence[str]) -> None:
    """A temporary all-text table; dropped at commit (PostgreSQL) or by ``drop_stage`` (SQLite)."""
    cols = ", ".join(f"{quote(conn, c)} TEXT NOT NULL" for c in columns)
    if is_postgres(conn):
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {quote(conn, table)} ({cols}) ON COMMIT DROP")
    else:
        # A stage left by a connection whose transaction never reached COMMIT/ROLLBACK cleanly.
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{quote(conn, table)}")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {quote(conn, table)} ({cols})")


def drop_stage(conn: sa.Connection, table: str) -> None:
    if not is_postgres(conn):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{quote(conn, table)}")


def fill_stage(conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
    """Write every row of ``frame`` (string columns, no missing values) into ``table``."""
    if frame.empty:
        return
    if is_postgres(conn):
        copy_frame(conn, table, frame)
        # Temp tables are never auto-analysed; without statistics the planner guesses the join.
        conn.exec_driver_sql(f"ANALYZE {quote(conn, table)}")
    else:
        insert_many(conn, table, frame)


def copy_frame(conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
    """PostgreSQL: one COPY of ``frame`` into ``table`` (columns by name)."""
    _copy_csv(conn, table, [str(c) for c in frame.columns], _to_csv(frame))


def insert_many(conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
    """One DB-API ``executemany``: SQLite runs it in-process, so this is its bulk path."""
    cols = ", ".join(quote(conn, str(c)) for c in frame.columns)
    marks = ", ".join("?" if conn.dialect.paramstyle == "qmark" else "%s" for _ in frame.columns)
    rows = list(frame.itertuples(index=False, name=None))
    conn.exec_driver_sql(f"INSERT INTO {quote(conn, table)} ({cols}) VALUES ({marks})", rows)


def _to_csv(frame: pd.DataFrame) -> bytes | memoryview:
    # pyarrow renders CSV about five times faster than DataFrame.to_csv, and quotes every string,
    # so an empty string stays an empty string and a lone "\." is never read as end-of-data.
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return memoryview(sink.getvalue())


def _copy_csv(conn: sa.Connection, table: str, columns: list[str], data: bytes | memoryview) -> None:
    cols = ", ".join(quote(conn, c) for c in columns)
    sql = f"COPY {quote(conn, table)} ({cols}) FROM STDIN (FORMAT csv, FORCE_NOT_NULL ({cols}))"
    dbapi_conn: Any = conn.connection.dbapi_connection
    driver = conn.dialect.driver
    try:
        if driver == "psycopg":
            with dbapi_conn.cursor() as cur, cur.copy(sql) as copy:
                view = memoryview(data)
                for start in range(0, len(view), _COPY_CHUNK):
                    copy.write(view[start : start + _COPY_CHUNK])
        elif driver == "psycopg2":
            import io

            with dbapi_conn.cursor() as cur:
                cur.copy_expert(sql, io.BytesIO(bytes(data)))
        else:
            raise NotImplementedError(
                f"bulk load needs psycopg or psycopg2, not {driver!r}: use a postgresql+psycopg:// URL"
            )
    except conn.dialect.loaded_dbapi.Error as exc:
        # The raw driver bypassed SQLAlchemy; hand the error to it as if it had run the statement,
        # so a lost connection is invalidated (not returned to the pool) and callers see one type.
        disconnect = conn.dialect.is_disconnect(exc, dbapi_conn, None)
        if disconnect:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql,
            None,
            exc,
            conn.dialect.loaded_dbapi.Error,
            connection_invalidated=disconnect,
            dialect=conn.dialect,
        ) from exc
