"""`resend_tickets` (the Dagster face of `event-pipeline resend`) and the hourly bounce digest."""

from collections import Counter

import dagster as dg

from event_pipeline.defs.resources import AccessTokensResource, DatabaseResource, MailerResource, mail_context
from event_pipeline.steps import digests, resend


class ResendConfig(dg.Config):
    """Whom to resend to, by ids and flags only: run config is kept in DAGSTER_HOME, so it takes
    a participant id where the command line also accepts an address."""

    event_slug: str
    participant_id: int | None = None
    upload_id: str | None = None
    bounced: bool = False
    dry_run: bool = False


@dg.op(pool="mail", out=dg.Out(dg.Nothing))
def resend_tickets_op(
    context: dg.OpExecutionContext,
    config: ResendConfig,
    db: DatabaseResource,
    mailer: MailerResource,
    tokens: AccessTokensResource,
) -> dg.Output[None]:
    try:
        result = resend.resend(
            db.engine(),
            None if config.dry_run else mail_context(mailer, tokens, context),
            event_slug=config.event_slug,
            participant_id=config.participant_id,
            upload_id=config.upload_id,
            bounced=config.bounced,
            dry_run=config.dry_run,
        )
    except resend.ResendError as exc:
        # Names only slugs and ids; retrying cannot change it.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    refused = Counter(r.code for r in result.refused)
    metadata: dict[str, dg.RawMetadataValue] = {
        "event": result.event,
        "dry_run": result.dry_run,
        "queued": len(result.queued),
        "sent": result.sent,
        "already_delivered": result.already_delivered,
        "refused": len(result.refused),
        # Reasons name participant ids and statuses only, never an address.
        "refused_by_reason": dg.MetadataValue.json(dict(refused)),
        "refused_participant_ids": dg.MetadataValue.json([r.participant_id for r in result.refused]),
        **({"mail_paused": result.mail_paused} if result.mail_paused else {}),
    }
    if config.participant_id is not None and result.refused:
        raise dg.Failure(description=result.refused[0].reason, allow_retries=False, metadata=metadata)
    context.log.info(
        f"resend for {result.event}: {len(result.queued)} queued, {result.sent} sent, {len(result.refused)} refused"
    )
    return dg.Output(None, metadata=metadata)


@dg.job(
    name="resend_tickets",
    description="Send tickets again as new deliveries: one participant (by id), an upload's undelivered "
    "participants, or everyone whose address changed after it bounced. Mail in flight is never doubled.",
)
def resend_tickets_job() -> None:
    resend_tickets_op()


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=10), pool="mail", out=dg.Out(dg.Nothing))
def send_bounce_digests_op(
    context: dg.OpExecutionContext, db: DatabaseResource, mailer: MailerResource, tokens: AccessTokensResource
) -> dg.Output[None]:
    run = digests.send_bounce_digests(db.engine(), mail_context(mailer, tokens, context))
    metadata = run.as_metadata()
    if run.run.paused:
        # The digests stay queued; they go out with the first dispatch after the pause.
        raise dg.Failure(description=run.run.paused, allow_retries=False, metadata=metadata)
    context.log.info(f"bounce digests: {len(run.digests)} queued, {run.reported} deliveries reported")
    return dg.Output(None, metadata=metadata)


@dg.job(
    name="send_bounce_digests",
    description="Tell each event's organiser, once an hour, which mail bounced, was blocked or was dropped "
    "(addresses masked in the body, the full list attached as CSV); every delivery is reported once.",
)
def send_bounce_digests_job() -> None:
    send_bounce_digests_op()


bounce_digest_schedule = dg.ScheduleDefinition(
    name="send_bounce_digests_schedule",
    job=send_bounce_digests_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: one bounce digest per event with undeliverable mail since the last one.",
)

JOBS: list[dg.JobDefinition] = [resend_tickets_job, send_bounce_digests_job]
SCHEDULES: list[dg.ScheduleDefinition] = [bounce_digest_schedule]
