"""`undo_upload`: the Dagster face of `event-pipeline undo`, launchable from the UI."""

import dagster as dg

from event_pipeline.defs.resources import DatabaseResource
from event_pipeline.steps import undo


class UndoConfig(dg.Config):
    """An upload id and a flag: no personal data reaches the run config."""

    upload_id: str
    dry_run: bool = False


@dg.op(out=dg.Out(dg.Nothing))
def undo_upload_op(context: dg.OpExecutionContext, config: UndoConfig, db: DatabaseResource) -> dg.Output[None]:
    try:
        result = undo.undo_upload(db.engine(), config.upload_id, dry_run=config.dry_run)
    except undo.UndoRefused as exc:
        # The refusal names only the upload id and its state; retrying cannot change it.
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    # Counts and ids only: the addresses in the plan stay out of Dagster's storage.
    metadata: dict[str, dg.RawMetadataValue] = {
        "upload_id": config.upload_id,
        "dry_run": config.dry_run,
        "applied": result.applied,
        "already_undone": result.already_undone,
        **result.plan.summary(),
        "removed_participant_ids": dg.MetadataValue.json([r.participant_id for r in result.plan.removed]),
        "mail_already_sent_ids": dg.MetadataValue.json([m.delivery_id for m in result.plan.mail_sent]),
    }
    context.log.info(
        f"undo of {config.upload_id}: {'dry run' if config.dry_run else 'applied' if result.applied else 'no change'}"
    )
    return dg.Output(None, metadata=metadata)


@dg.job(
    name="undo_upload",
    description="Take one finished upload back: remove the participants only it created (tokens revoked, "
    "unsent mail cancelled) and restore the fields it changed, except where a later upload built on them.",
)
def undo_upload_job() -> None:
    undo_upload_op()


JOBS: list[dg.JobDefinition] = [undo_upload_job]
SCHEDULES: list[dg.ScheduleDefinition] = []
