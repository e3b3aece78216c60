"""Sensors: the inbox watcher, and the organiser's notice when an import run fails for good."""

import json
import os
import time
from dataclasses import dataclass, field

import dagster as dg
from sqlalchemy.engine import Engine

from event_pipeline.defs.assets import mail_context
from event_pipeline.defs.jobs import import_job
from event_pipeline.defs.partitions import UPLOADS, uploads_partitions
from event_pipeline.defs.resources import (
    AccessTokensResource,
    DatabaseResource,
    MailerResource,
    StorageResource,
)
from event_pipeline.settings import Paths
from event_pipeline.steps import inbox, messages
from event_pipeline.store import uploads as uploads_store

SENSOR_INTERVAL_S = int(os.environ.get("EVENT_PIPELINE_SENSOR_INTERVAL", "5"))
# A file untouched this long is complete even if this is the first tick that sees it.
SETTLED_AGE_S = 30.0


@dataclass
class Pickup:
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    new_partitions: list[str] = field(default_factory=list)
    cursor: dict[str, list[str]] = field(default_factory=dict)
    moved: int = 0


def pick_up_inbox(
    engine: Engine,
    paths: Paths,
    instance: dg.DagsterInstance,
    previous: dict[str, list[str]],
    *,
    require_settled: bool,
) -> Pickup:
    """Receive settled inbox files and request one run per new upload.

    ``previous`` maps path -> [fingerprint, upload_id] from the last tick: a file must look the
    same on two ticks (or be old) before it is read, and a file already handed to a run is not
    hashed again while that run works.
    """
    out = Pickup()
    now = time.time()
    for f in inbox.scan_inbox(paths.inbox, now=now):
        key = str(f.path)
        seen = previous.get(key)
        if seen and seen[0] == f.fingerprint and len(seen) > 1 and seen[1]:
            out.cursor[key] = seen  # handed over already; the run will move it
            continue
        settled = (seen is not None and seen[0] == f.fingerprint) or (now - f.mtime) >= SETTLED_AGE_S
        if require_settled and not settled:
            out.cursor[key] = [f.fingerprint, ""]
            continue
        try:
            upload, _created = inbox.receive_file(
                engine, paths, event_slug=f.event_slug, source=f.path, inbox_path=f.path
            )
        except (inbox.UnknownEventError, ValueError) as exc:
            inbox.move_out_of_inbox(paths, event_slug=f.event_slug, source=f.path, ok=False, reason=str(exc))
            out.moved += 1
            continue
        if upload.inbox_path != key:
            # Same content as an upload we already have: no second run, and say so beside the file.
            ok = upload.status != "rejected"
            note = f"identical to upload {upload.id} ({upload.original_name}, {upload.status}); not imported again"
            inbox.move_out_of_inbox(paths, event_slug=f.event_slug, source=f.path, ok=ok, reason=note)
            out.moved += 1
            continue
        if upload.status in uploads_store.TERMINAL_STATUSES:
            continue
        if not instance.has_dynamic_partition(UPLOADS, upload.id) and upload.id not in out.new_partitions:
            out.new_partitions.append(upload.id)
        out.run_requests.append(
            dg.RunRequest(run_key=upload.id, partition_key=upload.id, tags={"event_pipeline/event": f.event_slug})
        )
        out.cursor[key] = [f.fingerprint, upload.id]
    return out


@dg.sensor(
    job=import_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches var/inbox/<event-slug>/ and starts one import per distinct file content.",
)
def inbox_sensor(
    context: dg.SensorEvaluationContext, db: DatabaseResource, storage: StorageResource
) -> dg.SensorResult:
    previous = json.loads(context.cursor) if context.cursor else {}
    pickup = pick_up_inbox(db.engine(), storage.paths(), context.instance, previous, require_settled=True)
    return dg.SensorResult(
        run_requests=pickup.run_requests,
        dynamic_partitions_requests=[uploads_partitions.build_add_request(pickup.new_partitions)]
        if pickup.new_partitions
        else [],
        cursor=json.dumps(pickup.cursor, sort_keys=True),
        skip_reason=None if pickup.run_requests or pickup.moved else "no new files in the inbox",
    )


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        error = data.error if data else None
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
    if not upload_id:
        return
    engine = db.engine()
    with engine.connect() as conn:
        upload = uploads_store.get_upload(conn, upload_id)
    if upload is None or upload.status == "done":
        return
    reason = upload.reason if upload.status == "rejected" and upload.reason else _failure_reason(context)
    status = "rejected" if upload.status == "rejected" else "failed"
    uploads_store.update_upload(engine, upload.id, status=status, reason=reason)
    inbox.finish_upload_file(engine, storage.paths(), upload, ok=False, reason=reason)
    messages.notify_organiser(
        engine,
        mail_context(mailer, tokens),
        event_id=upload.event_id,
        upload_id=upload.id,
        kind="import_failed",
    )
