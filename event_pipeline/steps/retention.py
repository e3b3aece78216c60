"""Retention: stored upload copies, held originals and error reports deleted some days after the
import ended (``EVENT_PIPELINE_RETAIN_UPLOADS_DAYS``, 30 by default). The uploads row keeps its
counts and says, in ``copy_note``, what retention removed and when. An upload still received or
running is never touched: its import needs those files."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from event_pipeline.inbox.moves import REASON_SUFFIX
from event_pipeline.settings import Paths
from event_pipeline.store import delivery_events as delivery_events_store
from event_pipeline.store import erasure as erasure_store
from event_pipeline.store.db import as_utc

ENDED_STATUSES = ("done", "rejected", "failed", "undone")


@dataclass
class Retention:
    dry_run: bool
    days: int
    cutoff: datetime
    uploads: list[str] = field(default_factory=list)
    upload_copies: int = 0
    originals: int = 0
    reports: int = 0
    other_files: int = 0
    # Runs' folders in step_io/ (welcome_emails' chunk ranges and counts; no personal data).
    step_outputs: int = 0
    # SendGrid event ids kept for deduplication (no personal data).
    delivery_events: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "days": self.days,
            "cutoff": self.cutoff.isoformat(),
            "uploads": len(self.uploads),
            "removed": {
                "upload_copies": self.upload_copies,
                "originals": self.originals,
                "reports": self.reports,
                "other_files": self.other_files,
                "step_outputs": self.step_outputs,
                "delivery_events": self.delivery_events,
            },
        }


def apply_retention(
    engine: Engine, paths: Paths, *, days: int, dry_run: bool = False, now: datetime | None = None
) -> Retention:
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=days)
    result = Retention(dry_run=dry_run, days=days, cutoff=cutoff)
    with engine.connect() as conn:
        rows = erasure_store.upload_rows(conn, None)
    in_use: set[Path] = set()
    for row in rows:
        ended = as_utc(row.finished_at or row.created_at)
        paths_of = [Path(p) for p in (row.original_path, row.error_report_path) if p]
        if row.status not in ENDED_STATUSES or ended >= cutoff:
            in_use.update(paths_of)
            in_use.add(paths.upload_dir(str(row.id)))
            continue
        removed: list[str] = []
        copy = paths.upload_dir(str(row.id))
        if copy.is_dir():
            result.upload_copies += 1
            removed.append("stored copy")
            if not dry_run:
                shutil.rmtree(copy)
        if row.original_path and _drop(Path(row.original_path), dry_run):
            result.originals += 1
            removed.append("original")
            _drop(_reason_file(Path(row.original_path)), dry_run)
        if row.error_report_path and _drop(Path(row.error_report_path), dry_run):
            result.reports += 1
            removed.append("error report")
        if removed:
            result.uploads.append(str(row.id))
            if not dry_run:
                with engine.begin() as conn:
                    note = f"retention {now:%Y-%m-%d}: {', '.join(removed)} removed after {days} days"
                    erasure_store.add_copy_note(conn, str(row.id), note)
    # Files set aside without an upload (unknown event, identical content, odd entries), and
    # reports nobody points at: by their age on disk.
    for root in (paths.processed, paths.rejected, paths.reports):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.is_symlink() or path in in_use or _reason_owner(path) in in_use:
                continue
            if datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff:
                result.other_files += 1
                if not dry_run:
                    path.unlink(missing_ok=True)
    if not dry_run:
        with engine.begin() as conn:
            result.delivery_events = delivery_events_store.prune(conn, received_before=cutoff)
    # What runs' steps handed each other: only a re-execution of that run reads it again.
    for run_dir in sorted(paths.step_io.iterdir()) if paths.step_io.is_dir() else []:
        old = datetime.fromtimestamp(run_dir.lstat().st_mtime, UTC) < cutoff
        if old and run_dir.is_dir() and not run_dir.is_symlink():
            result.step_outputs += 1
            if not dry_run:
                shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _reason_file(original: Path) -> Path:
    return original.with_name(original.name + REASON_SUFFIX)


def _reason_owner(path: Path) -> Path | None:
    return path.with_name(path.name[: -len(REASON_SUFFIX)]) if path.name.endswith(REASON_SUFFIX) else None


def _drop(path: Path, dry_run: bool) -> bool:
    if not path.is_file():
        return False
    if not dry_run:
        path.unlink(missing_ok=True)
    return True
