"""Which unfinished uploads to resume, and from where. Dagster's side (runs, materializations)
comes in as plain ``History`` facts, so the rule lives here and is testable without Dagster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from event_pipeline.store import events as events_store
from event_pipeline.store import uploads as uploads_store

# Give up resuming an upload after this many runs; its failure notice has gone out.
MAX_RUNS_PER_UPLOAD = 4
# A just-registered upload's run may not exist yet: the sensor's request is still on its way.
GRACE = timedelta(minutes=2)


@dataclass(frozen=True)
class History:
    runs: int
    active: bool
    materialized: frozenset[str]


@dataclass(frozen=True)
class Resume:
    upload_id: str
    event_slug: str
    file_name: str
    # The assets still to materialize, in chain order: the first one not materialized and all
    # after it. Earlier steps left their results in the upload store and the database, so
    # nothing before the failure is redone (and an old upload never replays its load over
    # the corrections of a newer one).
    assets: list[str]
    attempt: int


def plan(
    engine: Engine,
    chain: Sequence[str],
    history_of: Callable[[str], History],
    *,
    now: datetime | None = None,
) -> list[Resume]:
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        unfinished = uploads_store.unfinished_uploads(conn, registered_before=now - GRACE)
        slugs = {e: events_store.get_event_by_id(conn, e).slug for e in {u.event_id for u in unfinished}}
    resumes: list[Resume] = []
    for upload in unfinished:
        history = history_of(upload.id)
        if history.active or history.runs >= MAX_RUNS_PER_UPLOAD:
            continue
        todo = next((i for i, asset in enumerate(chain) if asset not in history.materialized), None)
        if todo is not None:
            resumes.append(
                Resume(
                    upload_id=upload.id,
                    event_slug=slugs[upload.event_id],
                    file_name=upload.original_name,
                    assets=list(chain[todo:]),
                    attempt=history.runs,
                )
            )
    return resumes
