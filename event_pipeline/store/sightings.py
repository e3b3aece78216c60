"""The inbox sensor's sightings: per inbox path, its fingerprint, when that was first seen and
how many ticks have seen it. Stored in the database so every process watching the inbox (and a
restarted daemon) judges "has this file settled?" from the same memory."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import dialect_insert
from event_pipeline.store.tables import inbox_sightings

# (fingerprint, first_seen in unix seconds, sightings)
Sighting = tuple[str, float, int]
_CHUNK = 500  # paths per DELETE ... IN: far below SQLite's bound-parameter limit


def load_sightings(conn: sa.Connection) -> dict[str, Sighting]:
    t = inbox_sightings.c
    rows = conn.execute(sa.select(t.path, t.fingerprint, t.first_seen, t.sightings))
    return {str(p): (str(fp), float(first), int(n)) for p, fp, first, n in rows}


def save_sightings(engine: Engine, mapping: Mapping[str, Sighting]) -> None:
    """Make the table hold exactly ``mapping``: paths not in it are forgotten (the file left the
    inbox). Only rows that differ are written, in one transaction."""
    with engine.begin() as conn:
        stored = load_sightings(conn)
        gone = [p for p in stored if p not in mapping]
        for start in range(0, len(gone), _CHUNK):
            conn.execute(sa.delete(inbox_sightings).where(inbox_sightings.c.path.in_(gone[start : start + _CHUNK])))
        changed = [
            {"path": p, "fingerprint": fp, "first_seen": first, "sightings": n}
            for p, (fp, first, n) in mapping.items()
            if stored.get(p) != (fp, first, n)
        ]
        if changed:
            # An upsert, so two passes saving at once end with one row per path, not an error.
            insert = dialect_insert(conn)(inbox_sightings)
            excluded = insert.excluded
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[inbox_sightings.c.path],
                    set_={c: excluded[c] for c in ("fingerprint", "first_seen", "sightings")},
                ),
                changed,
            )
