"""Bounce polling: SendGrid's suppression lists applied to participants and deliveries."""

import os

import dagster as dg

from event_pipeline.defs.resources import DatabaseResource, MailerResource
from event_pipeline.mail import bounces
from event_pipeline.mail.senders import sendgrid_client

# Suppression lists change slowly and SendGrid rate-limits these endpoints far below mail/send.
BOUNCE_POLL_INTERVAL_S = int(os.environ.get("EVENT_PIPELINE_BOUNCE_POLL_INTERVAL", "300"))


@dg.sensor(
    minimum_interval_seconds=BOUNCE_POLL_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls SendGrid bounces, blocks and invalid emails; flags participants and marks their mail bounced.",
)
def sendgrid_bounce_sensor(
    context: dg.SensorEvaluationContext, db: DatabaseResource, mailer: MailerResource
) -> dg.SensorResult:
    if mailer.backend != "sendgrid" or not mailer.sendgrid_api_key:
        return dg.SensorResult(
            skip_reason="mail does not go through SendGrid (EVENT_PIPELINE_MAIL_BACKEND or SENDGRID_API_KEY "
            "not set): nothing bounces"
        )
    client = sendgrid_client(mailer.sendgrid_api_key, host=mailer.sendgrid_host, timeout_s=mailer.timeout_s)
    # A failed fetch raises: Dagster keeps the old cursor, so the next tick repeats the window.
    result = bounces.poll_suppressions(db.engine(), client, bounces.BounceCursor.from_json(context.cursor))
    summary = ", ".join(f"{kind} {n}" for kind, n in result.fetched.items())
    context.log.info(
        f"suppressions read: {summary}; participants flagged {result.participants_marked}, "
        f"deliveries bounced {result.deliveries_bounced}"
    )
    changed = result.participants_marked or result.deliveries_bounced
    return dg.SensorResult(
        cursor=result.cursor.to_json(),
        skip_reason=None if changed else f"nothing new on the suppression lists ({summary})",
    )
