"""Erasure and retention in Dagster: `erase_person` (by participant id; run config is stored in
DAGSTER_HOME, so it never takes an address: `event-pipeline erase --email` is the way to erase
by address) and `apply_retention` with its daily schedule."""

import dagster as dg

from event_pipeline import settings
from event_pipeline.defs.resources import DatabaseResource, StorageResource
from event_pipeline.steps import erase, retention


class ErasePersonConfig(dg.Config):
    participant_ids: list[int]
    dry_run: bool = False


class RetentionConfig(dg.Config):
    dry_run: bool = False


@dg.op(out=dg.Out(dg.Nothing))
def erase_participants(
    context: dg.OpExecutionContext, config: ErasePersonConfig, db: DatabaseResource, storage: StorageResource
) -> dg.Output[None]:
    try:
        done = erase.erase_participants(db.engine(), storage.paths(), config.participant_ids, dry_run=config.dry_run)
    except (erase.NothingToErase, erase.ErasureBlocked) as exc:
        # Both messages name ids and slugs only, never an address.
        raise dg.Failure(str(exc), allow_retries=False) from None
    # Counts and ids only: what erasure removed, per place.
    metadata = {"participants": done.participants, **done.places, "dry_run": done.dry_run}
    if done.erasure_id is not None:
        metadata["erasure_id"] = done.erasure_id
    return dg.Output(None, metadata=metadata)


@dg.op(out=dg.Out(dg.Nothing))
def remove_expired_copies(
    context: dg.OpExecutionContext, config: RetentionConfig, db: DatabaseResource, storage: StorageResource
) -> dg.Output[None]:
    done = retention.apply_retention(
        db.engine(), storage.paths(), days=settings.retain_uploads_days(), dry_run=config.dry_run
    )
    metadata: dict[str, int | str | bool] = {
        "dry_run": done.dry_run,
        "days": done.days,
        "cutoff": done.cutoff.isoformat(),
        "uploads": len(done.uploads),
        "upload_copies": done.upload_copies,
        "originals": done.originals,
        "reports": done.reports,
        "other_files": done.other_files,
    }
    return dg.Output(None, metadata=metadata)


@dg.job(description="Erase participants (by id) from every place their data is kept; counts and an audit line stay.")
def erase_person() -> None:
    erase_participants()


@dg.job(description="Delete stored upload copies, originals and reports older than EVENT_PIPELINE_RETAIN_UPLOADS_DAYS.")
def apply_retention() -> None:
    remove_expired_copies()


retention_schedule = dg.ScheduleDefinition(
    name="apply_retention_schedule",
    job=apply_retention,
    cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: stored upload copies, originals and reports past their retention are deleted.",
)

JOBS: list[dg.JobDefinition] = [erase_person, apply_retention]
SCHEDULES: list[dg.ScheduleDefinition] = [retention_schedule]
