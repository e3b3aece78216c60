"""The change history an upload leaves, and the SQL that takes an upload back (`undo`).

A load that updates a participant it did not create first copies that participant's fields and
their seqs into ``participant_changes`` (one row per upload and participant, the first image
wins), in the same statement batch as the update. Participants an upload created need no image:
``created_upload_id`` names them, and removing them is the way back.

A removed participant stays as a tombstone (status ``removed``, personal fields blanked, the
address replaced by ``removed:<id>``): its revoked tokens, cancelled deliveries and recorded scans
keep pointing at a row (foreign keys), an old QR code keeps scanning as ``revoked``, and the
address is free for a later upload to create the person afresh, with a new ticket and welcome mail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import sqlalchemy as sa

from event_pipeline.store.bulk import create_stage, drop_stage, fill_stage, quote
from event_pipeline.store.db import is_postgres
from event_pipeline.store.erasure import ERASED_STATUS
from event_pipeline.store.tables import (
    SEQ_FIELDS,
    access_tokens,
    email_deliveries,
    participant_changes,
    participants,
    uploads,
)

REMOVED = "removed"
# Rows that are no one any more: taken out by an undo, or erased on request (store/erasure.py).
# An undo leaves them as they are: nothing of theirs is left to remove or restore.
GONE = (REMOVED, ERASED_STATUS)
# Mail to a removed participant that had not gone out: never claimed (claim_due takes only
# queued/awaiting_retry), never released (only `sending` is), never bounced (not bounceable).
CANCELLED = "cancelled"
PENDING_MAIL = ("queued", "awaiting_retry", "sending")
_BLANKED = {"name": "", "phone": "", "department": "", "position": "", "extra": "{}"}
_CHUNK = 500  # bounded IN lists on both backends
RESTORE_STAGE = "undo_restore_stage"
REMOVAL_STAGE = "undo_removal_stage"

# {"<field>": [value, seq, changed], ...}: what a field held, which upload's seq held it, and
# whether the load went on to change its value (1) or not (0; it may still have reclaimed an equal
# value's seq). `undo` needs the last to tell "a later upload overwrote what this one changed"
# from "a later upload set a field this one never changed".
Image = dict[str, tuple[str, int]]


@dataclass(frozen=True)
class BeforeImage:
    fields: Image
    changed: frozenset[str]


def image_sql(conn: sa.Connection, p: str, changes: dict[str, str]) -> str:
    """SQL for the JSON before-image of participant row ``p`` (``changes``: per field, the load's
    predicate for changing its value), built by the database itself so the history stays one
    INSERT ... SELECT per load, with no row passing through Python."""
    array, obj = ("json_build_array", "json_build_object") if is_postgres(conn) else ("json_array", "json_object")
    pairs = []
    for field in SEQ_FIELDS:
        c, cs = quote(conn, field), quote(conn, field + "_seq")
        pairs.append(f"'{field}', {array}({p}.{c}, {p}.{cs}, CASE WHEN {changes[field]} THEN 1 ELSE 0 END)")
    built = f"{obj}({', '.join(pairs)})"
    return f"CAST({built} AS TEXT)" if is_postgres(conn) else built


def record_images_sql(conn: sa.Connection, *, stage: str, writes: str, changes: dict[str, str]) -> sa.TextClause:
    """Before-images of the participants the coming ``UPDATE ... FROM stage`` will write, except
    the ones this upload created (a re-run). ``writes`` (does the row get written) and ``changes``
    (per field) are that UPDATE's own predicates over ``s`` (stage) and ``p`` (participant), so
    both pick exactly the same rows and fields."""
    stmt = sa.text(
        f"""
        INSERT INTO participant_changes (upload_id, participant_id, {quote(conn, "before")}, recorded_at)
        SELECT CAST(:upload_id AS VARCHAR(100)), p.id, {image_sql(conn, "p", changes)}, :now
        FROM {quote(conn, stage)} AS s
        JOIN participants AS p ON p.event_id = :event_id AND p.email_norm = s.email_norm
        WHERE ({writes}) AND (p.created_upload_id IS NULL OR p.created_upload_id <> CAST(:upload_id AS VARCHAR(100)))
        ON CONFLICT (upload_id, participant_id) DO NOTHING
        """
    ).bindparams(sa.bindparam("now", type_=participant_changes.c.recorded_at.type))
    # The casts: PostgreSQL deduces one type per parameter, and this one is both a column value
    # and compared with one.
    return stmt


def parse_image(text: str) -> BeforeImage:
    raw = json.loads(text)
    fields = {f: (raw[f][0], raw[f][1]) for f in SEQ_FIELDS}
    return BeforeImage(fields, frozenset(f for f in SEQ_FIELDS if raw[f][2]))


# -- reading what an undo would do ------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """A participant the upload created, with the seqs its fields hold now."""

    participant_id: int
    email: str
    seqs: dict[str, int]


@dataclass(frozen=True)
class Changed:
    """A participant the upload updated: what it held before, and what it holds now."""

    participant_id: int
    before: BeforeImage
    now: Image


@dataclass(frozen=True)
class Mail:
    delivery_id: int
    participant_id: int
    kind: str
    status: str


def created_by(conn: sa.Connection, upload_id: str) -> list[Created]:
    p = participants.c
    cols = [p.id, p.email_norm, *(p[f + "_seq"] for f in SEQ_FIELDS)]
    stmt = sa.select(*cols).where(p.created_upload_id == upload_id, p.status.notin_(GONE)).order_by(p.id)
    rows = (tuple(r) for r in conn.execute(stmt))  # tuple indexing: see changed_by
    return [Created(r[0], r[1], {f: r[2 + i] for i, f in enumerate(SEQ_FIELDS)}) for r in rows]


def changed_by(conn: sa.Connection, upload_id: str) -> list[Changed]:
    p, c = participants.c, participant_changes.c
    cols = [p.id, c.before, *(p[f] for f in SEQ_FIELDS), *(p[f + "_seq"] for f in SEQ_FIELDS)]
    stmt = (
        sa.select(*cols)
        .join(participants, participants.c.id == c.participant_id)
        .where(c.upload_id == upload_id, p.status.notin_(GONE))
        .order_by(p.id)
    )
    n = len(SEQ_FIELDS)
    found = []
    for row in conn.execute(stmt):
        r = tuple(row)  # plain tuple indexing: a Row's is several times slower, at 100k rows
        now = {f: (r[2 + i], r[2 + n + i]) for i, f in enumerate(SEQ_FIELDS)}
        found.append(Changed(r[0], parse_image(r[1]), now))
    return found


def upload_ids_by_seq(conn: sa.Connection, seqs: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(seqs))
    found: dict[int, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        stmt = sa.select(uploads.c.seq, uploads.c.id).where(uploads.c.seq.in_(wanted[start : start + _CHUNK]))
        found.update({int(s): str(i) for s, i in conn.execute(stmt)})
    return found


def mail_of_created(conn: sa.Connection, upload_id: str) -> list[Mail]:
    """Every delivery to a participant the upload created (not yet removed). One join rather
    than IN lists of ids: at 100k participants that is one query instead of 200."""
    d, p = email_deliveries.c, participants.c
    stmt = (
        sa.select(d.id, d.participant_id, d.kind, d.status, d.sent_at)
        .join(participants, p.id == d.participant_id)
        .where(p.created_upload_id == upload_id, p.status.notin_(GONE))
        .order_by(d.id)
    )
    found: list[Mail] = []
    for did, pid, kind, status, sent_at in conn.execute(stmt).tuples():
        # A row bounced after it went out still went out.
        shown = "sent" if sent_at is not None and status not in PENDING_MAIL else str(status)
        found.append(Mail(int(did), int(pid), str(kind), shown))
    return found


def with_live_token_created(conn: sa.Connection, upload_id: str) -> set[int]:
    """The participants the upload created (not yet removed) that hold a live token."""
    t, p = access_tokens.c, participants.c
    stmt = (
        sa.select(t.participant_id)
        .join(participants, p.id == t.participant_id)
        .where(p.created_upload_id == upload_id, p.status.notin_(GONE), t.status == "live")
    )
    return {int(pid) for pid in conn.execute(stmt).scalars()}


# -- taking an upload back --------------------------------------------------------------------------


def remove_participants(conn: sa.Connection, participant_ids: Sequence[int], *, now: datetime) -> int:
    """Revoke their live tokens, cancel their unsent mail, and leave a tombstone (module doc).
    The ids go through a staging table, so 100k removals are three statements, not 600."""
    if not participant_ids:
        return 0
    create_stage(conn, REMOVAL_STAGE, ["id"])
    fill_stage(conn, REMOVAL_STAGE, pd.DataFrame({"id": [str(i) for i in participant_ids]}))
    ids = sa.text(f"SELECT CAST(id AS INTEGER) FROM {quote(conn, REMOVAL_STAGE)}")
    t, d, p = access_tokens.c, email_deliveries.c, participants.c
    conn.execute(
        sa.update(access_tokens)
        .where(t.participant_id.in_(ids.columns(sa.column("id", sa.Integer))), t.status == "live")
        .values(status="revoked", revoked_at=now)
    )
    conn.execute(
        sa.update(email_deliveries)
        .where(d.participant_id.in_(ids.columns(sa.column("id", sa.Integer))), d.status.in_(PENDING_MAIL))
        .values(status=CANCELLED, last_error="cancelled: the upload that added this participant was undone")
    )
    removed = conn.execute(
        sa.update(participants)
        .where(p.id.in_(ids.columns(sa.column("id", sa.Integer))), p.status.notin_(GONE))
        .values(
            status=REMOVED,
            email_norm=sa.literal("removed:") + sa.cast(p.id, sa.String),
            updated_at=now,
            **_BLANKED,
        )
    ).rowcount
    drop_stage(conn, REMOVAL_STAGE)
    return int(removed)


def restore_fields(conn: sa.Connection, restores: Sequence[tuple[int, Image]], *, seq: int, now: datetime) -> int:
    """Put each participant's before-image back into the fields upload ``seq`` still holds:
    the images go into a staging table in bulk, then one ``UPDATE ... FROM`` (as the load does).

    The seq test is in the UPDATE itself, so a field a later upload took meanwhile is never
    touched even if the caller's picture of the row is out of date."""
    if not restores:
        return 0
    columns = {"id": [str(pid) for pid, _ in restores]}
    for f in SEQ_FIELDS:
        columns[f] = [image[f][0] for _, image in restores]
        columns[f + "_seq"] = [str(image[f][1]) for _, image in restores]
    create_stage(conn, RESTORE_STAGE, list(columns))
    fill_stage(conn, RESTORE_STAGE, pd.DataFrame(columns))
    assignments = []
    for f in SEQ_FIELDS:
        c, cs = quote(conn, f), quote(conn, f + "_seq")
        held = f"participants.{cs} = :seq"
        assignments.append(f"{c} = CASE WHEN {held} THEN u.{c} ELSE participants.{c} END")
        assignments.append(f"{cs} = CASE WHEN {held} THEN CAST(u.{cs} AS INTEGER) ELSE participants.{cs} END")
    stmt = sa.text(
        f"""
        UPDATE participants SET {", ".join(assignments)}, updated_at = :now
        FROM {quote(conn, RESTORE_STAGE)} AS u
        WHERE participants.id = CAST(u.id AS INTEGER)
        """
    ).bindparams(sa.bindparam("now", type_=participants.c.updated_at.type))
    written = conn.execute(stmt.execution_options(preserve_rowcount=True), {"seq": seq, "now": now}).rowcount
    drop_stage(conn, RESTORE_STAGE)
    return int(written)


def mark_undone(conn: sa.Connection, upload_id: str, *, summary: dict[str, int], now: datetime) -> None:
    conn.execute(
        sa.update(uploads)
        .where(uploads.c.id == upload_id)
        .values(status="undone", undone_at=now, undo_summary=json.dumps(summary, sort_keys=True))
    )
