"""Running the real import job in process, the way `event-pipeline import` does."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.defs import defs
from event_pipeline.defs.partitions import UPLOADS
from event_pipeline.defs.resources import default_resources
from event_pipeline.defs.sensors import import_failure_sensor
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.store.db import make_engine
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.migrate import app_engine, upgrade
from event_pipeline.store.uploads import Upload

# The lineage of one upload, as docs/architecture.md draws it.
ASSET_CHAIN = [
    "upload_file",
    "parsed_rows",
    "validated_rows",
    "participants",
    "access_tokens",
    "qr_codes",
    "welcome_emails",
    "import_report",
]

_migrated: set[str] = set()


def engine() -> Engine:
    """The app's engine for the test's database, migrated once as `event-pipeline init` would."""
    url = settings.database_url()
    if url not in _migrated:
        upgrade(make_engine(url))
        _migrated.add(url)
    return app_engine(url)


def make_event(slug: str = "devcon-2026", *, language: str = "ko") -> Event:
    return create_event(
        engine(), slug=slug, name="Dev Conference", organiser_email="organiser@example.com", language=language
    )


def add_partition(instance: dg.DagsterInstance, upload_id: str) -> None:
    if not instance.has_dynamic_partition(UPLOADS, upload_id):
        instance.add_dynamic_partitions(UPLOADS, [upload_id])


def run_upload(
    instance: dg.DagsterInstance, upload_id: str, *, definitions: dg.Definitions = defs, **kwargs: object
) -> dg.ExecuteInProcessResult:
    add_partition(instance, upload_id)
    job = definitions.resolve_job_def("import_upload")
    tags = {"dagster/partition": upload_id, **kwargs.pop("tags", {})}  # type: ignore[dict-item]
    return job.execute_in_process(
        instance=instance,
        partition_key=upload_id,
        raise_on_error=False,
        tags=tags,
        **kwargs,  # type: ignore[arg-type]
    )


def run_import(
    instance: dg.DagsterInstance,
    source: Path,
    *,
    event_slug: str = "devcon-2026",
    strict: bool = False,
    definitions: dg.Definitions = defs,
) -> tuple[Upload, dg.ExecuteInProcessResult]:
    upload, _ = register_local_file(
        engine(), settings.paths(), event_slug=event_slug, source=source, strict=strict or None
    )
    return upload, run_upload(instance, upload.id, definitions=definitions)


def failure_sensor_context(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> dg.RunFailureSensorContext:
    """What ``import_failure_sensor`` is handed for a run that failed, as the daemon hands it."""
    assert not result.success
    failure_event = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    return dg.build_run_status_sensor_context(
        sensor_name=import_failure_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure_event,
        resources=default_resources(),
    ).for_run_failure()
