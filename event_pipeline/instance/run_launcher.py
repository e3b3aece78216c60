"""The default run launcher, plus the one thing run monitoring needs from it: whether a run's
worker process is still alive.

Dagster's ``DefaultRunLauncher`` starts each run in a process of the code server and cannot say
whether that process still exists, so when the whole deployment dies (a machine crash, an OOM
kill of the process group) its runs stay ``STARTED`` for good after a restart: nobody ends them,
so run retries and the reconcile schedule never act. Here the worker's pid, which the code
server reports as a run engine event, is checked on this host; a dead worker is reported as
``FAILED``, run monitoring marks the run failed, and run retries take over.

Only workers on this machine can be checked: for a code server elsewhere (a gRPC server on
another host) the answer is "running", as before. Launchers for containers (Docker, Kubernetes)
check their workers themselves.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._core.storage.dagster_run import DagsterRun

from event_pipeline import processes

STARTED = "Started process for run"
EXITED = "Process for run exited"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if not _worker_is_local(run):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker is on another host; not checked")
        started_at: float | None = None
        pid: int | None = None
        for record in self._instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            # Engine events carry their text on the Dagster event, not as a user message.
            message = (event.message if event is not None else None) or record.user_message
            if message.startswith(EXITED):
                return CheckRunHealthResult(WorkerStatus.FAILED, "run worker exited without ending the run")
            data = event.engine_event_data if event is not None else None
            value = data.metadata.get("pid") if data is not None else None
            if message.startswith(STARTED) and value is not None:
                pid, started_at = int(str(value.value)), record.timestamp
        if pid is None or started_at is None:
            # Between launch and the worker's first event: the start timeout covers this window.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded yet")
        if processes.alive(pid, started_by=started_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is alive", run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker pid {pid} is gone", run_worker_id=str(pid))


def _worker_is_local(run: DagsterRun) -> bool:
    origin = run.remote_job_origin
    if origin is None:
        return False
    location = origin.repository_origin.code_location_origin
    if isinstance(location, GrpcServerCodeLocationOrigin):
        return location.socket is not None or location.host in LOCAL_HOSTS
    # Code servers the daemon or webserver spawned from workspace.yaml run on this machine.
    return True
