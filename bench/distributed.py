"""One upload through the distributed topology (``deploy/topology.py``: PostgreSQL, Redis, code
server, daemon, N ``dagster-celery`` workers) with 1 and then 2 workers, in the same run: file
dropped -> every welcome mail accepted by the TLS SendGrid stand-in. Each topology is started
from scratch on its own var dir, so the two rows differ only in the number of workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from event_pipeline_tests.support.topology import stop_topology

REPO = Path(__file__).resolve().parents[1]
START_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Any, timeout_s: float, proc: subprocess.Popen[bytes]) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        if proc.poll() is not None:
            raise RuntimeError(f"topology.py exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def _one(path: str, home: Path, workers: int, latency_s: float, timeout_s: float) -> dict[str, Any]:
    from bench.email import StandIn

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    server = StandIn(latency_s, 0.0)
    pg_port = _free_port()
    env = {
        **os.environ,
        "EVENT_PIPELINE_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster_home"),
        "EVENT_PIPELINE_MAIL_BACKEND": "sendgrid",
        "SENDGRID_HOST": server.host,
        "SENDGRID_API_KEY": server.api_key,
        "SSL_CERT_FILE": server.ca_file,
        "EVENT_PIPELINE_SENSOR_INTERVAL": "1",
    }
    for name in ("DATABASE_URL", "DAGSTER_PG_URL", "CELERY_BROKER_URL", "PORT"):
        env.pop(name, None)
    argv = [
        sys.executable, str(REPO / "deploy" / "topology.py"), "--workers", str(workers),
        "--port", str(_free_port()), "--code-server-port", str(_free_port()),
        "--redis-port", str(_free_port()), "--pg-port", str(pg_port),
    ]  # fmt: skip
    log = (home / "topology.log").open("wb")
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state_file = home / "topology.json"

    def state() -> dict[str, Any]:
        return dict(json.loads(state_file.read_text(encoding="utf-8"))) if state_file.exists() else {}

    cluster = ""
    try:
        up_s = _wait("the topology to be up", lambda: state().get("ready") is True, START_S, proc)
        cluster = str(state().get("postgres_cluster") or "")
        env["DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/participants"
        cli = str(Path(sys.executable).parent / "event-pipeline")
        subprocess.run(
            [cli, "event", "add", "bench", "--name", "Bench", "--organiser-email", "o@example.com"],
            env=env,
            check=True,
            capture_output=True,
        )
        engine = sa.create_engine(env["DATABASE_URL"])
        inbox = home / "inbox" / "bench"
        inbox.mkdir(parents=True, exist_ok=True)
        hidden = inbox / ".participants.csv.part"
        shutil.copyfile(path, hidden)
        dropped = time.monotonic()
        os.replace(hidden, inbox / "participants.csv")

        def mailed() -> bool:
            with engine.connect() as conn:
                done = conn.execute(sa.text("SELECT loaded_new FROM uploads WHERE status = 'done'")).scalar()
                unsent = conn.execute(
                    sa.text("SELECT count(*) FROM email_deliveries WHERE kind = 'welcome' AND status <> 'sent'")
                ).scalar_one()
            return done is not None and unsent == 0

        _wait("every welcome mail to be accepted", mailed, timeout_s, proc)
        seconds = time.monotonic() - dropped
        with engine.connect() as conn:
            rows = int(conn.execute(sa.text("SELECT loaded_new FROM uploads")).scalar_one())
        engine.dispose()
        return {"rows": rows, "ours_s": seconds, "topology_up_s": up_s, "workers": workers}
    finally:
        stop_topology(proc, str(state().get("postgres_cluster") or cluster))
        log.close()
        server.stop()


def upload_on_workers(path: str, work: str, latency_s: float = 0.05, timeout_s: float = 3600) -> dict[str, Any]:
    """Drop -> all mailed with 1 worker, then with 2: ``naive_s`` is the 1-worker time, so the
    stage's speed-up column is what the second worker bought."""
    one = _one(path, Path(work) / "dist-1", 1, latency_s, timeout_s)
    two = _one(path, Path(work) / "dist-2", 2, latency_s, timeout_s)
    return {
        "rows": two["rows"],
        "ours_s": two["ours_s"],
        "naive_s": one["ours_s"],
        "substages": {"1 celery worker": one, "2 celery workers": two},
    }
