"""The production shape: the Dagster instance itself on PostgreSQL (deploy/dagster.yaml, read from
$DAGSTER_HOME with DAGSTER_PG_URL from the environment) and the participants on PostgreSQL too,
running the demo upload end to end the way `event-pipeline import` does."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import defs
from event_pipeline.defs.assets import upload_assets
from event_pipeline.defs.partitions import UPLOADS
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.steps.rows import invariant_holds
from event_pipeline.store import tables
from event_pipeline.store.events import create_event
from event_pipeline.store.uploads import get_upload
from event_pipeline_tests.support.pipeline import engine as migrated_app_engine
from event_pipeline_tests.support.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]
DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
SAMPLE = REPO / "event_pipeline" / "sample" / "participants_demo.csv"


@pytest.fixture
def dagster_db(postgres_server: PostgresServer) -> str:
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    postgres_server.create_database(name)
    return name


@pytest.fixture
def pg_instance(
    var_home: settings.Paths, postgres_server: PostgresServer, dagster_db: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_server.dagster_pg_url(dagster_db))
    monkeypatch.setenv("DATABASE_URL", postgres_server.create_database())
    shutil.copyfile(DEPLOY_YAML, var_home.dagster_home / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(var_home.dagster_home))
    try:
        yield instance
    finally:
        instance.dispose()


def test_deploy_yaml_configures_queue_limits_and_retries(pg_instance: dg.DagsterInstance) -> None:
    assert type(pg_instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(pg_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(pg_instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert type(pg_instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert pg_instance.run_retries_enabled
    assert pg_instance.run_retries_max_retries == 2
    assert not pg_instance.run_retries_retry_on_asset_or_op_failure
    assert pg_instance.run_monitoring_enabled

    concurrency = pg_instance.get_concurrency_config()
    queue = concurrency.run_queue_config
    assert queue is not None
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in list(
        queue.tag_concurrency_limits
    )
    assert concurrency.pool_config.default_pool_limit is not None
    assert concurrency.pool_config.default_pool_limit >= 1


def test_demo_upload_runs_with_dagster_and_participants_on_postgres(
    pg_instance: dg.DagsterInstance, var_home: settings.Paths, postgres_server: PostgresServer, dagster_db: str
) -> None:
    engine = migrated_app_engine()
    assert engine.dialect.name == "postgresql"
    create_event(engine, slug="demo-2026", name="데모 컨퍼런스 2026", organiser_email="organiser@example.com")
    upload, created = register_local_file(engine, var_home, event_slug="demo-2026", source=SAMPLE)
    assert created
    pg_instance.add_dynamic_partitions(UPLOADS, [upload.id])

    result = defs.resolve_job_def("import_upload").execute_in_process(instance=pg_instance, partition_key=upload.id)

    assert result.success
    with engine.connect() as conn:
        done = get_upload(conn, upload.id)
        n_participants = conn.execute(sa.select(sa.func.count()).select_from(tables.participants)).scalar_one()
        n_tokens = conn.execute(sa.select(sa.func.count()).select_from(tables.access_tokens)).scalar_one()
    assert done is not None and done.status == "done"
    assert (done.rows_in_file, done.loaded_new, done.duplicates_in_file, done.rejected_rows) == (20, 16, 1, 3)
    assert (done.updated, done.unchanged) == (0, 0)
    assert invariant_holds(done)[0]
    assert n_participants == n_tokens == 16

    # What Dagster knows, read back through the instance...
    runs = pg_instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": upload.id}))
    assert [r.dagster_run.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
    assert pg_instance.get_dynamic_partitions(UPLOADS) == [upload.id]
    for asset in upload_assets:
        records = pg_instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[upload.id]), limit=5
        ).records
        assert len(records) == 1, asset.key

    # ...and straight from the Postgres tables, so it is not some other storage answering.
    with psycopg.connect(postgres_server.dsn(dagster_db)) as conn:
        run_ids = [r[0] for r in conn.execute("SELECT run_id FROM runs")]
        materialized = conn.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND partition = %s",
            (upload.id,),
        ).fetchone()
        partitions = [r[0] for r in conn.execute("SELECT partition FROM dynamic_partitions")]
    assert run_ids == [result.run_id]
    assert materialized is not None and materialized[0] == len(upload_assets)
    assert partitions == [upload.id]
    assert not (var_home.dagster_home / "history").exists()  # no SQLite run storage on the side


def test_a_pool_limit_set_on_the_instance_is_stored_in_postgres(
    pg_instance: dg.DagsterInstance, postgres_server: PostgresServer, dagster_db: str
) -> None:
    # What `dagster instance concurrency set mail 4` does.
    pg_instance.event_log_storage.set_concurrency_slots("mail", 4)

    assert pg_instance.event_log_storage.get_concurrency_info("mail").slot_count == 4
    with psycopg.connect(postgres_server.dsn(dagster_db)) as conn:
        row = conn.execute("SELECT \"limit\" FROM concurrency_limits WHERE concurrency_key = 'mail'").fetchone()
    assert row == (4,)
