"""Watching and receiving the inbox, without Dagster: real files, a real database, times given."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.inbox import moves
from event_pipeline.steps import inbox
from event_pipeline.store import tables
from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.uploads import Upload
from event_pipeline_tests.support.participants import csv_bytes, sample
from event_pipeline_tests.support.pipeline import engine, make_event

QUIET = 10.0
SLUG = "devcon-2026"


def _drop(folder: Path, name: str | bytes, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(name, bytes):
        raw = os.fsencode(folder) + b"/" + name
        with open(raw, "wb") as fh:
            fh.write(data)
        return Path(os.fsdecode(raw))
    path = folder / name
    path.write_bytes(data)
    return path


def _settle(paths: settings.Paths, start: float = 1_000.0) -> list[inbox.InboxPass]:
    """Two looks at the inbox QUIET seconds apart: what a settled file needs."""
    return [
        inbox.watch_inbox(engine(), paths, now=start, quiet_s=QUIET),
        inbox.watch_inbox(engine(), paths, now=start + QUIET, quiet_s=QUIET),
    ]


def _uploads() -> list[Upload]:
    from event_pipeline.store.uploads import get_upload

    with engine().connect() as conn:
        ids = conn.execute(sa.select(tables.uploads.c.id).order_by(tables.uploads.c.seq)).scalars().all()
        return [u for u in (get_upload(conn, i) for i in ids) if u is not None]


def _rejected_reasons(paths: settings.Paths) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in paths.rejected.rglob("*.reason.txt"))


def test_a_file_is_received_once_it_has_not_changed_for_the_quiet_period(var_home: settings.Paths) -> None:
    make_event()
    path = _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(sample(3, invalid=0, duplicates=0).rows))
    first = inbox.watch_inbox(engine(), var_home, now=1_000.0, quiet_s=QUIET)
    too_soon = inbox.watch_inbox(engine(), var_home, now=1_000.0 + QUIET - 1, quiet_s=QUIET)
    assert first.registered == [] and too_soon.registered == [] and path.exists()
    settled = inbox.watch_inbox(engine(), var_home, now=1_000.0 + QUIET, quiet_s=QUIET)
    [got] = settled.registered
    assert got.file_name == "list.csv" and got.event_slug == SLUG
    assert not path.exists()  # out of the inbox at once: the name is free for a corrected file
    [upload] = _uploads()
    assert Path(upload.original_path or "").parent == var_home.received / SLUG
    assert upload.inbox_path == str(path)


def test_an_old_mtime_does_not_make_a_file_settled(var_home: settings.Paths) -> None:
    """Copy tools keep the source's mtime: a file still being copied can look hours old."""
    make_event()
    path = _drop(var_home.inbox / SLUG, "list.csv", b"name,email\n")
    os.utime(path, (0, 0))
    assert inbox.watch_inbox(engine(), var_home, now=time.time(), quiet_s=QUIET).registered == []
    assert path.exists()


def test_the_same_file_written_to_between_looks_starts_the_clock_again(var_home: settings.Paths) -> None:
    make_event()
    path = _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(sample(2, invalid=0, duplicates=0).rows[:1]))
    inbox.watch_inbox(engine(), var_home, now=1_000.0, quiet_s=QUIET)
    with path.open("ab") as fh:
        fh.write("김민준,late@example.com\r\n".encode())
    assert inbox.watch_inbox(engine(), var_home, now=1_000.0 + QUIET, quiet_s=QUIET).registered == []
    assert inbox.watch_inbox(engine(), var_home, now=1_000.0 + 2 * QUIET, quiet_s=QUIET).registered != []


def test_a_file_held_open_for_writing_is_not_read(var_home: settings.Paths) -> None:
    make_event()
    path = _drop(var_home.inbox / SLUG, "download.csv", b"name,email\n")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; f = open(sys.argv[1], 'ab'); print('open', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"open\n"
        assert [p.registered for p in _settle(var_home)] == [[], []]
        assert path.exists()
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
    later = inbox.watch_inbox(engine(), var_home, now=1_000.0 + 2 * QUIET, quiet_s=QUIET)
    assert len(later.registered) == 1


def test_symlinks_and_folders_are_set_aside_never_followed(var_home: settings.Paths, tmp_path: Path) -> None:
    make_event()
    outside = tmp_path / "outside.csv"
    outside.write_bytes(csv_bytes(sample(3, invalid=0, duplicates=0).rows))
    event_dir = var_home.inbox / SLUG
    event_dir.mkdir(parents=True)
    (event_dir / "linked.csv").symlink_to(outside)
    (event_dir / "passwd.csv").symlink_to("/etc/passwd")
    (event_dir / "sub").mkdir()
    # An event folder that is itself a link: nothing behind it may be touched.
    elsewhere = tmp_path / "elsewhere"
    _drop(elsewhere, "list.csv", b"name,email\n")
    (var_home.inbox / "linked-event").symlink_to(elsewhere, target_is_directory=True)

    passes = _settle(var_home)
    assert [p.registered for p in passes] == [[], []]
    assert _uploads() == []
    assert outside.exists() and (elsewhere / "list.csv").exists()
    assert not any(var_home.upload_store.rglob("*.csv"))
    assert list(event_dir.iterdir()) == [] and not (var_home.inbox / "linked-event").exists()
    reasons = _rejected_reasons(var_home)
    assert "symbolic link" in reasons
    with open("/etc/passwd", encoding="utf-8") as fh:
        first_line = fh.readline().strip()
    assert first_line and first_line not in reasons
    # The links themselves were moved, not their targets.
    assert sum(1 for p in var_home.rejected.rglob("*") if p.is_symlink()) == 3


def test_one_impossible_name_does_not_stop_the_others(var_home: settings.Paths) -> None:
    make_event()
    data = csv_bytes(sample(4, invalid=0, duplicates=0).rows)
    long_name = "가" * 83 + ".csv"  # 253 bytes: with any prefix it no longer fits a file name
    assert len(long_name.encode()) >= 244
    _drop(var_home.inbox / SLUG, long_name, data)
    _drop(var_home.inbox / SLUG, "normal.csv", csv_bytes(sample(5, invalid=0, duplicates=0, seed=1).rows))
    _drop(var_home.inbox / SLUG, b"odd\nname \xff.csv", csv_bytes(sample(2, invalid=0, duplicates=0, seed=2).rows))
    passes = _settle(var_home)
    assert passes[-1].problems == []
    names = sorted(r.file_name for r in passes[-1].registered)
    assert len(names) == 3 and "normal.csv" in names and long_name in names
    assert {u.original_name for u in _uploads()} == set(names)


def test_unknown_event_and_bad_manifest_are_rejected_with_reasons(var_home: settings.Paths) -> None:
    make_event()
    _drop(var_home.inbox / "no-such-event", "list.csv", b"name,email\n")
    _drop(var_home.inbox / SLUG, "list.csv", b"name,email\nA B,a@example.com\n")
    (var_home.inbox / SLUG / "list.csv.json").write_text('{"strict": "maybe"}', encoding="utf-8")
    passes = _settle(var_home)
    assert passes[-1].registered == []
    reasons = _rejected_reasons(var_home)
    assert "event-pipeline event add no-such-event" in reasons
    assert '"strict" must be true or false' in reasons


@pytest.mark.parametrize("folder", ["DevCon 2026", "devcon-2026\n"])
def test_a_folder_no_event_could_be_named_gets_the_slug_rule(var_home: settings.Paths, folder: str) -> None:
    make_event()
    _drop(var_home.inbox / folder, "list.csv", b"name,email\nA B,a@example.com\n")
    passes = _settle(var_home)
    assert passes[-1].registered == []
    reasons = _rejected_reasons(var_home)
    assert f"invalid event slug {folder!r}" in reasons
    assert "event add" not in reasons  # no advice to create an event the slug rule refuses


def test_identical_content_is_received_once(var_home: settings.Paths) -> None:
    make_event()
    data = csv_bytes(sample(3, invalid=0, duplicates=0).rows)
    _drop(var_home.inbox / SLUG, "a.csv", data)
    _drop(var_home.inbox / SLUG, "a (1).csv", data)
    passes = _settle(var_home)
    assert len(passes[-1].registered) == 1 and len(_uploads()) == 1
    notes = [p.read_text(encoding="utf-8") for p in var_home.processed.rglob("*.reason.txt")]
    assert len(notes) == 1 and "identical to upload" in notes[0]


def test_a_corrected_file_under_the_same_name_is_a_new_upload(var_home: settings.Paths) -> None:
    make_event()
    first = _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(sample(3, invalid=0, duplicates=0).rows))
    _settle(var_home)
    assert not first.exists()
    _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(sample(4, invalid=0, duplicates=0).rows))
    _settle(var_home, start=2_000.0)
    uploads = _uploads()
    assert [u.original_name for u in uploads] == ["list.csv", "list.csv"]
    assert uploads[0].seq < uploads[1].seq and uploads[0].sha256 != uploads[1].sha256


def test_a_pass_that_died_after_its_rename_is_adopted(var_home: settings.Paths) -> None:
    event = make_event()
    data = csv_bytes(sample(3, invalid=0, duplicates=0).rows)
    upload_id = f"{event.slug}-{__import__('hashlib').sha256(data).hexdigest()[:16]}"
    _drop(var_home.received / SLUG, f"{upload_id}.csv", data)
    later = time.time() + inbox.HELD_GRACE_S
    [adopted] = inbox.adopt_held_files(engine(), var_home, now=later)
    assert adopted.upload_id == upload_id
    assert inbox.adopt_held_files(engine(), var_home, now=later) == []


def test_a_file_a_live_pass_has_just_claimed_is_not_adopted_by_the_reconcile_schedule(
    var_home: settings.Paths,
) -> None:
    """Seen: reconcile registered the file the sensor had just renamed into received/, and both
    started a run; the second run's move renamed the already-processed original."""
    make_event()
    data = csv_bytes(sample(3, invalid=0, duplicates=0).rows)
    dropped = _drop(var_home.inbox / SLUG, "list.csv", data)
    # The sensor's pass, between its rename (the claim) and its database write:
    stem = uploads_store.upload_id_for(SLUG, hashlib.sha256(data).hexdigest())
    held = moves.hold(dropped, var_home.received / SLUG, stem=stem, suffix=".csv")
    assert inbox.adopt_held_files(engine(), var_home) == []
    assert _uploads() == [] and held.exists()


@pytest.mark.parametrize("ok", [True, False])
def test_finish_hands_the_original_back(var_home: settings.Paths, ok: bool) -> None:
    make_event()
    _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(sample(3, invalid=0, duplicates=0).rows))
    _settle(var_home)
    [upload] = _uploads()
    inbox.finish_upload_file(engine(), var_home, upload, ok=ok, reason=None if ok else "bad header")
    [after] = _uploads()
    moved = Path(after.original_path or "")
    assert moved.parent == (var_home.processed if ok else var_home.rejected) / SLUG and moved.exists()
    assert moved.name.endswith("list.csv")
    # Repeating it is harmless.
    inbox.finish_upload_file(engine(), var_home, after, ok=ok)
    assert _uploads()[0].original_path == str(moved)


WRITER = """
import sys, time
rows = sys.argv[2:]
with open(sys.argv[1], "ab", buffering=0) as fh:  # held open like a slow copy or a download
    fh.write("이름,이메일\\r\\n".encode())
    for row in rows:
        time.sleep(12)
        fh.write((row + "\\r\\n").encode())
"""


@pytest.mark.slow
def test_a_file_appended_every_12_seconds_for_a_minute_is_imported_once_and_whole(var_home: settings.Paths) -> None:
    make_event()
    rows = [f"참가자{i},slow{i}@example.com" for i in range(5)]
    path = var_home.inbox / SLUG / "slow.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), *rows])
    registered: list[inbox.Registered] = []
    deadline = time.monotonic() + 150
    try:
        # Look the way the sensor does (real clock, default quiet period) until the file is in.
        while not registered and time.monotonic() < deadline:
            seen = inbox.watch_inbox(engine(), var_home)
            if writer.poll() is None:
                assert seen.registered == [], "read while a writer still held the file open"
            registered += seen.registered
            time.sleep(1)  # the sensor's interval; what is waited for is the state above
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == 0
    [upload] = _uploads()
    assert [r.upload_id for r in registered] == [upload.id]
    held = Path(upload.original_path or "")
    assert held.read_bytes().decode().splitlines()[1:] == rows  # complete: every appended row
