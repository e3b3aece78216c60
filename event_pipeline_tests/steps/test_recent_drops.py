"""Files the inbox set aside without an import, read back from the reasons it left beside them."""

from __future__ import annotations

from pathlib import Path

from event_pipeline import settings
from event_pipeline.steps import inbox
from event_pipeline.store.uploads import list_uploads
from event_pipeline_tests.support.participants import csv_bytes, sample
from event_pipeline_tests.support.pipeline import engine, make_event

SLUG = "devcon-2026"


def _drop(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def _settle(paths: settings.Paths, start: float) -> None:
    inbox.watch_inbox(engine(), paths, now=start, quiet_s=0)
    inbox.watch_inbox(engine(), paths, now=start + 1, quiet_s=0)


def test_drops_that_started_no_run_are_listed_with_their_reasons(var_home: settings.Paths) -> None:
    make_event()
    data = csv_bytes(sample(3, invalid=0, duplicates=0).rows)
    _drop(var_home.inbox / SLUG, "first.csv", data)
    _settle(var_home, 1_000.0)
    with engine().connect() as conn:
        [upload] = list_uploads(conn)
    _drop(var_home.inbox / SLUG, "copy.csv", data)
    _drop(var_home.inbox / "no-such-event", "lost.csv", data)
    (var_home.inbox / "stray-at-top.csv").write_bytes(data)
    _settle(var_home, 2_000.0)

    drops = {d.name: d for d in inbox.recent_drops(var_home, 10, engine=engine())}
    assert set(drops) == {"copy.csv", "lost.csv", "stray-at-top.csv"}
    assert drops["copy.csv"].event == SLUG and f"identical to upload {upload.id}" in drops["copy.csv"].reason
    assert (
        drops["lost.csv"].event == "no-such-event"
        and "event-pipeline event add no-such-event" in drops["lost.csv"].reason
    )
    assert drops["stray-at-top.csv"].event is None
    for drop in drops.values():
        assert drop.path.exists() and drop.at.tzinfo is not None

    # Newest first, and the limit holds.
    listed = inbox.recent_drops(var_home, 2)
    assert len(listed) == 2 and listed[0].at >= listed[1].at


def test_a_failed_imports_original_is_not_a_drop_when_the_database_says_so(var_home: settings.Paths) -> None:
    make_event()
    _drop(var_home.inbox / SLUG, "broken.csv", csv_bytes(sample(3, invalid=0, duplicates=0).rows))
    _settle(var_home, 1_000.0)
    with engine().connect() as conn:
        [upload] = list_uploads(conn)
    inbox.finish_upload_file(engine(), var_home, upload, ok=False, reason="the import run failed")

    [from_files] = inbox.recent_drops(var_home, 10)
    assert from_files.name == "broken.csv" and from_files.reason == "the import run failed"
    assert inbox.recent_drops(var_home, 10, engine=engine()) == [], "its upload row tells its story"
