"""Loading an upload's clean rows into participants: one transaction, classified new/updated/unchanged.

Newer data wins, field by field: every field remembers the ``seq`` of the upload that last wrote
it, and an upload registered earlier never overwrites it (its row counts unchanged, as "stale").

The rows go into a temporary staging table in bulk (``store.bulk``); then, under a per-event lock,
one query classifies them against what the event already holds, one ``UPDATE ... FROM`` merges
the changed ones and one ``INSERT ... SELECT ... WHERE NOT EXISTS`` adds the new ones. Nothing is
read back into Python and there is no per-row round trip, on either backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.bulk import create_stage, drop_stage, fill_stage, quote
from event_pipeline.store.changes import REMOVED, record_images_sql
from event_pipeline.store.db import is_postgres
from event_pipeline.store.erasure import ERASED_STATUS
from event_pipeline.store.tables import SEQ_FIELDS, participants

# Fields an upload may change; email_norm is the key. Each has a ``<field>_seq`` column.
DATA_FIELDS = SEQ_FIELDS
# What an empty cell arrives as; it never overwrites a stored value.
BLANK = {field: "{}" if field == "extra" else "" for field in DATA_FIELDS}
STAGE = "participants_stage"
# Stale fields listed per load; the count beside them stays exact.
MAX_STALE_ROWS = 1000


@dataclass(frozen=True)
class StaleRow:
    """A field of a row that was not applied because a newer upload already set it. Listed for
    the rows counted stale (nothing else in them changed); a row updated otherwise does not list
    the fields it had to leave to a newer upload."""

    row: int  # the organiser's row number (source_row)
    field: str
    newer_upload_id: str


@dataclass(frozen=True)
class LoadCounts:
    new: int
    updated: int
    unchanged: int
    # Rows counted unchanged only because every field they would change is held by a newer upload.
    stale: int = 0
    stale_rows: list[StaleRow] = dataclass_field(default_factory=list)

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged


class DatabaseUnavailable(RuntimeError):
    """The participants database could not be reached, or went away, during a load."""


def event_lock_key(event_id: int) -> int:
    digest = hashlib.blake2b(f"participants:{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_event(conn: sa.Connection, event_id: int) -> None:
    """Serialise loads of one event. SQLite already holds the write lock (BEGIN IMMEDIATE)."""
    if is_postgres(conn):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": event_lock_key(event_id)})


def frame_for_load(rows: pd.DataFrame) -> pd.DataFrame:
    """The staging columns, all text; a missing value counts as blank (it keeps what is stored)."""
    if "email" not in rows:
        raise ValueError("rows to load need an 'email' column")
    email = rows["email"].astype(str)
    if email.isna().any() or (email.str.strip() == "").any():
        raise ValueError("rows to load must all have an email")
    if "source_row" not in rows:
        raise ValueError("rows to load need a 'source_row' column (the organiser's row numbers)")
    frame = pd.DataFrame({"email_norm": email, "source_row": rows["source_row"].astype("int64").astype(str)})
    for field in DATA_FIELDS:
        frame[field] = rows[field].astype(str).fillna(BLANK[field]) if field in rows else BLANK[field]
    return frame.reset_index(drop=True)


def load_participants(
    engine: Engine, *, event_id: int, upload_id: str, upload_seq: int, rows: pd.DataFrame
) -> LoadCounts:
    """Upsert deduplicated clean rows (columns: source_row, email, name, phone, department,
    position, extra) on behalf of the upload registered as ``upload_seq``.

    Newer data wins per field: a non-blank value is written only if no newer upload (larger seq)
    has written that field, so re-running an old upload never undoes a later correction.
    All or nothing: one transaction, and the per-event lock makes concurrent uploads of the
    same event see each other's rows, so counts stay exact and no email is inserted twice.
    Raises ``DatabaseUnavailable`` when the database cannot be reached or drops the connection.
    """
    if rows.empty:
        return LoadCounts(new=0, updated=0, unchanged=0)
    incoming = frame_for_load(rows)
    if incoming["email_norm"].duplicated().any():
        raise ValueError("rows must be deduplicated by email before loading")
    phase = "connecting to"
    try:
        with engine.connect() as conn:
            phase = "loading into"
            with conn.begin():
                counts = _load(conn, incoming, event_id=event_id, upload_id=upload_id, upload_seq=upload_seq)
                phase = "committing to"
    except sa.exc.DBAPIError as exc:
        if not _is_unavailable(exc, phase):
            raise
        raise DatabaseUnavailable(_unavailable_message(engine, exc, phase, upload_id)) from exc
    return counts


@contextmanager
def reaching_database(engine: Engine, upload_id: str) -> Iterator[None]:
    """What the load step reads before loading (the upload's row), failing as the load itself
    does when the database cannot be reached: a retry during an outage would otherwise end the
    run on a bare driver error that names neither the database nor the upload."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        if not _is_unavailable(exc, "connecting to"):
            raise
        raise DatabaseUnavailable(_unavailable_message(engine, exc, "connecting to", upload_id)) from exc


def _load(conn: sa.Connection, incoming: pd.DataFrame, *, event_id: int, upload_id: str, upload_seq: int) -> LoadCounts:
    create_stage(conn, STAGE, list(incoming.columns))
    # Staging is private to this connection, so on PostgreSQL it happens before the lock and
    # concurrent uploads of one event only queue for the classify-and-write part.
    fill_stage(conn, STAGE, incoming)
    lock_event(conn, event_id)
    params = {"event_id": event_id, "upload_id": upload_id, "seq": upload_seq}
    kinds = {str(kind): int(n) for kind, n in conn.execute(_classify_sql(conn), params)}
    matched = sum(kinds.values())
    new = len(incoming) - matched
    changed = kinds.get("changed", 0)
    stale = kinds.get("stale", 0)
    # Read before the UPDATE: once a row is written its stale fields no longer look stale.
    stale_rows = (
        [StaleRow(int(r), str(f), str(u)) for r, f, u in conn.execute(_stale_sql(conn), params)] if stale else []
    )
    now = datetime.now(UTC)
    # Two plain statements rather than one INSERT ... ON CONFLICT: under the event lock nothing
    # can conflict, and PostgreSQL's upsert would draw a sequence value for every existing row it
    # skips, burning ~660k ids of the 32-bit key on each re-upload of a large file.
    # A statement with nothing to do still joins the whole stage: skip it (a re-run of an upload
    # then costs one join).
    write = {**params, "now": now}
    if changed:
        # Before the UPDATE and with its own predicate: `undo` needs what these rows held.
        writes = _writes_sql(conn, "s", "p")
        changes = {f: f"({_differs(conn, f, 's', 'p')} AND {_may_write(conn, f, 's', 'p')})" for f in DATA_FIELDS}
        conn.execute(record_images_sql(conn, stage=STAGE, writes=writes, changes=changes), write)
    updated = conn.execute(_update_sql(conn), write).rowcount if changed else 0
    inserted = conn.execute(_insert_sql(conn), write).rowcount if new else 0
    if (inserted, updated) != (new, changed):
        # Only possible if something wrote this event's participants without the event lock;
        # raising rolls the whole load back rather than report counts that do not add up.
        raise RuntimeError(
            f"participants of event {event_id} changed during the load of {upload_id} "
            f"(expected {new} new and {changed} changed rows, wrote {inserted} and {updated}); "
            "nothing was written, retry the load"
        )
    drop_stage(conn, STAGE)
    return LoadCounts(
        new=new + kinds.get("redone_new", 0),
        updated=changed + kinds.get("redone_updated", 0),
        unchanged=kinds.get("unchanged", 0) + stale,
        stale=stale,
        stale_rows=stale_rows,
    )


# Per-field predicates, ``s`` the stage row and ``p`` the stored one. A blank never counts.
def _differs(conn: sa.Connection, field: str, s: str, p: str) -> str:
    c = quote(conn, field)
    return f"({s}.{c} <> '{BLANK[field]}' AND {s}.{c} <> {p}.{c})"


def _may_write(conn: sa.Connection, field: str, s: str, p: str) -> str:
    """The incoming value is non-blank and no newer upload holds the field."""
    c = quote(conn, field)
    return f"({s}.{c} <> '{BLANK[field]}' AND :seq >= {p}.{quote(conn, field + '_seq')})"


def _writes_sql(conn: sa.Connection, s: str, p: str) -> str:
    """True when merging the incoming row changes some field this upload may write."""
    return " OR ".join(f"({_differs(conn, f, s, p)} AND {_may_write(conn, f, s, p)})" for f in DATA_FIELDS)


def _classify_sql(conn: sa.Connection) -> sa.TextClause:
    # 'stale': some field differs, but (not 'changed') every differing one is a newer upload's.
    # That comes before the redone cases: re-running an old upload whose rows a newer upload
    # corrected reports them as kept back, not as its own again.
    # Rows already written by an earlier attempt of this same upload (a retried run, a re-run)
    # count as that attempt counted them, so the numbers reported for an upload never drift.
    any_differs = " OR ".join(_differs(conn, f, "s", "p") for f in DATA_FIELDS)
    return sa.text(
        f"""
        SELECT CASE
                 WHEN {_writes_sql(conn, "s", "p")} THEN 'changed'
                 WHEN {any_differs} THEN 'stale'
                 WHEN p.created_upload_id = :upload_id THEN 'redone_new'
                 WHEN p.updated_upload_id = :upload_id THEN 'redone_updated'
                 ELSE 'unchanged'
               END AS kind,
               count(*) AS n
        FROM {quote(conn, STAGE)} AS s
        JOIN participants AS p ON p.event_id = :event_id AND p.email_norm = s.email_norm
        GROUP BY 1
        """
    )


def _stale_sql(conn: sa.Connection) -> sa.TextClause:
    """(row, field, newer upload) for the fields of the rows classified 'stale', first rows first."""
    per_field = " UNION ALL ".join(
        f"SELECT CAST(s.source_row AS INTEGER) AS row_no, {i} AS field_no, '{f}' AS field, "
        f"p.{quote(conn, f + '_seq')} AS held_by, p.updated_upload_id AS fallback "
        f"FROM {quote(conn, STAGE)} AS s "
        f"JOIN participants AS p ON p.event_id = :event_id AND p.email_norm = s.email_norm "
        f"WHERE {_differs(conn, f, 's', 'p')} AND NOT ({_writes_sql(conn, 's', 'p')})"
        for i, f in enumerate(DATA_FIELDS)
    )
    # A seq with no upload row (participants written outside the pipeline) falls back to the
    # row's last writer, which is newer too.
    return sa.text(
        f"""
        SELECT k.row_no, k.field, COALESCE(u.id, k.fallback, '') AS newer_upload_id
        FROM ({per_field}) AS k
        LEFT JOIN uploads AS u ON u.seq = k.held_by
        ORDER BY k.row_no, k.field_no
        LIMIT {MAX_STALE_ROWS}
        """
    )


def _update_sql(conn: sa.Connection) -> sa.TextClause:
    assignments = []
    for f in DATA_FIELDS:
        c, cs = quote(conn, f), quote(conn, f + "_seq")
        # A non-blank value no newer upload holds is (re)claimed, equal or not: the field is
        # then this upload's, which an older upload loaded later must respect.
        take = _may_write(conn, f, "s", "participants")
        assignments.append(f"{c} = CASE WHEN {take} THEN s.{c} ELSE participants.{c} END")
        assignments.append(f"{cs} = CASE WHEN {take} THEN :seq ELSE participants.{cs} END")
    stmt = sa.text(
        f"""
        UPDATE participants SET
            {", ".join(assignments)},
            updated_upload_id = :upload_id,
            updated_at = :now
        FROM {quote(conn, STAGE)} AS s
        WHERE participants.event_id = :event_id
          AND participants.email_norm = s.email_norm
          AND ({_writes_sql(conn, "s", "participants")})
        """
    ).bindparams(sa.bindparam("now", type_=participants.c.updated_at.type))
    # The row counts are checked against the classification; never let them come back as -1.
    return stmt.execution_options(preserve_rowcount=True)


def _insert_sql(conn: sa.Connection) -> sa.TextClause:
    fields = [quote(conn, f) for f in DATA_FIELDS]
    seqs = [quote(conn, f + "_seq") for f in DATA_FIELDS]
    stmt = sa.text(
        f"""
        INSERT INTO participants (event_id, email_norm, {", ".join(fields)}, {", ".join(seqs)},
                                  created_upload_id, updated_upload_id, created_at, updated_at)
        SELECT :event_id, s.email_norm, {", ".join(f"s.{c}" for c in fields)}, {", ".join(":seq" for _ in seqs)},
               :upload_id, :upload_id, :now, :now
        FROM {quote(conn, STAGE)} AS s
        WHERE NOT EXISTS (
            SELECT 1 FROM participants AS p WHERE p.event_id = :event_id AND p.email_norm = s.email_norm
        )
        """
    ).bindparams(sa.bindparam("now", type_=participants.c.created_at.type))
    return stmt.execution_options(preserve_rowcount=True)


def _is_unavailable(exc: sa.exc.DBAPIError, phase: str) -> bool:
    if exc.connection_invalidated:
        return True
    return phase == "connecting to" and isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)


def _unavailable_message(engine: Engine, exc: sa.exc.DBAPIError, phase: str, upload_id: str) -> str:
    where = engine.url.render_as_string(hide_password=True)
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    if phase == "committing to":
        outcome = (
            "the connection was lost during COMMIT, so whether this load was saved is unknown; "
            "re-running the upload is safe (rows it already wrote are counted as before)"
        )
    else:
        outcome = "the transaction was not committed, so nothing of this upload was written; re-run it"
    return f"participants database {where} unavailable while {phase} it for upload {upload_id}: {reason}; {outcome}"


def participants_without_live_token(conn: sa.Connection, event_id: int) -> list[int]:
    from event_pipeline.store.tables import access_tokens

    live = sa.select(access_tokens.c.participant_id).where(
        access_tokens.c.participant_id == participants.c.id, access_tokens.c.status == "live"
    )
    stmt = (
        sa.select(participants.c.id)
        # Nobody left to hold one: undone (removed) or erased participants.
        .where(participants.c.event_id == event_id, participants.c.status.notin_((REMOVED, ERASED_STATUS)))
        .where(~sa.exists(live))
        # A participant replaced by its corrected address keeps its revoked token (steps/corrections).
        .where(participants.c.replaced_by.is_(None))
        .order_by(participants.c.id)
    )
    return [int(r[0]) for r in conn.execute(stmt)]


def count_participants(conn: sa.Connection, event_id: int) -> int:
    stmt = sa.select(sa.func.count()).select_from(participants).where(participants.c.event_id == event_id)
    return int(conn.execute(stmt).scalar_one())
