"""Corrected addresses get the ticket, once.

Two ways a correction arrives: a later upload brings the same person (same phone) under a new
address, which ``after_load`` turns into a replacement right after the participants load (the new
participant is then mailed by the ordinary welcome step); or the organiser's correction file
(``old_email,new_email``), which changes the address in place and queues the ticket as a resend.

Matching by external id is not possible yet: files carry no recognised id column (an id column
lands in ``participants.extra`` under whatever header the file gave it), so the phone is the key.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from event_pipeline.identity import email_verdict, mask_email, normalise_email
from event_pipeline.intake.decode import decode_text
from event_pipeline.intake.errors import IntakeError
from event_pipeline.steps import messages
from event_pipeline.steps.resend import ResendResult, find_event, send_queued
from event_pipeline.store import corrections as corrections_store
from event_pipeline.store import resends as resends_store
from event_pipeline.store.corrections import Replacement
from event_pipeline.store.resends import Queued, Refused

COLUMNS = ("old_email", "new_email")
MAX_FILE_BYTES = 10 * 1024 * 1024


def after_load(engine: Engine, upload_id: str) -> list[Replacement]:
    """Called once the upload's participants are loaded (before tokens and welcome mail)."""
    return corrections_store.replace_bounced_by_phone(engine, upload_id)


class CorrectionFileError(ValueError):
    """The correction file as a whole cannot be used; the sentence says why (no cell quoted)."""


@dataclass(frozen=True)
class RowOutcome:
    row: int  # the file's row number (header = 1)
    participant_id: int | None
    outcome: str  # corrected | refused
    code: str = ""
    reason: str = ""
    delivery_id: int | None = None  # the ticket queued for the corrected address


@dataclass(frozen=True)
class CorrectionResult:
    event: str
    dry_run: bool
    rows: list[RowOutcome] = field(default_factory=list)
    sent: int = 0
    mail_paused: str | None = None

    @property
    def corrected(self) -> int:
        return sum(1 for r in self.rows if r.outcome == "corrected")

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "dry_run": self.dry_run,
            "corrected": self.corrected,
            "refused": sum(1 for r in self.rows if r.outcome == "refused"),
            "sent": self.sent,
            "mail_paused": self.mail_paused,
            "rows": [r.__dict__ for r in self.rows],
        }


def read_corrections(path: Path) -> list[tuple[int, str, str]]:
    """(row number, old, new) for every non-empty row of a CSV with ``old_email,new_email``."""
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise CorrectionFileError(f"{path.name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    try:
        text = decode_text(data).text
    except IntakeError as exc:
        raise CorrectionFileError(f"{path.name}: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if not all(c in header for c in COLUMNS):
        raise CorrectionFileError(f"{path.name} needs the columns {','.join(COLUMNS)} in its first row")
    at = [header.index(c) for c in COLUMNS]
    found: list[tuple[int, str, str]] = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        old, new = (cells[i].strip() if i < len(cells) else "" for i in at)
        found.append((number, old, new))
    return found


def correct(
    engine: Engine,
    ctx: messages.MailContext | None,
    *,
    event_slug: str,
    path: Path,
    dry_run: bool = False,
    tickets: bool = True,
) -> CorrectionResult:
    """Apply a correction file: each row in its own transaction that changes the address and
    queues the ticket (resend rules: never a second copy of one in flight), then send the tickets
    (``ctx``; None: queue only, the mail schedule sends them). Without ``tickets`` only the
    addresses change: `resend --bounced` mails them later, in one go."""
    event = find_event(engine, event_slug)
    entries = read_corrections(path)
    outcomes: list[RowOutcome] = []
    queued: list[Queued] = []
    seen: set[str] = set()
    for number, old, new in entries:
        new_norm, why_invalid = email_verdict(new)
        if new_norm is None:
            outcomes.append(
                RowOutcome(number, None, "refused", "invalid_address", f"new address is invalid: {why_invalid}")
            )
            continue
        old_norm = normalise_email(old)
        if old_norm in seen or new_norm in seen:
            outcomes.append(
                RowOutcome(number, None, "refused", "repeated", "an earlier row of this file names this address")
            )
            continue
        seen |= {old_norm, new_norm}
        if old_norm == new_norm:
            outcomes.append(RowOutcome(number, None, "refused", "unchanged", "old and new address are the same"))
            continue
        outcome = _correct_row(engine, event.id, old_norm, new_norm, dry_run=dry_run, ticket=tickets)
        if isinstance(outcome, Refused):
            pid = outcome.participant_id or None
            outcomes.append(RowOutcome(number, pid, "refused", outcome.code, outcome.reason))
            continue
        pid, ticket = outcome
        if ticket is None:
            outcomes.append(RowOutcome(number, pid, "corrected"))
        elif isinstance(ticket, Queued):
            queued.append(ticket)
            outcomes.append(RowOutcome(number, pid, "corrected", delivery_id=None if dry_run else ticket.delivery_id))
        else:
            # The address is corrected either way; mail on its way renders the new address.
            outcomes.append(RowOutcome(number, pid, "corrected", ticket.code, ticket.reason))
    result = CorrectionResult(event=event.slug, dry_run=dry_run, rows=outcomes)
    if dry_run or ctx is None or not queued:
        return result
    sent = send_queued(engine, ctx, event, ResendResult(event=event.slug, dry_run=False, queued=queued))
    return CorrectionResult(event.slug, False, outcomes, sent=sent.sent, mail_paused=sent.mail_paused)


def _correct_row(
    engine: Engine, event_id: int, old: str, new: str, *, dry_run: bool, ticket: bool
) -> Refused | tuple[int, Queued | Refused | None]:
    with engine.connect() as conn:
        trans = conn.begin()
        changed = corrections_store.correct_address(conn, event_id, old, new)
        if isinstance(changed, Refused):
            trans.rollback()
            if changed.code == "unknown_old_address":
                return Refused(0, changed.code, f"no participant of this event has the address {mask_email(old)}")
            return changed
        queued = resends_store.queue_ticket(conn, event_id, changed, upload_id=None) if ticket else None
        if dry_run:
            trans.rollback()
        else:
            trans.commit()
    return changed, queued
