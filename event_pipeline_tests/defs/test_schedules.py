"""Reconciliation: what the sensor or a run missed gets a run; nothing gets two."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pytest

from event_pipeline import settings
from event_pipeline.defs.resources import default_resources
from event_pipeline.defs.schedules import reconcile_uploads_schedule, send_due_emails_schedule
from event_pipeline.steps import reconcile
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.store.uploads import update_upload
from event_pipeline_tests.support.participants import csv_bytes, sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event, run_import


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def _evaluate(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    ctx = dg.build_schedule_context(instance=instance, resources=default_resources())
    result = reconcile_uploads_schedule(ctx)
    return result if isinstance(result, list) else []


def test_unfinished_upload_and_missed_inbox_file_get_runs(
    instance: dg.DagsterInstance, var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENT_PIPELINE_SETTLE_SECONDS", "0")
    make_event()
    registered, _ = register_local_file(
        engine(),
        var_home,
        event_slug="devcon-2026",
        source=write_csv(var_home.home / "x" / "a.csv", sample(3, invalid=0, duplicates=0).rows),
    )
    # Registered long enough ago that its run, if the sensor requested one, would exist by now.
    update_upload(engine(), registered.id, created_at=datetime.now(UTC) - reconcile.GRACE * 2)
    missed = var_home.inbox / "devcon-2026" / "missed.csv"
    missed.parent.mkdir(parents=True, exist_ok=True)
    missed.write_bytes(csv_bytes(sample(4, invalid=0, duplicates=0, seed=9).rows))

    first = _evaluate(instance)  # sees the missed file for the first time: not settled yet
    assert [r.partition_key for r in first] == [registered.id]
    requests = _evaluate(instance)
    keys = sorted(r.partition_key for r in requests if r.partition_key)
    assert len(keys) == 2 and registered.id in keys
    assert not missed.exists()
    assert set(keys) <= set(instance.get_dynamic_partitions("uploads"))
    assert len({r.run_key for r in requests}) == 2
    # A registered upload with no run yet starts from the beginning.
    [resumed] = [r for r in requests if r.partition_key == registered.id]
    assert resumed.asset_selection is not None and resumed.asset_selection[0] == dg.AssetKey("upload_file")


def test_done_uploads_are_left_alone(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    _, result = run_import(instance, write_csv(var_home.home / "x" / "b.csv", sample(3, invalid=0, duplicates=0).rows))
    assert result.success
    ctx = dg.build_schedule_context(instance=instance, resources=default_resources())
    outcome = reconcile_uploads_schedule(ctx)
    assert isinstance(outcome, dg.SkipReason)


def test_upload_with_a_run_in_flight_is_not_requested_again(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    upload, _ = register_local_file(
        engine(),
        var_home,
        event_slug="devcon-2026",
        source=write_csv(var_home.home / "x" / "c.csv", sample(3, invalid=0, duplicates=0).rows),
    )
    instance.add_dynamic_partitions("uploads", [upload.id])
    update_upload(engine(), upload.id, created_at=datetime.now(UTC) - reconcile.GRACE * 2)
    from event_pipeline.defs import defs

    job = defs.resolve_job_def("import_upload")
    instance.create_run_for_job(
        job_def=job, tags={"dagster/partition": upload.id}, status=dg.DagsterRunStatus.NOT_STARTED
    )
    assert _evaluate(instance) == []


def test_mail_schedule_skips_when_nothing_is_due(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    engine()  # the schema, as `event-pipeline init` leaves it
    ctx = dg.build_schedule_context(instance=instance, resources=default_resources())
    assert isinstance(send_due_emails_schedule(ctx), dg.SkipReason)
