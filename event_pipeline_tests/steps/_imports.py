"""Running one upload through the import steps in process (no Dagster): what each asset calls."""

from __future__ import annotations

from pathlib import Path

from event_pipeline import settings
from event_pipeline.intake import DEFAULT_MAX_BYTES
from event_pipeline.steps import imports
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.steps.rows import UploadRejected
from event_pipeline.store.uploads import Upload
from event_pipeline_tests.support.pipeline import engine


def import_steps(source: Path, *, strict: bool = False, event_slug: str = "devcon-2026") -> Upload:
    """receive, parse, validate and load ``source``; the upload as the database then has it.
    A rejection stops the steps, as it stops the run."""
    paths = settings.paths()
    eng = engine()
    upload, _ = register_local_file(eng, paths, event_slug=event_slug, source=source, strict=strict or None)
    try:
        imports.receive(eng, upload.id)
        imports.parse(eng, paths, upload.id, sheet=None, max_bytes=DEFAULT_MAX_BYTES)
        imports.validate(eng, paths, upload.id, strict=None, default_region="KR")
        imports.load(eng, paths, upload.id)
    except UploadRejected:
        pass
    return imports.get_upload(eng, upload.id)
