"""Retention through the real pipeline: an upload that ended long ago loses its stored copy, its
original in processed/ and its report; a recent one and one still running keep theirs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.steps import inbox
from event_pipeline.steps.retention import apply_retention
from event_pipeline.store import tables
from event_pipeline_tests.support.participants import csv_bytes, sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event, run_import, run_upload

COUNTS = ("rows_in_file", "rejected_rows", "duplicates_in_file", "loaded_new", "updated", "unchanged", "status")


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def upload_row(upload_id: str) -> sa.Row[tuple[object, ...]]:
    with engine().connect() as conn:
        return conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload_id)).one()


def age(upload_id: str, days: int) -> None:
    then = datetime.now(UTC) - timedelta(days=days)
    with engine().begin() as conn:
        conn.execute(
            sa.update(tables.uploads).where(tables.uploads.c.id == upload_id).values(created_at=then, finished_at=then)
        )


def old_file(path: Path, days: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"name,email\n")
    then = (datetime.now(UTC) - timedelta(days=days)).timestamp()
    os.utime(path, (then, then))
    return path


@pytest.mark.usefixtures("database_url")
def test_old_copies_go_new_and_running_ones_stay(
    instance: dg.DagsterInstance, var_home: settings.Paths, tmp_path: Path
) -> None:
    make_event()
    # Old: through the inbox, so its original ends in processed/.
    (var_home.inbox / "devcon-2026").mkdir(parents=True)
    (var_home.inbox / "devcon-2026" / "old.csv").write_bytes(csv_bytes(sample(6, invalid=1, seed=1).rows))
    inbox.watch_inbox(engine(), var_home, now=1_000.0, quiet_s=1.0)
    (old_id,) = [r.upload_id for r in inbox.watch_inbox(engine(), var_home, now=1_001.0, quiet_s=1.0).registered]
    assert run_upload(instance, old_id).success
    new, result = run_import(instance, write_csv(tmp_path / "src" / "new.csv", sample(6, invalid=1, seed=2).rows))
    assert result.success
    running, _ = inbox.register_local_file(
        engine(),
        var_home,
        event_slug="devcon-2026",
        source=write_csv(tmp_path / "src" / "run.csv", sample(4, seed=3).rows),
    )
    age(old_id, 40)
    age(running.id, 40)
    with engine().begin() as conn:
        conn.execute(sa.update(tables.uploads).where(tables.uploads.c.id == running.id).values(status="running"))
    old = upload_row(old_id)
    assert old.original_path and Path(old.original_path).is_file() and "processed" in old.original_path
    assert old.error_report_path and Path(old.error_report_path).is_file()
    stray_old = old_file(var_home.rejected / "no-such-event" / "list.csv", 40)
    stray_new = old_file(var_home.rejected / "no-such-event" / "later.csv", 2)

    dry = apply_retention(engine(), var_home, days=30, dry_run=True)
    assert dry.uploads == [old_id] and (dry.upload_copies, dry.originals, dry.reports, dry.other_files) == (1, 1, 1, 1)
    assert var_home.upload_dir(old_id).is_dir() and stray_old.is_file()
    assert upload_row(old_id).copy_note is None

    done = apply_retention(engine(), var_home, days=30)

    assert done.uploads == [old_id]
    assert not var_home.upload_dir(old_id).exists()
    assert not Path(old.original_path).exists() and not Path(old.error_report_path).exists()
    after = upload_row(old_id)
    assert [getattr(after, c) for c in COUNTS] == [getattr(old, c) for c in COUNTS]
    assert after.copy_note and after.copy_note.startswith("retention ") and "after 30 days" in after.copy_note
    # The recent upload and the running one keep everything.
    assert (var_home.upload_dir(new.id) / "valid.parquet").is_file()
    assert Path(upload_row(new.id).error_report_path).is_file()
    assert var_home.upload_dir(running.id).is_dir() and upload_row(running.id).copy_note is None
    assert not stray_old.exists() and stray_new.is_file()
    # Nothing is left to do a second time.
    assert apply_retention(engine(), var_home, days=30).uploads == []


@pytest.mark.usefixtures("database_url")
def test_runs_step_outputs_go_after_the_same_time(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    """welcome_emails' chunk steps leave a folder per run in step_io/: without retention one more
    for every upload, for ever."""
    make_event()
    _, result = run_import(instance, write_csv(var_home.home / "in" / "a.csv", sample(4, seed=3).rows))
    assert result.success
    [recent] = [p for p in var_home.step_io.iterdir() if p.is_dir()]
    stale = var_home.step_io / "00000000-old-run"
    (stale / "welcome_emails.plan_welcome").mkdir(parents=True)
    then = (datetime.now(UTC) - timedelta(days=31)).timestamp()
    os.utime(stale, (then, then))

    dry = apply_retention(engine(), var_home, days=30, dry_run=True)
    assert dry.step_outputs == 1 and stale.exists()
    done = apply_retention(engine(), var_home, days=30)
    assert done.step_outputs == 1 and done.as_dict()["removed"]["step_outputs"] == 1  # type: ignore[index]
    assert not stale.exists() and recent.is_dir()


@pytest.mark.usefixtures("database_url")
def test_old_delivery_event_ids_are_forgotten() -> None:
    """The webhook's dedupe table would otherwise keep one row per SendGrid event for ever."""
    now = datetime.now(UTC)
    rows = [
        {"sg_event_id": f"ev-{i}", "delivery_id": None, "event": "processed", "occurred_at": t, "received_at": t}
        for i, t in enumerate([now - timedelta(days=40), now - timedelta(days=1)])
    ]
    with engine().begin() as conn:
        conn.execute(sa.insert(tables.delivery_events), rows)
    done = apply_retention(engine(), settings.paths(), days=30)
    assert done.delivery_events == 1
    with engine().connect() as conn:
        assert conn.execute(sa.select(tables.delivery_events.c.sg_event_id)).scalars().all() == ["ev-1"]
