"""Jobs: importing one upload, and sending mail that is due (retries, leftovers)."""

from datetime import timedelta

import dagster as dg

from event_pipeline.defs.assets import upload_assets
from event_pipeline.defs.executors import step_executor
from event_pipeline.defs.partitions import uploads_partitions
from event_pipeline.defs.resources import AccessTokensResource, DatabaseResource, MailerResource, mail_context
from event_pipeline.steps import messages

import_job = dg.define_asset_job(
    "import_upload",
    selection=dg.AssetSelection.assets(*upload_assets),
    partitions_def=uploads_partitions,
    executor_def=step_executor(),
    description="Import one uploaded participants file (one partition per upload).",
)

STALE_CLAIM = timedelta(minutes=15)


# Out(Nothing): the counts go into metadata, nothing is stored in Dagster's IO storage.
@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=10), pool="mail", out=dg.Out(dg.Nothing))
def send_due_emails(
    context: dg.OpExecutionContext, db: DatabaseResource, mailer: MailerResource, tokens: AccessTokensResource
) -> dg.Output[None]:
    released, run = messages.send_due_emails(
        db.engine(), mail_context(mailer, tokens, context), stale_after=STALE_CLAIM
    )
    result = {"released_stale": released, **run.as_metadata()}
    if run.paused:
        # Loud on the mail job's own run: this is where an operator looks for mail trouble.
        raise dg.Failure(description=run.paused, allow_retries=False, metadata=result)
    context.log.info(f"due emails: {result}")
    return dg.Output(None, metadata=result)


@dg.job(
    description="Send email deliveries that are due: retries after transient errors, crash leftovers.",
    executor_def=step_executor(),
)
def send_due_emails_job() -> None:
    send_due_emails()
