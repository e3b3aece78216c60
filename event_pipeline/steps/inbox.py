"""The watched folder: which files are ready, receiving them into the upload store, and
moving the originals to processed/ or rejected/ when their import ends."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from event_pipeline.settings import Paths
from event_pipeline.store import events as events_store
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.uploads import Upload

# Editors and browsers write these while a file is still being saved or downloaded.
IGNORED_PATTERNS = (".*", "~$*", "*.part", "*.tmp", "*.crdownload", "*.download", "*.json", "*.reason.txt")
STABLE_SECONDS = 3.0
MANIFEST_SUFFIX = ".json"


@dataclass(frozen=True)
class InboxFile:
    event_slug: str
    path: Path
    size: int
    mtime: float

    @property
    def fingerprint(self) -> str:
        return f"{self.size}:{self.mtime_ns}"

    @property
    def mtime_ns(self) -> int:
        return int(self.mtime * 1e9)


@dataclass(frozen=True)
class Manifest:
    strict: bool = False
    sheet: str | None = None


class UnknownEventError(LookupError):
    pass


def is_ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED_PATTERNS)


def scan_inbox(inbox: Path, *, now: float | None = None, stable_seconds: float = STABLE_SECONDS) -> list[InboxFile]:
    """Files directly under ``inbox/<event-slug>/`` that look complete (not hidden/temp, not just written)."""
    now = time.time() if now is None else now
    found: list[InboxFile] = []
    if not inbox.is_dir():
        return found
    for event_dir in sorted(p for p in inbox.iterdir() if p.is_dir() and not is_ignored(p.name)):
        for entry in sorted(event_dir.iterdir()):
            if not entry.is_file() or is_ignored(entry.name):
                continue
            st = entry.stat()
            if now - st.st_mtime < stable_seconds:
                continue
            found.append(InboxFile(event_dir.name, entry, st.st_size, st.st_mtime))
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> Manifest:
    """Optional sidecar ``<file>.json``: {"strict": true, "sheet": "Sheet2"}."""
    side = path.with_name(path.name + MANIFEST_SUFFIX)
    if not side.is_file():
        return Manifest()
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{side.name}: manifest is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{side.name}: manifest must be a JSON object")
    sheet = data.get("sheet")
    return Manifest(strict=bool(data.get("strict", False)), sheet=str(sheet) if sheet else None)


def copy_atomic(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def receive_file(
    engine: Engine,
    paths: Paths,
    *,
    event_slug: str,
    source: Path,
    inbox_path: Path | None = None,
    strict: bool | None = None,
) -> tuple[Upload, bool]:
    """Hash ``source``, keep a copy in the upload store and register it. Returns (upload, created).

    Identical content for the same event maps to the same upload, whatever the file name.
    """
    with engine.connect() as conn:
        event = events_store.get_event(conn, event_slug)
    if event is None:
        raise UnknownEventError(
            f"no event with slug {event_slug!r}. Create it first: "
            f"event-pipeline event add {event_slug} --name '...' --organiser-email you@example.com"
        )
    manifest = read_manifest(source)
    sha = sha256_file(source)
    upload_id = uploads_store.upload_id_for(event_slug, sha)
    suffix = "".join(source.suffixes[-1:]).lower()[:10]
    stored = paths.upload_dir(upload_id) / f"original{suffix}"
    if not stored.exists():
        copy_atomic(source, stored)
    return uploads_store.register_upload(
        engine,
        upload_id=upload_id,
        event_id=event.id,
        sha256=sha,
        original_name=source.name,
        stored_path=str(stored),
        size_bytes=stored.stat().st_size,
        inbox_path=str(inbox_path) if inbox_path else None,
        strict=manifest.strict if strict is None else strict,
    )


def _unique_target(folder: Path, name: str) -> Path:
    target = folder / name
    if not target.exists():
        return target
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return folder / f"{stamp}-{name}"


def move_out_of_inbox(
    paths: Paths, *, event_slug: str, source: Path, ok: bool, reason: str | None = None
) -> Path | None:
    """Move an inbox file (and its manifest) to processed/ or rejected/ with a reason file beside it."""
    if not source.exists():
        return None
    folder = (paths.processed if ok else paths.rejected) / event_slug
    folder.mkdir(parents=True, exist_ok=True)
    target = _unique_target(folder, source.name)
    os.replace(source, target)
    manifest = source.with_name(source.name + MANIFEST_SUFFIX)
    if manifest.exists():
        os.replace(manifest, target.with_name(target.name + MANIFEST_SUFFIX))
    stale_reason = source.with_name(source.name + ".reason.txt")
    stale_reason.unlink(missing_ok=True)
    if reason:
        target.with_name(target.name + ".reason.txt").write_text(reason.rstrip() + "\n", encoding="utf-8")
    return target


def finish_upload_file(engine: Engine, paths: Paths, upload: Upload, *, ok: bool, reason: str | None = None) -> None:
    """Move the upload's original out of wherever it is now (inbox, or rejected/ after an earlier
    failed attempt that a later run recovered) and remember the new place."""
    if not upload.inbox_path:
        return
    current = Path(upload.inbox_path)
    with engine.connect() as conn:
        event = events_store.get_event_by_id(conn, upload.event_id)
    target = move_out_of_inbox(paths, event_slug=event.slug, source=current, ok=ok, reason=reason)
    if target is not None:
        if ok:
            target.with_name(target.name + ".reason.txt").unlink(missing_ok=True)
        uploads_store.update_upload(engine, upload.id, inbox_path=str(target))
