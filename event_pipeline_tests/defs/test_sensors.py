"""The inbox sensor, the failure sensor and the reconcile schedule, evaluated against a real
instance, real files and the real import job."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import defs
from event_pipeline.defs.resources import AccessTokensResource, default_resources
from event_pipeline.defs.schedules import reconcile_requests, upload_history
from event_pipeline.defs.sensors import FILE_TAG, import_failure_sensor, inbox_sensor
from event_pipeline.mail.outbox import outbox_messages
from event_pipeline.steps import reconcile
from event_pipeline.store import tables
from event_pipeline_tests.support.participants import csv_bytes, sample
from event_pipeline_tests.support.pipeline import (
    ASSET_CHAIN,
    add_partition,
    engine,
    failure_sensor_context,
    make_event,
    run_upload,
)

SLUG = "devcon-2026"


@pytest.fixture
def instance(var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    # Settled after two ticks whatever time passes between them; the quiet period itself is
    # tested in steps/test_inbox.py with explicit times.
    monkeypatch.setenv("EVENT_PIPELINE_SETTLE_SECONDS", "0")
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def _drop(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


@dataclass
class Tick:
    run_requests: list[dg.RunRequest]
    added_partitions: list[str]

    def partition(self, i: int = 0) -> str:
        return str(self.run_requests[i].partition_key)


def _tick(instance: dg.DagsterInstance) -> Tick:
    ctx = dg.build_sensor_context(instance=instance, resources=default_resources())
    result = inbox_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    added = [
        key
        for req in result.dynamic_partitions_requests or []
        if isinstance(req, dg.AddDynamicPartitionsRequest)
        for key in req.partition_keys
    ]
    return Tick(list(result.run_requests or []), added)


def _ticks(instance: dg.DagsterInstance, n: int = 2) -> Tick:
    requests: list[dg.RunRequest] = []
    added: list[str] = []
    for _ in range(n):
        t = _tick(instance)
        requests += t.run_requests
        added += t.added_partitions
    return Tick(requests, added)


def _participant_names() -> dict[str, str]:
    with engine().connect() as conn:
        rows = conn.execute(sa.select(tables.participants.c.email_norm, tables.participants.c.name)).all()
    return {r.email_norm: r.name for r in rows}


def _status(upload_id: str) -> str:
    with engine().connect() as conn:
        return str(conn.execute(sa.select(tables.uploads.c.status).where(tables.uploads.c.id == upload_id)).scalar())


def test_one_run_per_content_tagged_with_the_file_name(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    data = csv_bytes(sample(5, invalid=0, duplicates=0).rows)
    _drop(var_home.inbox / SLUG, "참가자 명단.csv", data)
    _drop(var_home.inbox / SLUG, "copy.csv", data)
    tick = _ticks(instance)
    [request] = tick.run_requests
    assert request.run_key == request.partition_key and tick.added_partitions == [request.partition_key]
    assert request.tags[FILE_TAG] in ("참가자 명단.csv", "copy.csv")
    assert _ticks(instance).run_requests == []


def test_a_255_byte_name_next_to_a_normal_file_stops_nothing(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    long_name = "가" * 83 + "ab.csv"
    assert len(long_name.encode()) == 255  # the most a Linux file name can be
    _drop(var_home.inbox / SLUG, long_name, csv_bytes(sample(3, invalid=0, duplicates=0, seed=1).rows))
    _drop(var_home.inbox / SLUG, "normal.csv", csv_bytes(sample(4, invalid=0, duplicates=0).rows))
    assert _tick(instance).run_requests == []  # first sighting
    settled = _tick(instance)  # the very next tick receives both
    files = sorted(r.tags[FILE_TAG] for r in settled.run_requests)
    assert "normal.csv" in files and len(files) == 2
    for request in settled.run_requests:
        assert run_upload(instance, str(request.partition_key)).success


def test_a_corrected_file_saved_during_a_run_is_imported_after_it(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    s = sample(4, invalid=0, duplicates=0)
    first = _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(s.rows))
    [a] = _ticks(instance).run_requests
    # The organiser fixes a name and saves under the same name while the first import runs.
    corrected = [row[:] for row in s.rows]
    corrected[0][0] = "정정된"
    _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(corrected))
    assert run_upload(instance, str(a.partition_key)).success
    assert first.read_bytes() == csv_bytes(corrected)  # the run did not file the corrected copy away
    [b] = _ticks(instance).run_requests
    assert b.partition_key != a.partition_key
    assert run_upload(instance, str(b.partition_key)).success
    assert _participant_names()[s.rows[0][1]] == "정정된"
    assert _status(str(a.partition_key)) == _status(str(b.partition_key)) == "done"
    assert len(list((var_home.processed / SLUG).glob("*list.csv"))) == 2


def test_a_failed_old_upload_resumed_after_a_newer_one_keeps_the_newer_values(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    s = sample(4, invalid=0, duplicates=0)
    _drop(var_home.inbox / SLUG, "list.csv", csv_bytes(s.rows))
    [old] = _ticks(instance).run_requests
    broken = {**default_resources(), "tokens": AccessTokensResource(signing_key="too-short")}
    failed = run_upload(
        instance,
        str(old.partition_key),
        definitions=dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=broken),
    )
    assert not failed.success  # loaded, then stopped at access_tokens (a configuration error)

    corrected = [row[:] for row in s.rows]
    corrected[1][0] = "새이름"
    _drop(var_home.inbox / SLUG, "list-fixed.csv", csv_bytes(corrected))
    [new] = _ticks(instance).run_requests
    assert run_upload(instance, str(new.partition_key)).success
    assert _participant_names()[s.rows[1][1]] == "새이름"

    later = datetime.now(UTC) + timedelta(hours=1)
    [resume] = reconcile.plan(engine(), ASSET_CHAIN, lambda uid: upload_history(instance, uid), now=later)
    assert resume.upload_id == old.partition_key
    assert resume.assets == ASSET_CHAIN[ASSET_CHAIN.index("access_tokens") :]  # not replayed from the start
    done = run_upload(instance, resume.upload_id, asset_selection=[dg.AssetKey(a) for a in resume.assets])
    assert done.success
    assert _participant_names()[s.rows[1][1]] == "새이름"
    # Even a full re-run of the old upload cannot overwrite the newer correction.
    assert run_upload(instance, resume.upload_id).success
    assert _participant_names()[s.rows[1][1]] == "새이름"
    # ... and its report says why, on the row the organiser sees (header is row 1).
    with engine().connect() as conn:
        report = conn.execute(
            sa.select(tables.uploads.c.error_report_path).where(tables.uploads.c.id == resume.upload_id)
        ).scalar_one()
    with open(report, encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert [(ln["row"], ln["column"], ln["severity"]) for ln in lines] == [("3", "name", "warning")]
    assert f"the newer upload {new.partition_key} already set this field" in lines[0]["reason"]


def test_reconcile_uses_the_same_settling_rule(
    instance: dg.DagsterInstance, var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_event()
    monkeypatch.setenv("EVENT_PIPELINE_SETTLE_SECONDS", "3600")
    _drop(var_home.inbox / SLUG, "half-copied.csv", b"name,email\n")
    context = dg.build_schedule_context(instance=instance)
    for _ in range(3):
        assert reconcile_requests(context, **_schedule_resources()) == []
    assert (var_home.inbox / SLUG / "half-copied.csv").exists()


def _schedule_resources() -> dict[str, Any]:
    resources = default_resources()
    return {"db": resources["db"], "storage": resources["storage"]}


def _failed_run_context(instance: dg.DagsterInstance, upload_id: str, **tags: str) -> dg.RunFailureSensorContext:
    """Run the import of ``upload_id`` (which must fail) and build the failure sensor's context for it."""
    add_partition(instance, upload_id)
    return failure_sensor_context(instance, run_upload(instance, upload_id, tags=tags))


def test_failure_sensor_moves_file_and_tells_organiser(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    _drop(var_home.inbox / SLUG, "broken.csv", b"\x89PNG\r\n\x1a\n" + bytes(300))
    upload_id = _ticks(instance).partition()
    ctx = _failed_run_context(instance, upload_id)
    import_failure_sensor(ctx)
    [reason_file] = (var_home.rejected / SLUG).glob("*broken.csv.reason.txt")
    reason = reason_file.read_text(encoding="utf-8")
    assert "broken.csv" in reason and "PNG" in reason
    assert not list((var_home.received / SLUG).iterdir())
    assert len(list(outbox_messages(var_home.outbox, "import_failed"))) == 1
    # Once per upload, however often the sensor sees failed runs of it.
    import_failure_sensor(ctx)
    assert len(list(outbox_messages(var_home.outbox, "import_failed"))) == 1
    assert _status(upload_id) == "rejected"


def test_failure_sensor_skips_runs_that_will_be_retried(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    _drop(var_home.inbox / SLUG, "broken.csv", b"\x89PNG\r\n\x1a\n" + bytes(300))
    ctx = _failed_run_context(instance, _ticks(instance).partition(), **{"dagster/will_retry": "true"})
    import_failure_sensor(ctx)
    assert len(list((var_home.received / SLUG).iterdir())) == 1
    assert not list(outbox_messages(var_home.outbox, "import_failed"))
