"""Erasing a person: their PII out of every place the project keeps it, counts and an audit line left.

A person is an address (normalised as participants are), in every event or in the ones given.
The places, in the order they are cleaned (the database last, so the audit line can say what
every other place gave up; a failure half-way leaves the rows in place and a second run finds
the rest, because "nothing to erase" means nothing in any place, not just no participant):

- stored uploads (``var/uploads/<id>/``): the person's rows taken out of ``parsed.parquet`` and
  ``valid.parquet``; ``original.*`` dropped (a CSV in cp949 or an XLSX with formulas cannot be
  rewritten faithfully), which the upload's ``copy_note`` records;
- error reports (``var/reports``): the person's lines taken out;
- held originals and files set aside (``var/inbox``, ``received``, ``processed``, ``rejected``):
  dropped when they hold the person (same reason as ``original.*``);
- the outbox: the person's own messages removed, attachments of the organiser's notices and
  digests rewritten without the person's lines (other messages stay byte for byte);
- the database: participant rows blanked (ids kept for the rows that point at them), tokens
  revoked, change history dropped, delivery errors cleared; then SQLite's free pages and WAL
  emptied.
"""

from __future__ import annotations

import base64
import csv
import email
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from event_pipeline import files
from event_pipeline.identity import normalise_email
from event_pipeline.intake import read_table
from event_pipeline.mail import outbox_rewrite
from event_pipeline.settings import Paths
from event_pipeline.steps.rows import PARSED, VALID
from event_pipeline.store import erasure as erasure_store

_HEADERS = BytesHeaderParser()


class NothingToErase(LookupError):
    """The address is in no place in scope."""


class ErasureBlocked(RuntimeError):
    """Something in flight (an import of the event, a dispatcher on the outbox) must end first."""


class UnknownEvent(LookupError):
    pass


@dataclass(frozen=True)
class Person:
    email_norm: str
    event_ids: frozenset[int] | None  # None: every event

    def applies(self, event_id: int | None) -> bool:
        return self.event_ids is None or event_id in self.event_ids

    def mentioned_in(self, text: str) -> bool:
        # normalise_email lower-cases ASCII only, so does str.lower on the ASCII part that matters.
        return self.email_norm in text.lower()


@dataclass
class Erasure:
    dry_run: bool
    event: str | None
    participants: int = 0
    places: dict[str, int] = field(default_factory=dict)
    erasure_id: int | None = None
    # SQLite: VACUUM ran and the WAL was truncated; False: a reader held old pages, run again.
    database_cleared: bool | None = None

    def add(self, key: str, n: int) -> None:
        self.places[key] = self.places.get(key, 0) + n

    @property
    def found(self) -> bool:
        return self.participants > 0 or any(self.places.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "event": self.event,
            "participants": self.participants,
            "removed": dict(sorted(self.places.items())),
            "erasure_id": self.erasure_id,
            "database_cleared": self.database_cleared,
        }


def erase_address(
    engine: Engine, paths: Paths, address: str, *, event_slug: str | None = None, dry_run: bool = False
) -> Erasure:
    """``event-pipeline erase --email``: the address in one event, or in all of them."""
    with engine.connect() as conn:
        slugs = erasure_store.event_ids_by_slug(conn)
    if event_slug is not None and event_slug not in slugs:
        raise UnknownEvent(f"no event with slug {event_slug!r}")
    events = frozenset({slugs[event_slug]}) if event_slug is not None else None
    return _erase(engine, paths, [Person(normalise_email(address), events)], event=event_slug, dry_run=dry_run)


def erase_participants(engine: Engine, paths: Paths, participant_ids: list[int], *, dry_run: bool = False) -> Erasure:
    """The Dagster job's way in: participants by id (run config is stored, so no address in it),
    each erased in its own event."""
    with engine.connect() as conn:
        rows = erasure_store.rows_by_id(conn, participant_ids)
    if not rows:
        raise NothingToErase("none of these participant ids is a participant that is not erased already")
    by_address: dict[str, set[int]] = {}
    for _id, event_id, email_norm in rows:
        by_address.setdefault(email_norm, set()).add(event_id)
    people = [Person(address, frozenset(events)) for address, events in by_address.items()]
    return _erase(engine, paths, people, event=None, dry_run=dry_run)


def _erase(engine: Engine, paths: Paths, people: list[Person], *, event: str | None, dry_run: bool) -> Erasure:
    scope = _scope(people)
    with engine.connect() as conn:
        busy = erasure_store.busy_uploads(conn, scope)
        if busy:
            first = busy[0]
            raise ErasureBlocked(
                f"upload {first.id} of event {first.event_slug} is being imported (status {first.status}); "
                "erase once it has finished, or it would load the person again"
            )
        rows = [r for p in people for r in erasure_store.person_rows(conn, p.email_norm, p.event_ids)]
        participant_ids = sorted({r.id for r in rows})
        deliveries = erasure_store.delivery_ids(conn, participant_ids) if participant_ids else set()
        uploads = erasure_store.upload_rows(conn, scope)
        slugs = {v: k for k, v in erasure_store.event_ids_by_slug(conn).items()}
    result = Erasure(dry_run=dry_run, event=event, participants=len(participant_ids))
    now = datetime.now(UTC)
    handled: set[Path] = set()
    report_rows: dict[Path, set[int]] = {}
    for upload in uploads:
        who = [p for p in people if p.applies(upload.event_id)]
        found, has_copy = _erase_from_upload(
            paths, str(upload.id), who, result, dry_run=dry_run, engine=engine, now=now
        )
        if upload.error_report_path:
            report_rows[Path(upload.error_report_path)] = found
        original = Path(upload.original_path) if upload.original_path else None
        if original is None or not original.is_file():
            continue
        # The stored copy says what the original holds; read the original itself only without one.
        handled.add(original)
        if found or (not has_copy and _file_mentions(original, who)):
            result.add("originals_dropped", 1)
            if not dry_run:
                original.unlink()
    for report in _report_files(paths, report_rows, all_events=scope is None):
        _erase_from_report(report, report_rows.get(report, set()), people, result, dry_run=dry_run)
    for path in _set_aside_files(paths, [slugs[e] for e in scope] if scope is not None else None):
        if path not in handled and _file_mentions(path, people):
            result.add("other_files_dropped", 1)
            if not dry_run:
                path.unlink()
    _erase_from_outbox(engine, paths, people, {str(d) for d in deliveries}, participant_ids, scope, result, dry_run)
    if participant_ids:
        with engine.begin() as conn:
            counts = (
                erasure_store.count_rows(conn, participant_ids)
                if dry_run
                else erasure_store.blank_participants(conn, participant_ids)
            )
    else:
        counts = {}
    for key, n in counts.items():
        if key != "participants":
            result.add(key, n)
    if not result.found:
        where = f"event {event}" if event else "any event" if scope is None else "these events"
        raise NothingToErase(f"nothing of that address is kept in {where}")
    if not dry_run:
        with engine.begin() as conn:
            result.erasure_id = erasure_store.record_erasure(
                conn,
                event_id=next(iter(scope)) if scope is not None and len(scope) == 1 else None,
                participants_count=result.participants,
                summary=result.places,
            )
        result.database_cleared = erasure_store.forget_deleted_bytes(engine)
    return result


def _scope(people: list[Person]) -> frozenset[int] | None:
    if any(p.event_ids is None for p in people):
        return None
    return frozenset(e for p in people for e in p.event_ids or ())


def _rows_of(frame: pd.DataFrame, people: list[Person]) -> set[int]:
    if "email" not in frame.columns or "source_row" not in frame.columns or not people:
        return set()
    cells = frame["email"].fillna("").astype(str)
    lowered = cells.str.lower()
    found: set[int] = set()
    for person in people:
        local = person.email_norm.rpartition("@")[0]
        # The cheap test first: only cells holding the local part are normalised.
        candidates = cells[lowered.str.contains(local, regex=False)]
        hits = [i for i, cell in candidates.items() if normalise_email(cell) == person.email_norm]
        found.update(int(r) for r in frame.loc[hits, "source_row"])
    return found


def _erase_from_upload(
    paths: Paths, upload_id: str, people: list[Person], result: Erasure, *, dry_run: bool, engine: Engine, now: datetime
) -> tuple[set[int], bool]:
    """The person's source rows in this upload (empty: not in it), and whether it has a parsed
    copy to tell; its copy cleaned."""
    folder = paths.upload_dir(upload_id)
    parsed, valid = folder / PARSED, folder / VALID
    if not people or not folder.is_dir():
        return set(), False
    frames = {p: pd.read_parquet(p) for p in (parsed, valid) if p.is_file()}
    found: set[int] = set()
    for frame in frames.values():
        found |= _rows_of(frame, people)
    originals = sorted(folder.glob("original.*"))
    if not found and (parsed.is_file() or not any(_file_mentions(o, people) for o in originals)):
        return set(), parsed.is_file()
    result.add("uploads_rewritten", 1)
    result.add("upload_rows_removed", len(found))
    result.add("originals_dropped", len(originals))
    if dry_run:
        return found, parsed.is_file()
    for path, frame in frames.items():
        kept = frame.loc[~frame["source_row"].isin(found)] if "source_row" in frame.columns else frame
        with files.atomic_writer(path) as fh:
            kept.to_parquet(fh, index=False)
    for original in originals:
        original.unlink()
    note = f"erasure {now:%Y-%m-%d}: {len(found)} row(s) taken out of the stored copy, original removed"
    with engine.begin() as conn:
        erasure_store.add_copy_note(conn, upload_id, note)
    return found, parsed.is_file()


def _report_files(paths: Paths, known: dict[Path, set[int]], *, all_events: bool) -> list[Path]:
    reports = {p for p in known if p.is_file()}
    if all_events and paths.reports.is_dir():
        reports |= {p for p in paths.reports.rglob("*") if p.is_file() and not p.is_symlink()}
    return sorted(reports)


def _erase_from_report(report: Path, rows: set[int], people: list[Person], result: Erasure, *, dry_run: bool) -> None:
    data = report.read_bytes()
    kept, removed = _filter_csv(data, people, rows)
    if not removed:
        return
    result.add("reports_rewritten", 1)
    result.add("report_lines_removed", removed)
    if not dry_run:
        files.write_private(report, kept)


def _filter_csv(data: bytes, people: list[Person], rows: set[int]) -> tuple[bytes, int]:
    """CSV without the lines that mention the person (or whose first cell is one of ``rows``,
    the report's row numbers); the same encoding (BOM kept) and line ends as the report writer's."""
    bom = data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig", errors="replace")
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    removed = 0
    for number, line in enumerate(csv.reader(io.StringIO(text, newline=""))):
        if number > 0 and (
            (line and line[0].isdigit() and int(line[0]) in rows)
            or any(p.mentioned_in(cell) for cell in line for p in people)
        ):
            removed += 1
            continue
        writer.writerow(line)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8"), removed


def _file_mentions(path: Path, people: list[Person]) -> bool:
    """Whether a file as an organiser sent it holds the person: read as the import reads it
    (cp949 CSV, XLSX, XLS), or, when it cannot be read so, its bytes searched."""
    if not people:
        return False
    try:
        frame = read_table(path).frame
    except Exception:  # not a participants file (a reason note, a broken file): plain bytes then
        text = path.read_bytes().decode("utf-8", errors="replace")
        return any(p.mentioned_in(text) for p in people)
    if _rows_of(frame, people):
        return True
    cells = (str(v) for column in frame.columns for v in frame[column].tolist())
    return any(p.mentioned_in(cell) for cell in cells for p in people)


def _set_aside_files(paths: Paths, slugs: list[str] | None) -> Iterator[Path]:
    """Files in the inbox and the holding folders, of these events (None: all of them)."""
    for root in (paths.inbox, paths.received, paths.processed, paths.rejected):
        folders = [root] if slugs is None else [root / s for s in slugs]
        for folder in folders:
            if folder.is_dir():
                yield from (p for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink())


def _erase_from_outbox(
    engine: Engine,
    paths: Paths,
    people: list[Person],
    deliveries: set[str],
    participant_ids: list[int],
    scope: frozenset[int] | None,
    result: Erasure,
    dry_run: bool,
) -> None:
    if not paths.outbox.is_dir():
        return
    ids = {str(i) for i in participant_ids}
    events = {str(e) for e in scope} if scope is not None else None

    def edit(data: bytes) -> bytes | None:
        headers = _HEADERS.parsebytes(_without_from_line(data))
        if (
            headers.get("X-Event-Pipeline-Participant-Id") in ids
            or headers.get("X-Event-Pipeline-Delivery-Id") in deliveries
        ):
            return None
        if events is not None and headers.get("X-Event-Pipeline-Event-Id") not in events:
            return data
        to = headers.get("To") or ""
        if to and any(normalise_email(to) == p.email_norm for p in people):
            return None
        if headers.get("X-Event-Pipeline-Participant-Id") is not None:
            return data  # a message to another participant
        return _edit_organiser_message(data, people)

    try:
        counts = outbox_rewrite.rewrite(engine, paths.outbox, edit, dry_run=dry_run)
    except outbox_rewrite.OutboxBusy as exc:
        raise ErasureBlocked(str(exc)) from None
    result.add("outbox_messages_removed", counts.messages_removed)
    result.add("outbox_messages_changed", counts.messages_changed)
    result.add("outbox_files_rewritten", counts.files_rewritten)


def _without_from_line(data: bytes) -> bytes:
    return data.split(b"\n", 1)[1] if data.startswith(b"From ") else data


def _edit_organiser_message(data: bytes, people: list[Person]) -> bytes | None:
    """A notice or digest to the organiser: CSV attachments without the person's lines; the whole
    message dropped if the person is still in it after that (a body quoting the address)."""
    message = email.message_from_bytes(_without_from_line(data))
    changed = False
    for part in _leaves(message):
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_type() == "text/csv":
            kept, removed = _filter_csv(payload, people, set())
            if removed:
                del part["Content-Transfer-Encoding"]
                part["Content-Transfer-Encoding"] = "base64"
                part.set_payload(base64.encodebytes(kept).decode("ascii"))
                payload, changed = kept, True
        if any(p.mentioned_in(payload.decode("utf-8", errors="replace")) for p in people):
            return None
    if not changed:
        return data
    from_line = data.split(b"\n", 1)[0] + b"\n" if data.startswith(b"From ") else b""
    body = message.as_bytes()
    return from_line + body + (b"" if body.endswith(b"\n") else b"\n") + b"\n"


def _leaves(message: Message) -> Iterable[Message]:
    return (part for part in message.walk() if not part.is_multipart())
