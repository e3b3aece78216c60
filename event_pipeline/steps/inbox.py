"""The watched folder, as use cases: watch it, receive what has settled, hand each original
back to the organiser when its import ends.

Receiving is exactly once per file: a settled file is hashed and then renamed out of the inbox
into ``received/<event>/<upload id>`` in the same pass, so the inbox name is free again at
once (a corrected file saved under the same name is a new upload) and nothing that reads the
inbox later can see the same file twice. The rename is the claim: whoever renames first
registers the upload; a sensor tick and the reconcile schedule racing each other cannot both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from sqlalchemy.engine import Engine

from event_pipeline import files, identity
from event_pipeline.inbox import moves, scan, settle, writers
from event_pipeline.inbox.manifest import ManifestError, read_manifest
from event_pipeline.inbox.names import suffix_of
from event_pipeline.settings import Paths
from event_pipeline.store import events as events_store
from event_pipeline.store import sightings as sightings_store
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.uploads import Upload

log = logging.getLogger(__name__)

# One pass hashes at most this many files, so a flood of drops cannot hold a sensor tick past
# Dagster's evaluation timeout; the rest wait for the next tick.
MAX_FILES_PER_PASS = 50
TOP_LEVEL_REJECTS = "_inbox"


class UnknownEventError(LookupError):
    pass


@dataclass(frozen=True)
class Registered:
    """A new upload, registered and holding its original: it needs an import run."""

    upload_id: str
    event_slug: str
    file_name: str


@dataclass
class InboxPass:
    registered: list[Registered] = field(default_factory=list)
    # One line per file that was set aside (rejected, identical content): for the tick's log.
    set_aside: list[str] = field(default_factory=list)
    # The same files as records, for the sensor to show in the UI (a drop starts no run).
    dropped: list[Drop] = field(default_factory=list)
    waiting: int = 0
    problems: list[str] = field(default_factory=list)


def unknown_event(slug: str) -> UnknownEventError:
    # A folder name no event could have gets the slug rule, not advice to create an event by it.
    try:
        identity.validate_slug(slug)
    except ValueError as exc:
        return UnknownEventError(f"{exc}; no event can have this folder's name. Move the file into an event's folder.")
    return UnknownEventError(
        f"no event with slug {slug!r}. Create it first: "
        f"event-pipeline event add {slug} --name '...' --organiser-email you@example.com"
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def watch_inbox(
    engine: Engine,
    paths: Paths,
    *,
    now: float | None = None,
    quiet_s: float | None = None,
    max_files: int = MAX_FILES_PER_PASS,
) -> InboxPass:
    """One look at the inbox: set aside what can never be imported, remember what is still
    changing, receive what has settled. No single file can make the pass fail."""
    now = time.time() if now is None else now
    quiet_s = settle.settle_seconds() if quiet_s is None else quiet_s
    result = InboxPass()
    listing = scan.list_inbox(paths.inbox)
    result.problems.extend(listing.problems)
    for misfit in listing.misfits:
        folder = paths.rejected / (misfit.folder or TOP_LEVEL_REJECTS)
        _set_aside(result, misfit.path, folder, reason=f"{as_text(misfit.path.name)}: {misfit.reason}")

    with engine.connect() as conn:
        previous = {
            _from_key(key): settle.Sighting(fp, first_seen, n)
            for key, (fp, first_seen, n) in sightings_store.load_sightings(conn).items()
        }
    seen = settle.advance(previous, listing.candidates, now)
    ready = [c for c in listing.candidates if settle.is_settled(seen[str(c.path)], now, quiet_s)]
    busy = writers.open_for_writing([c.path for c in ready]) if ready else set()
    received: set[str] = set()
    for candidate in ready:
        if candidate.path in busy or len(received) >= max_files:
            continue
        try:
            if _receive(engine, paths, candidate, result):
                received.add(str(candidate.path))
        except Exception as exc:
            # Isolate the file: log the type and file name only (an exception text may quote content).
            result.problems.append(f"{scan.show(candidate.path)}: not received ({type(exc).__name__}: {_short(exc)})")
            log.warning("inbox file %s not received: %s", candidate.path, type(exc).__name__)
    result.waiting = len(listing.candidates) - len(received)
    sightings_store.save_sightings(
        engine, {_key(p): (s.fingerprint, s.first_seen, s.sightings) for p, s in seen.items() if p not in received}
    )
    return result


def _key(path: str) -> str:
    """A database key for any path: names may hold bytes that are not UTF-8 (kept reversibly)."""
    return quote(os.fsencode(path), safe="/")


def _from_key(key: str) -> str:
    return os.fsdecode(unquote_to_bytes(key))


def as_text(name: str) -> str:
    """A file name as text a database and a person can hold (undecodable bytes shown as U+FFFD)."""
    return os.fsencode(name).decode("utf-8", "replace")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if isinstance(exc, OSError | LookupError | ValueError) else ""


def _set_aside(result: InboxPass, path: Path, folder: Path, *, reason: str, name_hint: str | None = None) -> None:
    try:
        target = moves.move_aside(path, folder, name_hint=name_hint or as_text(path.name), reason=reason)
    except OSError as exc:
        result.problems.append(f"{scan.show(path)}: left in place, could not be moved ({exc.strerror}); {reason}")
        return
    result.set_aside.append(f"{scan.show(path.name)} -> {scan.show(target)}: {reason}")
    aside = moves.parse_aside_name(target.name)
    if aside is not None:
        event = None if folder.name == TOP_LEVEL_REJECTS else folder.name
        result.dropped.append(Drop(aside[1], event, reason, aside[0], target))


def _receive(engine: Engine, paths: Paths, c: scan.Candidate, result: InboxPass) -> bool:
    """Receive one settled file; True when it left the inbox (received or set aside)."""
    with engine.connect() as conn:
        event = events_store.get_event(conn, c.folder)
    if event is None:
        _set_aside(result, c.path, paths.rejected / c.folder, reason=str(unknown_event(c.folder)))
        return True
    try:
        manifest = read_manifest(c.path)
    except ManifestError as exc:
        _set_aside(result, c.path, paths.rejected / c.folder, reason=str(exc))
        return True
    try:
        sha = scan.hash_candidate(c)
    except scan.ChangedUnderfoot:
        return False  # written to since it was listed: not settled after all
    with engine.connect() as conn:
        existing = uploads_store.find_by_sha(conn, event.id, sha)
    if existing is not None:
        _set_aside_identical(result, paths, c.path, c.folder, existing)
        return True
    if not scan.still_same(c):
        return False
    upload_id = uploads_store.upload_id_for(event.slug, sha)
    suffix = suffix_of(c.name)
    held = moves.hold(c.path, paths.received / event.slug, stem=upload_id, suffix=suffix)
    upload, created = uploads_store.register_upload(
        engine,
        upload_id=upload_id,
        event_id=event.id,
        sha256=sha,
        original_name=as_text(c.name),
        stored_path=str(paths.upload_dir(upload_id) / f"original{suffix}"),
        size_bytes=c.size,
        inbox_path=as_text(str(c.path)),
        original_path=str(held),
        strict=manifest.strict,
    )
    if not created:  # the same content arrived by another door (`import`, a copy) just now
        _set_aside_identical(result, paths, held, event.slug, upload, name_hint=as_text(c.name))
        return True
    result.registered.append(Registered(upload_id=upload.id, event_slug=event.slug, file_name=upload.original_name))
    return True


def _set_aside_identical(
    result: InboxPass, paths: Paths, path: Path, folder: str, existing: Upload, *, name_hint: str | None = None
) -> None:
    ok = existing.status != "rejected"
    note = f"identical to upload {existing.id} ({existing.original_name}, {existing.status}); not imported again"
    if existing.status == "undone":
        # Its id (and so its Dagster partition and run key) is its content: the same bytes can only
        # name the upload that was taken back. Any edit or new export is a new upload.
        note += "; it was undone: to load these rows again, export or save the file anew and drop that"
    _set_aside(result, path, (paths.processed if ok else paths.rejected) / folder, reason=note, name_hint=name_hint)


# How long an original may sit in ``received/`` unregistered before it counts as left behind.
# A live pass registers it within milliseconds of its rename; adopting it sooner raced that
# pass (the reconcile schedule registered the sensor's file, and both started a run).
HELD_GRACE_S = 120.0


def adopt_held_files(engine: Engine, paths: Paths, *, now: float | None = None) -> list[Registered]:
    """Register originals left in ``received/`` by a pass that died between its rename and its
    database write: their name is the upload id, so the content tells the rest."""
    if not paths.received.is_dir():
        return []
    now = time.time() if now is None else now
    orphans: list[tuple[int, str, Path]] = []
    # Look first, register after: on SQLite a connection held open would block the writes.
    with engine.connect() as conn:
        for folder in sorted(p for p in paths.received.iterdir() if p.is_dir() and not p.is_symlink()):
            event = events_store.get_event(conn, folder.name)
            if event is None:
                continue
            for held in sorted(folder.iterdir()):
                upload_id = held.name.removesuffix(held.suffix)
                if _left_behind(held, now) and uploads_store.get_upload(conn, upload_id) is None:
                    orphans.append((event.id, event.slug, held))
    adopted: list[Registered] = []
    for event_id, slug, held in orphans:
        upload_id = held.name.removesuffix(held.suffix)
        sha = sha256_file(held)
        if uploads_store.upload_id_for(slug, sha) != upload_id:
            continue  # not one of ours
        upload, created = uploads_store.register_upload(
            engine,
            upload_id=upload_id,
            event_id=event_id,
            sha256=sha,
            original_name=held.name,
            stored_path=str(paths.upload_dir(upload_id) / f"original{held.suffix}"),
            size_bytes=held.stat().st_size,
            original_path=str(held),
        )
        if created:
            adopted.append(Registered(upload.id, slug, held.name))
    return adopted


def _left_behind(held: Path, now: float) -> bool:
    try:
        st = held.lstat()
    except OSError:
        return False
    # The rename into received/ sets ctime (mtime is the organiser's): the age since the claim.
    return stat.S_ISREG(st.st_mode) and now - st.st_ctime >= HELD_GRACE_S


def register_local_file(
    engine: Engine, paths: Paths, *, event_slug: str, source: Path, strict: bool | None = None
) -> tuple[Upload, bool]:
    """`event-pipeline import`: register a file given by path (it stays where it is; its
    content goes straight into the upload store). Returns (upload, created)."""
    with engine.connect() as conn:
        event = events_store.get_event(conn, event_slug)
    if event is None:
        raise unknown_event(event_slug)
    manifest = read_manifest(source)
    sha = sha256_file(source)
    upload_id = uploads_store.upload_id_for(event_slug, sha)
    stored = paths.upload_dir(upload_id) / f"original{suffix_of(source.name)}"
    if not stored.exists():
        files.copy_file_private(source, stored)
    return uploads_store.register_upload(
        engine,
        upload_id=upload_id,
        event_id=event.id,
        sha256=sha,
        original_name=source.name,
        stored_path=str(stored),
        size_bytes=stored.stat().st_size,
        strict=manifest.strict if strict is None else strict,
    )


class StoredCopyError(Exception):
    """The upload's bytes are gone or not the ones registered: re-running cannot help."""


def store_upload(upload: Upload) -> Path:
    """The ``upload_file`` step: put the held original into the upload store (0600), verified
    against the registered sha256. Idempotent: a verified copy is kept as it is."""
    stored = Path(upload.stored_path)
    if stored.is_file() and sha256_file(stored) == upload.sha256:
        return stored
    held = Path(upload.original_path) if upload.original_path else None
    if held is None or not held.is_file():
        raise StoredCopyError(f"{upload.original_name}: the received file is missing ({upload.id}); upload it again")
    files.copy_file_private(held, stored)
    if sha256_file(stored) != upload.sha256:
        stored.unlink(missing_ok=True)
        raise StoredCopyError(
            f"{upload.original_name}: the received file changed after it was registered ({upload.id}); upload it again"
        )
    return stored


def finish_upload_file(engine: Engine, paths: Paths, upload: Upload, *, ok: bool, reason: str | None = None) -> None:
    """Hand the original back to the organiser: ``processed/`` or ``rejected/`` with the reason
    beside it. Safe to repeat: an original already handed back stays where it is unless a
    later run changes the verdict (a rejected upload that a re-run completed)."""
    if not upload.original_path:
        return
    current = Path(upload.original_path)
    target_root = paths.processed if ok else paths.rejected
    if current.parent.parent == target_root or not current.exists():
        return
    folder = target_root / event_slug(engine, upload)
    moved = moves.move_aside(current, folder, name_hint=upload.original_name, reason=reason)
    old_reason = current.with_name(current.name + ".reason.txt")
    old_reason.unlink(missing_ok=True)
    uploads_store.update_upload(engine, upload.id, original_path=str(moved))


@dataclass(frozen=True)
class Drop:
    """A file that was set aside without starting an import (unknown event, identical content,
    something that can never be read): what the organiser finds beside it in its ``.reason.txt``."""

    name: str  # the file's name as dropped (made file-system safe)
    event: str | None  # the inbox folder it was dropped in; None for the inbox's top level
    reason: str
    at: datetime
    path: Path  # where the entry was moved to


# A reason file is a line or two; reading more would only show noise.
_REASON_CHARS = 1000


def recent_drops(paths: Paths, limit: int = 20, *, engine: Engine | None = None) -> list[Drop]:
    """The newest files set aside with a reason, newest first, read from the ``.reason.txt``
    files beside them in ``rejected/`` and ``processed/`` (the inbox keeps no other record).

    With ``engine``, originals of uploads whose import ran and failed are left out: their
    upload row already tells their story.
    """
    drops: list[Drop] = []
    for root in (paths.rejected, paths.processed):
        for folder in _subfolders(root):
            for reason_file in _reason_files(folder):
                entry_name = reason_file.name.removesuffix(moves.REASON_SUFFIX)
                parsed = moves.parse_aside_name(entry_name)
                if parsed is None:
                    continue
                at, name = parsed
                try:
                    with reason_file.open(encoding="utf-8", errors="replace") as fh:
                        reason = " ".join(fh.read(_REASON_CHARS).split())
                except OSError:
                    continue
                event = None if folder.name == TOP_LEVEL_REJECTS and root == paths.rejected else folder.name
                drops.append(Drop(name, event, reason, at, reason_file.with_name(entry_name)))
    drops.sort(key=lambda d: (d.at, d.path.name), reverse=True)
    if engine is not None and drops:
        with engine.connect() as conn:
            ran = uploads_store.original_paths_among(conn, [str(d.path) for d in drops])
        drops = [d for d in drops if str(d.path) not in ran]
    return drops[:limit]


def _subfolders(root: Path) -> list[Path]:
    try:
        return [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []


def _reason_files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.name.endswith(moves.REASON_SUFFIX) and not p.is_symlink()]
    except OSError:
        return []


def event_slug(engine: Engine, upload: Upload) -> str:
    with engine.connect() as conn:
        return events_store.get_event_by_id(conn, upload.event_id).slug
