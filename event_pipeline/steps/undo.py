"""`undo`: take one finished upload back, as far as later uploads allow.

Participants the upload created, whose every field still holds its seq, are removed (see
``store.changes`` for what "removed" leaves behind); ones a later upload also wrote stay. Fields
it changed in other participants go back to their before-images where the field still holds
the upload's seq; a field a later upload set stays that upload's. The plan is computed and
applied in one transaction under the event's load lock, so no load can slip between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store import changes
from event_pipeline.store import events as events_store
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.db import as_utc
from event_pipeline.store.participants import lock_event
from event_pipeline.store.tables import SEQ_FIELDS
from event_pipeline.store.uploads import Upload


class UndoRefused(Exception):
    """The upload cannot be undone; the message says why in one sentence."""


@dataclass(frozen=True)
class Removal:
    participant_id: int
    email: str  # for the organiser's terminal only (masked there); never metadata


@dataclass(frozen=True)
class KeptParticipant:
    """Created by the upload, but a later upload also set some of its fields."""

    participant_id: int
    later_upload_ids: tuple[str, ...]


@dataclass(frozen=True)
class Restore:
    participant_id: int
    fields: tuple[str, ...]


@dataclass(frozen=True)
class KeptField:
    participant_id: int
    field: str
    later_upload_id: str


@dataclass(frozen=True)
class SentMail:
    delivery_id: int
    participant_id: int
    kind: str
    email: str  # as in Removal


@dataclass
class UndoPlan:
    upload_id: str
    event_slug: str
    file_name: str
    removed: list[Removal] = field(default_factory=list)
    kept_participants: list[KeptParticipant] = field(default_factory=list)
    # Values going back (fields whose value this upload changed), as shown to the organiser.
    restored: list[Restore] = field(default_factory=list)
    # What is written: every participant with a field still at this upload's seq, including
    # fields where it only re-claimed an equal value (the seq goes back, the value is the same).
    images: list[tuple[int, changes.Image]] = field(default_factory=list)
    kept_fields: list[KeptField] = field(default_factory=list)
    tokens_to_revoke: int = 0
    mail_to_cancel: list[int] = field(default_factory=list)  # delivery ids, queued or awaiting retry
    mail_in_flight: list[int] = field(default_factory=list)  # `sending`: cancelled, may have gone out
    mail_sent: list[SentMail] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Counts only: what ``uploads.undo_summary`` and Dagster metadata hold."""
        return {
            "participants_removed": len(self.removed),
            "participants_kept": len(self.kept_participants),
            "participants_restored": len(self.restored),
            "fields_restored": sum(len(r.fields) for r in self.restored),
            "fields_kept": len(self.kept_fields),
            "tokens_revoked": self.tokens_to_revoke,
            "mail_cancelled": len(self.mail_to_cancel) + len(self.mail_in_flight),
            "mail_in_flight": len(self.mail_in_flight),
            "mail_already_sent": len(self.mail_sent),
        }

    def as_json(self) -> dict[str, object]:
        """Ids and counts, no personal data: for ``--json``."""
        return {
            "upload_id": self.upload_id,
            "event": self.event_slug,
            "counts": self.summary(),
            "removed": [r.participant_id for r in self.removed],
            "kept": [
                {"participant_id": k.participant_id, "later_uploads": list(k.later_upload_ids)}
                for k in self.kept_participants
            ],
            "restored": [{"participant_id": r.participant_id, "fields": list(r.fields)} for r in self.restored],
            "kept_fields": [
                {"participant_id": k.participant_id, "field": k.field, "later_upload": k.later_upload_id}
                for k in self.kept_fields
            ],
            "mail_cancelled": self.mail_to_cancel + self.mail_in_flight,
            "mail_in_flight": self.mail_in_flight,
            "mail_already_sent": [
                {"delivery_id": m.delivery_id, "participant_id": m.participant_id, "kind": m.kind}
                for m in self.mail_sent
            ],
        }


@dataclass(frozen=True)
class UndoResult:
    plan: UndoPlan
    applied: bool  # False for a dry run, or when the upload was undone already
    already_undone: bool
    undone_at: datetime | None


def plan_undo(engine: Engine, upload_id: str) -> UndoPlan:
    """What undoing the upload would do, changing nothing. Raises ``UndoRefused``."""
    with engine.connect() as conn:
        upload = _undoable(conn, upload_id)
        if upload.status == "undone":
            raise UndoRefused(f"upload {upload.id} was undone already; nothing to do")
        return _plan(conn, upload)


def undo_upload(engine: Engine, upload_id: str, *, dry_run: bool = False) -> UndoResult:
    """Undo the upload in one transaction under its event's lock. Undoing an upload that is
    already undone changes nothing and says so (``already_undone``): a retried command or job
    run is then harmless. Raises ``UndoRefused`` for an upload that cannot be undone."""
    if dry_run:
        with engine.connect() as conn:
            upload = _undoable(conn, upload_id)
            if upload.status == "undone":
                return _already(conn, upload)
            return UndoResult(_plan(conn, upload), applied=False, already_undone=False, undone_at=None)
    with engine.begin() as conn:
        upload = _undoable(conn, upload_id)
        lock_event(conn, upload.event_id)
        # Read again under the lock: a concurrent undo may have finished while we waited.
        upload = _undoable(conn, upload_id)
        if upload.status == "undone":
            return _already(conn, upload)
        plan = _plan(conn, upload)
        now = datetime.now(UTC)
        changes.remove_participants(conn, [r.participant_id for r in plan.removed], now=now)
        changes.restore_fields(conn, plan.images, seq=upload.seq, now=now)
        changes.mark_undone(conn, upload.id, summary=plan.summary(), now=now)
    return UndoResult(plan, applied=True, already_undone=False, undone_at=now)


def parse_summary(raw: str | None) -> dict[str, int] | None:
    """An undone upload's stored summary (``uploads.undo_summary``), for `status`."""
    return {str(k): int(v) for k, v in json.loads(raw).items()} if raw else None


def _undoable(conn: sa.Connection, upload_id: str) -> Upload:
    upload = uploads_store.get_upload(conn, upload_id)
    if upload is None:
        raise UndoRefused(f"no upload {upload_id!r}; `event-pipeline status` lists the recent ones")
    if upload.status in ("received", "running"):
        raise UndoRefused(
            f"upload {upload_id} is still being imported ({upload.status}); undo it once `event-pipeline status "
            f"{upload_id}` says completed"
        )
    if upload.status == "rejected":
        raise UndoRefused(f"upload {upload_id} was rejected, so none of its rows were loaded: there is nothing to undo")
    if upload.status == "failed":
        raise UndoRefused(
            f"upload {upload_id} failed before its import finished; undo takes back finished imports only: "
            f"`event-pipeline status {upload_id}` shows the failed step"
        )
    return upload


def _already(conn: sa.Connection, upload: Upload) -> UndoResult:
    undone_at = as_utc(upload.undone_at) if upload.undone_at is not None else None
    return UndoResult(_plan(conn, upload, empty=True), applied=False, already_undone=True, undone_at=undone_at)


def _plan(conn: sa.Connection, upload: Upload, *, empty: bool = False) -> UndoPlan:
    event_slug = events_store.get_event_by_id(conn, upload.event_id).slug
    plan = UndoPlan(upload_id=upload.id, event_slug=event_slug, file_name=upload.original_name)
    if empty:
        return plan
    created = changes.created_by(conn, upload.id)
    changed = changes.changed_by(conn, upload.id)
    later_seqs = {s for c in created for s in c.seqs.values()} | {s for c in changed for _, s in c.now.values()}
    upload_of = changes.upload_ids_by_seq(conn, later_seqs - {upload.seq})

    def by(seq: int) -> str:
        # A seq no upload row has: written outside the pipeline (or before provenance existed).
        return upload_of.get(seq, f"seq {seq}")

    for c in created:
        others = sorted({s for s in c.seqs.values() if s != upload.seq})
        if others:
            plan.kept_participants.append(KeptParticipant(c.participant_id, tuple(by(s) for s in others)))
        else:
            plan.removed.append(Removal(c.participant_id, c.email))
    for ch in changed:
        # Still this upload's: goes back. Changed by it, now a later upload's: stays, explained.
        mine = tuple(f for f in SEQ_FIELDS if ch.now[f][1] == upload.seq)
        if mine:
            plan.images.append((ch.participant_id, ch.before.fields))
        shown = tuple(f for f in mine if f in ch.before.changed)
        plan.kept_fields.extend(
            KeptField(ch.participant_id, f, by(ch.now[f][1]))
            for f in SEQ_FIELDS
            if f in ch.before.changed and ch.now[f][1] != upload.seq
        )
        if shown:
            plan.restored.append(Restore(ch.participant_id, shown))
    email_of = {r.participant_id: r.email for r in plan.removed}
    plan.tokens_to_revoke = len(changes.with_live_token_created(conn, upload.id) & email_of.keys())
    for mail in changes.mail_of_created(conn, upload.id):
        if mail.participant_id not in email_of:
            continue  # a kept participant's mail is left alone
        if mail.status == "sending":
            plan.mail_in_flight.append(mail.delivery_id)
        elif mail.status in changes.PENDING_MAIL:
            plan.mail_to_cancel.append(mail.delivery_id)
        elif mail.status == "sent":
            plan.mail_sent.append(
                SentMail(mail.delivery_id, mail.participant_id, mail.kind, email_of[mail.participant_id])
            )
    return plan
