import dagster as dg

from event_pipeline.defs import erase_jobs, resend_jobs, undo_jobs
from event_pipeline.defs.assets import upload_assets
from event_pipeline.defs.jobs import import_job, send_due_emails_job
from event_pipeline.defs.mail_sensors import sendgrid_bounce_sensor
from event_pipeline.defs.resources import default_resources
from event_pipeline.defs.schedules import reconcile_uploads_schedule, send_due_emails_schedule
from event_pipeline.defs.sensors import import_failure_sensor, inbox_sensor

defs = dg.Definitions(
    assets=upload_assets,
    jobs=[import_job, send_due_emails_job, *undo_jobs.JOBS, *resend_jobs.JOBS, *erase_jobs.JOBS],
    sensors=[inbox_sensor, import_failure_sensor, sendgrid_bounce_sensor],
    schedules=[
        reconcile_uploads_schedule,
        send_due_emails_schedule,
        *undo_jobs.SCHEDULES,
        *resend_jobs.SCHEDULES,
        *erase_jobs.SCHEDULES,
    ],
    resources=default_resources(),
)
