"""The inbox sensor and the failure sensor, evaluated against a real instance and real files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import defs
from event_pipeline.defs.resources import default_resources
from event_pipeline.defs.sensors import import_failure_sensor, inbox_sensor
from event_pipeline.store import tables
from event_pipeline_tests.support.participants import csv_bytes, sample
from event_pipeline_tests.support.pipeline import engine, make_event, run_import


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def _drop(folder: Path, name: str, data: bytes, *, age_s: float = 60.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    past = time.time() - age_s
    os.utime(path, (past, past))
    return path


@dataclass
class Tick:
    run_requests: list[dg.RunRequest]
    added_partitions: list[str]
    cursor: str | None

    def partition(self, i: int = 0) -> str:
        return str(self.run_requests[i].partition_key)


def _tick(instance: dg.DagsterInstance, cursor: str | None = None) -> Tick:
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=default_resources())
    result = inbox_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    added = [
        key
        for req in result.dynamic_partitions_requests or []
        if isinstance(req, dg.AddDynamicPartitionsRequest)
        for key in req.partition_keys
    ]
    return Tick(list(result.run_requests or []), added, result.cursor)


def test_same_content_twice_gives_one_run_and_a_note(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    data = csv_bytes(sample(5, invalid=0, duplicates=0).rows)
    inbox = var_home.inbox / "devcon-2026"
    _drop(inbox, "a.csv", data)
    _drop(inbox, "b-copy.csv", data)
    result = _tick(instance)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key == request.partition_key and result.partition().startswith("devcon-2026-")
    assert result.added_partitions == [request.partition_key]
    assert not (inbox / "b-copy.csv").exists()
    note = (var_home.processed / "devcon-2026" / "b-copy.csv.reason.txt").read_text(encoding="utf-8")
    assert "identical to upload" in note

    # Next tick: the file is handed over already, so nothing new and no re-hash.
    again = _tick(instance, result.cursor)
    assert again.run_requests == []
    assert json.loads(again.cursor or "{}")


def test_changed_file_under_same_name_runs_again(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    inbox = var_home.inbox / "devcon-2026"
    path = _drop(inbox, "list.csv", csv_bytes(sample(5, invalid=0, duplicates=0).rows))
    first = _tick(instance)
    upload_id = first.partition()
    instance.add_dynamic_partitions("uploads", [upload_id])
    run_import(instance, path)  # the run moves the file to processed/
    assert not path.exists()
    _drop(inbox, "list.csv", csv_bytes(sample(6, invalid=0, duplicates=0).rows))
    second = _tick(instance, first.cursor)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key != upload_id


def test_ignores_temp_hidden_lock_and_fresh_files(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    inbox = var_home.inbox / "devcon-2026"
    data = csv_bytes(sample(3, invalid=0, duplicates=0).rows)
    for name in (".~lock.list.csv#", "~$list.xlsx", "list.csv.part", "list.tmp", ".hidden.csv"):
        _drop(inbox, name, data)
    fresh = _drop(inbox, "fresh.csv", data, age_s=0)
    result = _tick(instance)
    assert result.run_requests == []
    # A file seen unchanged on two ticks is settled even if it is young.
    time.sleep(0.05)
    os.utime(fresh, (time.time() - 5, time.time() - 5))
    first = _tick(instance, result.cursor)
    second = _tick(instance, first.cursor)
    assert len(first.run_requests) + len(second.run_requests) == 1


def test_unknown_event_is_rejected_with_instructions(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    _drop(var_home.inbox / "no-such-event", "list.csv", b"name,email\nA B,a@example.com\n")
    result = _tick(instance)
    assert result.run_requests == []
    reason = (var_home.rejected / "no-such-event" / "list.csv.reason.txt").read_text(encoding="utf-8")
    assert "no event with slug 'no-such-event'" in reason and "event-pipeline event add no-such-event" in reason


def _failed_run_context(instance: dg.DagsterInstance, upload_id: str, **tags: str) -> dg.RunFailureSensorContext:
    """Run the import of ``upload_id`` (which must fail) and build the failure sensor's context for it."""
    instance.add_dynamic_partitions("uploads", [upload_id])
    result = defs.resolve_job_def("import_upload").execute_in_process(
        instance=instance, partition_key=upload_id, raise_on_error=False, tags={"dagster/partition": upload_id, **tags}
    )
    assert not result.success
    failure_event = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    return dg.build_run_status_sensor_context(
        sensor_name=import_failure_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure_event,
        resources=default_resources(),
    ).for_run_failure()


def test_failure_sensor_moves_file_and_tells_organiser(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    path = _drop(var_home.inbox / "devcon-2026", "broken.csv", b"\x89PNG\r\n\x1a\n" + bytes(300))
    upload_id = _tick(instance).partition()
    ctx = _failed_run_context(instance, upload_id)
    import_failure_sensor(ctx)
    assert not path.exists()
    reason = (var_home.rejected / "devcon-2026" / "broken.csv.reason.txt").read_text(encoding="utf-8")
    assert "broken.csv" in reason and "PNG" in reason
    mails = list(var_home.outbox.glob("import_failed-*.eml"))
    assert len(mails) == 1
    # Once per upload, however often the sensor sees failed runs of it.
    import_failure_sensor(ctx)
    assert len(list(var_home.outbox.glob("import_failed-*.eml"))) == 1
    with engine().connect() as conn:
        status = conn.execute(sa.select(tables.uploads.c.status).where(tables.uploads.c.id == upload_id)).scalar()
    assert status == "rejected"


def test_failure_sensor_skips_runs_that_will_be_retried(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    path = _drop(var_home.inbox / "devcon-2026", "broken.csv", b"\x89PNG\r\n\x1a\n" + bytes(300))
    ctx = _failed_run_context(instance, _tick(instance).partition(), **{"dagster/will_retry": "true"})
    import_failure_sensor(ctx)
    assert path.exists()
    assert not list(var_home.outbox.glob("import_failed-*.eml"))
