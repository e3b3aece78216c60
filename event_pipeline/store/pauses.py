"""Mail pauses: a backend that refused our key is left alone until ``probe_after``, by every
process, and the pause is announced once (by whoever started it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import as_utc, dialect_insert
from event_pipeline.store.tables import mail_pauses


@dataclass(frozen=True)
class Pause:
    backend: str
    reason: str
    paused_at: datetime
    probe_after: datetime


def get_pause(conn: sa.Connection, backend: str) -> Pause | None:
    row = conn.execute(sa.select(mail_pauses).where(mail_pauses.c.backend == backend)).first()
    if row is None:
        return None
    return Pause(row.backend, row.reason, as_utc(row.paused_at), as_utc(row.probe_after))


def set_pause(engine: Engine, backend: str, reason: str, probe_after: datetime) -> bool:
    """Pause ``backend`` until ``probe_after``. True only if this call started the pause (no row
    existed), so exactly one caller alerts; a failed probe just extends it (keeping paused_at)."""
    with engine.begin() as conn:
        started = conn.execute(
            dialect_insert(conn)(mail_pauses)
            .values(backend=backend, reason=reason, paused_at=datetime.now(UTC), probe_after=probe_after)
            .on_conflict_do_nothing()
        ).rowcount
        if not started:
            conn.execute(
                sa.update(mail_pauses)
                .where(mail_pauses.c.backend == backend)
                .values(reason=reason, probe_after=probe_after)
            )
    return started == 1


def clear_pause(engine: Engine, backend: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(mail_pauses).where(mail_pauses.c.backend == backend))
