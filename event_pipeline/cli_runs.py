"""What the Dagster instance knows about one upload's import, for the command line: which stages
are done, running or failed, the runs tried, and how to keep Dagster quiet in this process.

Read from the instance's event log and run storage (the same records the UI shows), so a stage
counts as done only once Dagster recorded its materialization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from event_pipeline.defs.assets import upload_assets

STAGES: list[str] = [asset.key.to_user_string() for asset in upload_assets]
PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"

_STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED,
    dg.DagsterEventType.STEP_UP_FOR_RETRY,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.RUN_CANCELED,
}
FINISHED_RUN = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def quiet_run_config(*, verbose: bool) -> dict[str, Any]:
    """Run config for an in-process run: Dagster's console logger silent unless verbose.

    Only this process's console is quieter; the event log (UI, `status`) keeps every event, and
    what went wrong (a failed step, paused mail) is in the summary the command prints.
    """
    return {} if verbose else {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
        }


@dataclass
class RunWatcher:
    """Stage states of one upload, followed through the events of its newest run.

    ``done`` may be seeded with stages an earlier run materialized (a resumed run starts later).
    """

    states: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STAGES, PENDING))
    errors: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    run_id: str | None = None
    _cursor: str | None = None

    def follow(self, run_id: str) -> None:
        """Read events of ``run_id`` from now on; stages not done start over as pending."""
        if run_id == self.run_id:
            return
        self.run_id, self._cursor = run_id, None
        self.states = {s: (DONE if state == DONE else PENDING) for s, state in self.states.items()}
        self.errors = {}

    def poll(self, instance: dg.DagsterInstance) -> bool:
        """Take in the run's new events; True if a stage changed."""
        if self.run_id is None:
            return False
        changed = False
        while True:
            page = instance.get_records_for_run(self.run_id, cursor=self._cursor, of_type=_STEP_EVENTS, limit=500)
            self._cursor = page.cursor
            for record in page.records:
                changed |= self._take(record.event_log_entry.dagster_event)
            if not page.has_more:
                return changed

    def _take(self, event: dg.DagsterEvent | None) -> bool:
        if event is None:
            return False
        kind = event.event_type
        if kind in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED):
            # Dagster logs the steps it did not start as plain messages, not events: the run's end
            # is when they are known to be skipped (and a step still running was cut off).
            ended = {PENDING: SKIPPED, RUNNING: FAILED}
            return any([self._set(s, ended[state]) for s, state in self.states.items() if state in ended])
        if kind is dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key is not None:
            return self._set(event.asset_key.to_user_string(), DONE)
        # A graph-backed asset's steps ("welcome_emails.send_welcome_chunk[ids_1_5000]") are its stage.
        stage = (event.step_key or "").split(".", 1)[0]
        if stage not in self.states or self.states[stage] == DONE:
            return False
        if kind is dg.DagsterEventType.STEP_START:
            return self._set(stage, RUNNING)
        if kind is dg.DagsterEventType.STEP_UP_FOR_RETRY:
            self.retries += 1
            return False
        if kind is dg.DagsterEventType.STEP_SKIPPED:
            return self._set(stage, SKIPPED)
        if kind is dg.DagsterEventType.STEP_FAILURE:
            self.errors[stage] = _failure_text(event)
            return self._set(stage, FAILED)
        return False

    def _set(self, stage: str, state: str) -> bool:
        if stage not in self.states or self.states[stage] == state:
            return False
        self.states[stage] = state
        return True

    def stages(self) -> list[dict[str, object]]:
        return [{"asset": s, "state": state, "error": self.errors.get(s)} for s, state in self.states.items()]


def _failure_text(event: dg.DagsterEvent) -> str:
    """The step's own words: a ``dg.Failure``'s description, else the error's first line."""
    data = event.step_failure_data
    if data is None:
        return "failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    if data.error is not None:
        return (data.error.message or data.error.cls_name or "failed").strip().splitlines()[0]
    return "failed"


def materialized(instance: dg.DagsterInstance, upload_id: str) -> set[str]:
    """Stages with a materialization for this upload's partition, by any run."""
    done = set()
    for asset in upload_assets:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset.key, asset_partitions=[upload_id]), limit=1
        ).records
        if records:
            done.add(asset.key.to_user_string())
    return done


def upload_runs(instance: dg.DagsterInstance, upload_id: str) -> list[RunInfo]:
    """Runs of this upload's partition, newest first."""
    records = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": upload_id}))
    return [_run_info(r) for r in records]


def _run_info(record: Any) -> RunInfo:
    return RunInfo(
        run_id=record.dagster_run.run_id,
        status=record.dagster_run.status.value,
        started_at=_from_ts(record.start_time),
        ended_at=_from_ts(record.end_time),
    )


def watch_upload(instance: dg.DagsterInstance, upload_id: str) -> tuple[RunWatcher, list[RunInfo]]:
    """Stage states of ``upload_id`` (materialized by any run, else as its newest run left them)
    and its runs, newest first."""
    watcher = RunWatcher()
    for stage in materialized(instance, upload_id):
        watcher.states[stage] = DONE
    runs = upload_runs(instance, upload_id)
    if runs:
        watcher.follow(runs[0].run_id)
        watcher.poll(instance)
    return watcher, runs


def _from_ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
