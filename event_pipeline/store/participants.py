"""Loading an upload's clean rows into participants: one transaction, classified new/updated/unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.db import is_postgres
from event_pipeline.store.tables import participants

# Fields an upload may change; email_norm is the key.
DATA_FIELDS = ("name", "phone", "department", "position", "extra")
_CHUNK = 5000


@dataclass(frozen=True)
class LoadCounts:
    new: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged


def event_lock_key(event_id: int) -> int:
    digest = hashlib.blake2b(f"participants:{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_event(conn: sa.Connection, event_id: int) -> None:
    """Serialise loads of one event. SQLite already holds the write lock (BEGIN IMMEDIATE)."""
    if is_postgres(conn):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": event_lock_key(event_id)})


def _frame_for_load(rows: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({"email_norm": rows["email"].astype(str)})
    for field in DATA_FIELDS:
        default = "{}" if field == "extra" else ""
        frame[field] = rows[field].astype(str) if field in rows else default
    return frame.reset_index(drop=True)


@dataclass(frozen=True)
class Classified:
    new: pd.DataFrame
    changed: pd.DataFrame
    # Rows already written by an earlier attempt of this same upload: counted as that attempt
    # counted them, so a retried or re-run upload reports the same numbers.
    redone_new: int
    redone_updated: int
    unchanged: int


def classify(existing: pd.DataFrame, incoming: pd.DataFrame, upload_id: str) -> Classified:
    """Split incoming rows into new, changed (with merged values) and unchanged.

    A blank incoming value never erases a stored one: organisers often send partial re-exports.
    """
    merged = incoming.merge(existing, on="email_norm", how="left", suffixes=("", "_old"), indicator=True)
    is_new = merged["_merge"] == "left_only"
    new = merged.loc[is_new, ["email_norm", *DATA_FIELDS]]
    old = merged.loc[~is_new]
    changed_mask = pd.Series(False, index=old.index)
    result = pd.DataFrame({"id": old["id"].astype("int64"), "email_norm": old["email_norm"]})
    for field in DATA_FIELDS:
        blank = "{}" if field == "extra" else ""
        incoming_values = old[field]
        kept = incoming_values.where(incoming_values != blank, old[f"{field}_old"])
        result[field] = kept
        changed_mask |= kept != old[f"{field}_old"]
    same = old.loc[~changed_mask]
    redone_new = same["created_upload_id"] == upload_id
    redone_updated = ~redone_new & (same["updated_upload_id"] == upload_id)
    return Classified(
        new=new,
        changed=result.loc[changed_mask],
        redone_new=int(redone_new.sum()),
        redone_updated=int(redone_updated.sum()),
        unchanged=int(len(same) - redone_new.sum() - redone_updated.sum()),
    )


def read_existing(conn: sa.Connection, event_id: int) -> pd.DataFrame:
    names = ["id", "email_norm", *DATA_FIELDS, "created_upload_id", "updated_upload_id"]
    result = conn.execute(sa.select(*(participants.c[n] for n in names)).where(participants.c.event_id == event_id))
    return pd.DataFrame(result.fetchall(), columns=names)


def load_participants(engine: Engine, *, event_id: int, upload_id: str, rows: pd.DataFrame) -> LoadCounts:
    """Upsert deduplicated clean rows (columns: email, name, phone, department, position, extra).

    All or nothing: one transaction, and the per-event lock makes concurrent uploads of the
    same event see each other's rows, so counts stay exact and no email is inserted twice.
    """
    incoming = _frame_for_load(rows)
    if incoming["email_norm"].duplicated().any():
        raise ValueError("rows must be deduplicated by email before loading")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        lock_event(conn, event_id)
        existing = read_existing(conn, event_id)
        c = classify(existing, incoming, upload_id)
        _insert_new(conn, c.new, event_id=event_id, upload_id=upload_id, now=now)
        _update_changed(conn, c.changed, upload_id=upload_id, now=now)
    return LoadCounts(new=len(c.new) + c.redone_new, updated=len(c.changed) + c.redone_updated, unchanged=c.unchanged)


def _insert_new(conn: sa.Connection, new: pd.DataFrame, *, event_id: int, upload_id: str, now: datetime) -> None:
    if new.empty:
        return
    records = new.to_dict("records")
    for rec in records:
        rec.update(event_id=event_id, created_upload_id=upload_id, updated_upload_id=upload_id)
        rec.update(created_at=now, updated_at=now)
    for start in range(0, len(records), _CHUNK):
        conn.execute(sa.insert(participants), records[start : start + _CHUNK])


def _update_changed(conn: sa.Connection, changed: pd.DataFrame, *, upload_id: str, now: datetime) -> None:
    if changed.empty:
        return
    stmt = (
        sa.update(participants)
        .where(participants.c.id == sa.bindparam("pid"))
        .values({f: sa.bindparam(f"v_{f}") for f in DATA_FIELDS} | {"updated_upload_id": upload_id, "updated_at": now})
    )
    params: list[dict[str, Any]] = [
        {"pid": int(rec["id"]), **{f"v_{f}": rec[f] for f in DATA_FIELDS}} for rec in changed.to_dict("records")
    ]
    for start in range(0, len(params), _CHUNK):
        conn.execute(stmt, params[start : start + _CHUNK])


def participants_without_live_token(conn: sa.Connection, event_id: int) -> list[int]:
    from event_pipeline.store.tables import access_tokens

    live = sa.select(access_tokens.c.participant_id).where(
        access_tokens.c.participant_id == participants.c.id, access_tokens.c.status == "live"
    )
    stmt = (
        sa.select(participants.c.id)
        .where(participants.c.event_id == event_id, ~sa.exists(live))
        .order_by(participants.c.id)
    )
    return [int(r[0]) for r in conn.execute(stmt)]


def count_participants(conn: sa.Connection, event_id: int) -> int:
    stmt = sa.select(sa.func.count()).select_from(participants).where(participants.c.event_id == event_id)
    return int(conn.execute(stmt).scalar_one())
