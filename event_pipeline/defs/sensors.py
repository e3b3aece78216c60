"""Sensors: the inbox watcher, and the organiser's notice when an import run fails for good."""

import os

import dagster as dg

from event_pipeline.defs.assets import upload_file
from event_pipeline.defs.jobs import import_job
from event_pipeline.defs.metadata import drop_metadata
from event_pipeline.defs.partitions import uploads_partitions
from event_pipeline.defs.resources import (
    AccessTokensResource,
    DatabaseResource,
    MailerResource,
    StorageResource,
    mail_context,
)
from event_pipeline.steps import imports, inbox

SENSOR_INTERVAL_S = int(os.environ.get("EVENT_PIPELINE_SENSOR_INTERVAL", "5"))
FILE_TAG = "event_pipeline/file"
EVENT_TAG = "event_pipeline/event"


def tag_value(text: str) -> str:
    """Run tags are one line of bounded length; file names may be neither."""
    return " ".join(text.split())[:200]


def upload_tags(event_slug: str, file_name: str) -> dict[str, str]:
    """What every run of an upload carries, however it was started: the UI shows file names."""
    return {EVENT_TAG: event_slug, FILE_TAG: tag_value(file_name)}


def run_requests(registered: list[inbox.Registered], **tags: str) -> list[dg.RunRequest]:
    return [
        dg.RunRequest(
            run_key=r.upload_id,
            partition_key=r.upload_id,
            tags={**upload_tags(r.event_slug, r.file_name), **tags},
        )
        for r in registered
    ]


def add_partitions_request(registered: list[inbox.Registered]) -> list[dg.AddDynamicPartitionsRequest]:
    # Each upload is registered by exactly one pass, so the keys are distinct.
    return [uploads_partitions.build_add_request([r.upload_id for r in registered])] if registered else []


@dg.sensor(
    job=import_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches var/inbox/<event-slug>/ (never following links) and starts one import per "
    "distinct file content once the file has settled.",
)
def inbox_sensor(
    context: dg.SensorEvaluationContext, db: DatabaseResource, storage: StorageResource
) -> dg.SensorResult:
    seen = inbox.watch_inbox(db.engine(), storage.paths())
    for line in seen.set_aside:
        context.log.info(f"set aside: {line}")
    for line in seen.problems:
        context.log.warning(line)
    skip = None
    if not seen.registered:
        skip = f"{seen.waiting} file(s) not settled yet" if seen.waiting else "no new files in the inbox"
        if seen.dropped:
            skip = f"{len(seen.dropped)} file(s) set aside without a run (see upload_file's events); {skip}"
    return dg.SensorResult(
        run_requests=run_requests(seen.registered),
        dynamic_partitions_requests=add_partitions_request(seen.registered),
        asset_events=drop_observations(seen.dropped),
        skip_reason=skip,
    )


def drop_observations(drops: list[inbox.Drop]) -> list[dg.AssetObservation]:
    """A drop that starts no run is otherwise only a ``.reason.txt`` on disk: record it on
    ``upload_file``, where an organiser looks for a file. Unpartitioned, since it has no upload id."""
    return [
        dg.AssetObservation(
            asset_key=upload_file.key, description=f"set aside, no run: {d.reason}", metadata=drop_metadata(d)
        )
        for d in drops
    ]


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        error = data.error if data else None
        # A step that used up its retries fails as Dagster's retry request: name what it retried.
        while error is not None and error.cls_name == "RetryRequestedFromPolicy" and error.cause is not None:
            error = error.cause
        user_failure = data.user_failure_data if data else None
        if user_failure is not None and user_failure.description:
            return user_failure.description
        step = event.step_key or "a step"
        return f"step {step} failed ({error.cls_name if error else 'error'}); it will be reconciled automatically"
    return "the import run failed before its first step"


@dg.run_failure_sensor(
    monitored_jobs=[import_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    description="Moves the file to rejected/ with the reason and tells the organiser, once a run has failed for good.",
)
def import_failure_sensor(
    context: dg.RunFailureSensorContext,
    db: DatabaseResource,
    storage: StorageResource,
    mailer: MailerResource,
    tokens: AccessTokensResource,
) -> None:
    run = context.dagster_run
    if run.tags.get("dagster/will_retry") == "true":
        return  # the daemon retries this run; the organiser hears only about the final outcome
    upload_id = run.tags.get("dagster/partition")
    if upload_id:
        imports.fail(
            db.engine(), storage.paths(), mail_context(mailer, tokens), upload_id, reason=_failure_reason(context)
        )
