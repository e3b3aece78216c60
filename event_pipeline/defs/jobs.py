"""Jobs: importing one upload, and sending mail that is due (retries, leftovers)."""

from datetime import timedelta

import dagster as dg

from event_pipeline.defs.assets import mail_context, upload_assets
from event_pipeline.defs.partitions import uploads_partitions
from event_pipeline.defs.resources import AccessTokensResource, DatabaseResource, MailerResource
from event_pipeline.mail.policy import MAX_ATTEMPTS
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store

# The steps form a chain, so a process per step would only add start-up time.
import_job = dg.define_asset_job(
    "import_upload",
    selection=dg.AssetSelection.assets(*upload_assets),
    partitions_def=uploads_partitions,
    executor_def=dg.in_process_executor,
    description="Import one uploaded participants file (one partition per upload).",
)

STALE_CLAIM = timedelta(minutes=15)


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=10), pool="mail")
def send_due_emails(
    context: dg.OpExecutionContext, db: DatabaseResource, mailer: MailerResource, tokens: AccessTokensResource
) -> dict[str, int]:
    engine = db.engine()
    released = deliveries_store.release_stale_claims(engine, older_than=STALE_CLAIM, max_attempts=MAX_ATTEMPTS)
    stats = messages.dispatch(engine, mail_context(mailer, tokens))
    result = {"released_stale": released, **stats.as_metadata()}
    context.log.info(f"due emails: {result}")
    return result


@dg.job(description="Send email deliveries that are due: retries after transient errors, crash leftovers.")
def send_due_emails_job() -> None:
    send_due_emails()
