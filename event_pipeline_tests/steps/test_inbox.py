"""Inbox file handling without Dagster: what is ready, receiving, moving out."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from event_pipeline import settings
from event_pipeline.steps import inbox
from event_pipeline_tests.support.participants import csv_bytes, sample
from event_pipeline_tests.support.pipeline import engine, make_event


def _file(path: Path, data: bytes = b"x", age_s: float = 60) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


@pytest.mark.parametrize(
    "name",
    [".~lock.a.csv#", "~$a.xlsx", "a.csv.part", "a.tmp", ".hidden", "a.csv.json", "a.csv.reason.txt", "a.crdownload"],
)
def test_ignored_names(name: str) -> None:
    assert inbox.is_ignored(name)


def test_scan_returns_settled_files_per_event(tmp_path: Path) -> None:
    _file(tmp_path / "ev-1" / "a.csv")
    _file(tmp_path / "ev-1" / "young.csv", age_s=0)
    _file(tmp_path / "ev-2" / "b.xlsx")
    _file(tmp_path / "loose.csv")  # not inside an event folder
    found = inbox.scan_inbox(tmp_path)
    assert [(f.event_slug, f.path.name) for f in found] == [("ev-1", "a.csv"), ("ev-2", "b.xlsx")]


def test_manifest_is_read_and_bad_manifest_is_explained(tmp_path: Path) -> None:
    data = _file(tmp_path / "a.csv")
    assert inbox.read_manifest(data) == inbox.Manifest()
    (tmp_path / "a.csv.json").write_text('{"strict": true, "sheet": "참가자"}', encoding="utf-8")
    assert inbox.read_manifest(data) == inbox.Manifest(strict=True, sheet="참가자")
    (tmp_path / "a.csv.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(ValueError, match=r"a\.csv\.json: manifest is not valid JSON"):
        inbox.read_manifest(data)


def test_receive_is_idempotent_per_content(var_home: settings.Paths, tmp_path: Path) -> None:
    make_event()
    data = csv_bytes(sample(4, invalid=0, duplicates=0).rows)
    first, created = inbox.receive_file(
        engine(), var_home, event_slug="devcon-2026", source=_file(tmp_path / "a.csv", data)
    )
    again, created_again = inbox.receive_file(
        engine(), var_home, event_slug="devcon-2026", source=_file(tmp_path / "renamed.csv", data)
    )
    assert created and not created_again and again.id == first.id
    assert Path(first.stored_path).read_bytes() == data
    assert first.id == f"devcon-2026-{inbox.sha256_file(tmp_path / 'a.csv')[:16]}"


def test_receive_for_unknown_event_names_the_fix(var_home: settings.Paths, tmp_path: Path) -> None:
    with pytest.raises(inbox.UnknownEventError, match="event-pipeline event add ghost"):
        inbox.receive_file(engine(), var_home, event_slug="ghost", source=_file(tmp_path / "a.csv"))


def test_move_out_keeps_both_names_and_writes_reason(var_home: settings.Paths) -> None:
    src = _file(var_home.inbox / "ev" / "a.csv", b"1")
    (var_home.inbox / "ev" / "a.csv.json").write_text("{}")
    first = inbox.move_out_of_inbox(var_home, event_slug="ev", source=src, ok=False, reason="bad header")
    assert first == var_home.rejected / "ev" / "a.csv"
    assert (var_home.rejected / "ev" / "a.csv.reason.txt").read_text() == "bad header\n"
    assert (var_home.rejected / "ev" / "a.csv.json").exists()
    src2 = _file(var_home.inbox / "ev" / "a.csv", b"2")
    second = inbox.move_out_of_inbox(var_home, event_slug="ev", source=src2, ok=False, reason="again")
    assert second is not None and second != first and second.read_bytes() == b"2"
    assert first.read_bytes() == b"1"
