"""Running the real import job in process, the way `event-pipeline import` does."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.defs import defs
from event_pipeline.defs.partitions import UPLOADS
from event_pipeline.defs.resources import migrated_engine
from event_pipeline.steps.inbox import receive_file
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.uploads import Upload

# The lineage of one upload, as DESIGN.md draws it.
ASSET_CHAIN = [
    "upload_file",
    "parsed_rows",
    "validated_rows",
    "participants",
    "access_tokens",
    "qr_codes",
    "welcome_emails",
    "import_report",
]


def engine() -> Engine:
    return migrated_engine(settings.database_url())


def make_event(slug: str = "devcon-2026", *, language: str = "ko") -> Event:
    return create_event(
        engine(), slug=slug, name="Dev Conference", organiser_email="organiser@example.com", language=language
    )


def run_import(
    instance: dg.DagsterInstance, source: Path, *, event_slug: str = "devcon-2026", strict: bool = False
) -> tuple[Upload, dg.ExecuteInProcessResult]:
    upload, _ = receive_file(engine(), settings.paths(), event_slug=event_slug, source=source, strict=strict)
    if not instance.has_dynamic_partition(UPLOADS, upload.id):
        instance.add_dynamic_partitions(UPLOADS, [upload.id])
    result = defs.resolve_job_def("import_upload").execute_in_process(
        instance=instance, partition_key=upload.id, raise_on_error=False
    )
    return upload, result
