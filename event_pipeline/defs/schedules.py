"""Schedules: reconcile what the sensor or a run missed, and send mail that has come due."""

from datetime import UTC, datetime

import dagster as dg

from event_pipeline.defs.assets import upload_assets
from event_pipeline.defs.jobs import import_job, send_due_emails_job
from event_pipeline.defs.partitions import UPLOADS
from event_pipeline.defs.resources import DatabaseResource, StorageResource
from event_pipeline.defs.sensors import run_requests, upload_tags
from event_pipeline.steps import inbox, reconcile
from event_pipeline.store import deliveries as deliveries_store

ACTIVE_STATUSES = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}
CHAIN = [a.key for a in upload_assets]


def upload_history(instance: dg.DagsterInstance, upload_id: str) -> reconcile.History:
    """What Dagster knows of one upload: its runs, and which assets are materialized."""
    runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": upload_id}, job_name=import_job.name))
    done = {
        key.to_user_string()
        for key in CHAIN
        if instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[upload_id]), limit=1
        ).records
    }
    return reconcile.History(
        runs=len(runs),
        active=any(r.dagster_run.status in ACTIVE_STATUSES for r in runs),
        materialized=frozenset(done),
    )


def reconcile_requests(
    context: dg.ScheduleEvaluationContext, db: DatabaseResource, storage: StorageResource
) -> list[dg.RunRequest]:
    engine, paths = db.engine(), storage.paths()
    # 1. Inbox files the sensor has not received (sensor off), by the same settling rule, and
    #    originals a crashed pass left in received/ unregistered.
    seen = inbox.watch_inbox(engine, paths)
    fresh = [*seen.registered, *inbox.adopt_held_files(engine, paths)]
    requests = run_requests(fresh, **{"event_pipeline/reconciled": "true"})
    if fresh:
        # Schedules cannot return partition requests as sensors do: add them before the runs.
        context.instance.add_dynamic_partitions(UPLOADS, [r.upload_id for r in fresh])
    # 2. Uploads whose import never finished and has no run in flight: resumed from the first
    #    asset not materialized, never replayed from the start.
    chain = [k.to_user_string() for k in CHAIN]
    for plan in reconcile.plan(engine, chain, lambda upload_id: upload_history(context.instance, upload_id)):
        if not context.instance.has_dynamic_partition(UPLOADS, plan.upload_id):
            context.instance.add_dynamic_partitions(UPLOADS, [plan.upload_id])
        requests.append(
            dg.RunRequest(
                run_key=f"reconcile:{plan.upload_id}:{plan.attempt}",
                partition_key=plan.upload_id,
                asset_selection=[dg.AssetKey.from_user_string(a) for a in plan.assets],
                tags={
                    **upload_tags(plan.event_slug, plan.file_name),
                    "event_pipeline/reconciled": "true",
                    "event_pipeline/resumed_from": plan.assets[0],
                },
            )
        )
    return requests


@dg.schedule(
    job=import_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: import inbox files the sensor missed and resume uploads whose runs never finished.",
)
def reconcile_uploads_schedule(
    context: dg.ScheduleEvaluationContext, db: DatabaseResource, storage: StorageResource
) -> list[dg.RunRequest] | dg.SkipReason:
    return reconcile_requests(context, db, storage) or dg.SkipReason("every upload is imported or has a run in flight")


@dg.schedule(
    job=send_due_emails_job,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes: send email retries that have come due (3 tries within 24 h).",
)
def send_due_emails_schedule(
    context: dg.ScheduleEvaluationContext, db: DatabaseResource
) -> dg.RunRequest | dg.SkipReason:
    with db.engine().connect() as conn:
        due = deliveries_store.count_due(conn, now=datetime.now(UTC))
    if not due:
        return dg.SkipReason("no email is due")
    return dg.RunRequest(run_key=None, tags={"event_pipeline/due_emails": str(due)})
