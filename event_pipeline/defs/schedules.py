"""Schedules: reconcile what the sensor or a run missed, and send mail that has come due."""

from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from event_pipeline.defs.jobs import import_job, send_due_emails_job
from event_pipeline.defs.partitions import UPLOADS
from event_pipeline.defs.resources import DatabaseResource, StorageResource
from event_pipeline.defs.sensors import pick_up_inbox
from event_pipeline.store.deliveries import CLAIMABLE
from event_pipeline.store.tables import email_deliveries, uploads

# Give up reconciling an upload after this many runs; its failure notice has gone out.
MAX_RUNS_PER_UPLOAD = 4
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def reconcile_requests(
    context: dg.ScheduleEvaluationContext, db: DatabaseResource, storage: StorageResource
) -> list[dg.RunRequest]:
    instance = context.instance
    engine = db.engine()
    requests: list[dg.RunRequest] = []
    # 1. Inbox files the sensor never picked up (sensor off, daemon down).
    pickup = pick_up_inbox(engine, storage.paths(), instance, {}, require_settled=False)
    if pickup.new_partitions:
        instance.add_dynamic_partitions(UPLOADS, pickup.new_partitions)
    # 2. Uploads whose import never finished, with no run in flight.
    with engine.connect() as conn:
        open_ids = [
            str(r[0])
            for r in conn.execute(
                sa.select(uploads.c.id).where(uploads.c.status.in_(("received", "running", "failed")))
            )
        ]
    known = set(instance.get_dynamic_partitions(UPLOADS))
    missing = [u for u in open_ids if u not in known]
    if missing:
        instance.add_dynamic_partitions(UPLOADS, missing)
    for upload_id in open_ids:
        runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": upload_id}, job_name=import_job.name))
        if any(r.dagster_run.status in ACTIVE_STATUSES for r in runs):
            continue
        if len(runs) >= MAX_RUNS_PER_UPLOAD:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"reconcile:{upload_id}:{len(runs)}",
                partition_key=upload_id,
                tags={"event_pipeline/reconciled": "true"},
            )
        )
    return requests


@dg.schedule(
    job=import_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: import inbox files the sensor missed and uploads whose runs never finished.",
)
def reconcile_uploads_schedule(
    context: dg.ScheduleEvaluationContext, db: DatabaseResource, storage: StorageResource
) -> list[dg.RunRequest] | dg.SkipReason:
    requests = reconcile_requests(context, db, storage)
    return requests or dg.SkipReason("every upload is imported or has a run in flight")


@dg.schedule(
    job=send_due_emails_job,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes: send email retries that have come due (3 tries within 24 h).",
)
def send_due_emails_schedule(
    context: dg.ScheduleEvaluationContext, db: DatabaseResource
) -> dg.RunRequest | dg.SkipReason:
    now = datetime.now(UTC)
    stmt = sa.select(sa.func.count()).where(
        sa.or_(
            sa.and_(
                email_deliveries.c.status.in_(CLAIMABLE),
                sa.or_(email_deliveries.c.next_attempt_at.is_(None), email_deliveries.c.next_attempt_at <= now),
            ),
            email_deliveries.c.status == "sending",
        )
    )
    with db.engine().connect() as conn:
        due = int(conn.execute(stmt).scalar_one())
    if not due:
        return dg.SkipReason("no email is due")
    return dg.RunRequest(run_key=None, tags={"event_pipeline/due_emails": str(due)})
