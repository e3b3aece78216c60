"""A real deployment on a temp var dir, driven as an operator would drive it: ``event-pipeline
init`` and ``event add`` through the CLI, a real ``dagster-daemon`` in its own process group (no
secrets sourced into its environment), files dropped into the inbox by rename. Every wait is on
state (the app database, Dagster's run storage, the process table) with a deadline, never a
fixed sleep, and a failed wait shows the daemon's log.

Fault tests end with the same checks: nothing of the deployment still running once it is
stopped (processes are found by the ``EVENT_PIPELINE_HOME`` in their environment, so orphans
re-parented to init are found too), and no temp file left under the var dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Written beside a file while it is being produced; none may survive a finished import.
TEMP_MARKERS = (".part", ".tmp", ".partial")
_POLL_S = 0.2


class Deployment:
    def __init__(self, root: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.var = root / "var"
        self.log = root / "daemon.log"
        self.env = {
            **os.environ,
            "EVENT_PIPELINE_HOME": str(self.var),
            "DAGSTER_HOME": str(self.var / "dagster_home"),
            "EVENT_PIPELINE_SENSOR_INTERVAL": "1",
            "EVENT_PIPELINE_SETTLE_SECONDS": "1",
        }
        for name in ("DATABASE_URL", "SENDGRID_API_KEY", "SENDGRID_HOST", "EVENT_PIPELINE_TOKEN_KEY"):
            self.env.pop(name, None)
        self.env.update(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._engine: sa.Engine | None = None

    # -- setting up ---------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "event-pipeline"), *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if check and done.returncode != 0:
            pytest.fail(f"event-pipeline {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def init(self, *events: str) -> Deployment:
        self.cli("init")
        # Create Dagster's SQLite storage now: this process and a just-started daemon creating
        # it at once race ("table secondary_indexes already exists").
        with self.instance():
            pass
        for slug in events:
            self.cli("event", "add", slug, "--name", slug.upper(), "--organiser-email", f"org@{slug}.example.com")
        return self

    def drop(self, slug: str, name: str, data: bytes) -> Path:
        """Drop a file as a finished copy does: written under a dot name, then renamed into place."""
        folder = self.var / "inbox" / slug
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f".{name}.part"
        part.write_bytes(data)
        target = folder / name
        os.replace(part, target)
        return target

    # -- the daemon ---------------------------------------------------------------------------

    def start_daemon(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc

    def kill_daemon_group(self) -> None:
        """What a machine crash does to the deployment: every process in the daemon's group
        (daemon, code server, run workers) gone at once, nothing cleaned up."""
        assert self.proc is not None
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        # Run workers started by the code server are in the same session; a crash takes them too.
        for p in self.processes():
            with suppress(psutil.NoSuchProcess):
                p.kill()

    def kill_daemon_only(self) -> None:
        """SIGKILL of the daemon process alone: its code server and run workers live on."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc = None

    def stop_daemon(self, timeout_s: float = 60) -> None:
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if check():
                return time.monotonic() - start
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"dagster-daemon exited early ({self.proc.returncode}):\n{self.log_tail()}")
            time.sleep(_POLL_S)
        pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{self.log_tail()}")

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no daemon log)"

    # -- what the deployment knows ------------------------------------------------------------

    def engine(self) -> sa.Engine:
        if self._engine is None:
            url = self.env.get("DATABASE_URL") or f"sqlite:///{self.var / 'event_pipeline.sqlite'}"
            self._engine = sa.create_engine(url)
        return self._engine

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine().connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[sa.RowMapping]:
        with self.engine().connect() as conn:
            return list(conn.execute(sa.text(sql), params).mappings())

    @contextmanager
    def instance(self) -> Iterator[Any]:
        import dagster as dg

        with dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"]) as instance:
            yield instance

    def runs(self, job_name: str | None = None) -> list[Any]:
        import dagster as dg

        with self.instance() as instance:
            return list(instance.get_run_records(dg.RunsFilter(job_name=job_name) if job_name else None))

    def run_worker_pid(self, run_id: str) -> int | None:
        """The pid the code server reported for the run's worker process, once it has started."""
        import dagster as dg

        with self.instance() as instance:
            for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                event = record.dagster_event
                data = event.engine_event_data if event is not None else None
                pid = data.metadata.get("pid") if data is not None else None
                message = (event.message if event is not None else None) or record.user_message
                if pid is not None and message.startswith("Started process for run"):
                    return int(str(pid.value))
        return None

    def processes(self) -> list[psutil.Process]:
        """Every process of this deployment, found by its var dir in the environment."""
        mine, found = os.getpid(), []
        for p in psutil.process_iter():
            if p.pid == mine:
                continue
            with suppress(psutil.Error):
                if p.environ().get("EVENT_PIPELINE_HOME") == str(self.var):
                    found.append(p)
        return found

    def temp_files(self) -> list[Path]:
        return [p for p in self.var.rglob("*") if p.is_file() and p.name.endswith(TEMP_MARKERS)]

    def close(self) -> None:
        """Stop everything this deployment started, whatever state a failed test left it in."""
        self.stop_daemon(timeout_s=30)
        # A process being started as the daemon stopped (a run worker, a mail
        # process) only shows up after the first sweep: sweep until none is left.
        deadline = time.monotonic() + 30
        while (left := self.processes()) and time.monotonic() < deadline:
            for p in left:
                with suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(left, timeout=2)
        if self._engine is not None:
            self._engine.dispose()
