"""Committed lengths of the outbox's mailbox files (see ``mail.outbox``)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from event_pipeline.store.db import dialect_insert
from event_pipeline.store.tables import outbox_files


def committed_bytes(conn: sa.Connection, name: str) -> int | None:
    value = conn.execute(sa.select(outbox_files.c.committed_bytes).where(outbox_files.c.name == name)).scalar()
    return int(value) if value is not None else None


def set_committed_bytes(conn: sa.Connection, name: str, length: int) -> None:
    """Called inside the transaction that records the outcomes of the messages it covers."""
    now = datetime.now(UTC)
    insert = dialect_insert(conn)(outbox_files).values(name=name, committed_bytes=length, updated_at=now)
    conn.execute(
        insert.on_conflict_do_update(index_elements=["name"], set_={"committed_bytes": length, "updated_at": now})
    )
