"""A real `dagster-daemon`, started by hand as any deployment would (no secrets sourced into its
environment), on a temp DAGSTER_HOME picks up a dropped CSV and imports it; afterwards no
participant's name, email or phone is anywhere under DAGSTER_HOME or in the daemon's log."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from event_pipeline.mail.outbox import outbox_messages
from event_pipeline_tests.support.participants import csv_bytes, sample

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


def _wait_for(
    what: str, check: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[bytes], log: Path
) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if check():
            return time.monotonic() - start
        if proc.poll() is not None:
            pytest.fail(f"dagster-daemon exited early ({proc.returncode}):\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{log.read_text()[-4000:]}")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    var = tmp_path / "var"
    env = {
        **os.environ,
        "EVENT_PIPELINE_HOME": str(var),
        "DAGSTER_HOME": str(var / "dagster_home"),
        "EVENT_PIPELINE_SENSOR_INTERVAL": "1",
        "EVENT_PIPELINE_SETTLE_SECONDS": "2",
    }
    # The token key exists only in the var dir's secrets.env that `init` writes: the code
    # location must find it there by itself.
    for name in ("DATABASE_URL", "SENDGRID_API_KEY", "SENDGRID_HOST", "EVENT_PIPELINE_TOKEN_KEY"):
        env.pop(name, None)
    cli = str(BIN / "event-pipeline")
    subprocess.run([cli, "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        [cli, "event", "add", "e2e-2026", "--name", "E2E", "--organiser-email", "org@example.com"],
        env=env,
        check=True,
        capture_output=True,
    )
    yield env


def test_daemon_imports_a_dropped_file_once(home: dict[str, str], tmp_path: Path) -> None:
    var = Path(home["EVENT_PIPELINE_HOME"])
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        s = sample(20, invalid=3, duplicates=2)
        inbox = var / "inbox" / "e2e-2026"
        tmp = inbox / ".participants.csv.part"
        tmp.write_bytes(csv_bytes(s.rows))
        dropped = time.monotonic()
        os.replace(tmp, inbox / "participants.csv")
        # The same content again under another name must not start a second run.
        shutil.copyfile(inbox / "participants.csv", inbox / ".copy.part")
        os.replace(inbox / ".copy.part", inbox / "participants (1).csv")

        engine = sa.create_engine(f"sqlite:///{var / 'event_pipeline.sqlite'}")

        def upload_done() -> bool:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT status FROM uploads")).scalars().all()
            return rows == ["done"]

        elapsed = _wait_for("the upload to be imported", upload_done, 240, proc, log)
        print(f"drop -> done: {elapsed:.1f}s (since drop {time.monotonic() - dropped:.1f}s)")
        with engine.connect() as conn:
            up = conn.execute(sa.text("SELECT * FROM uploads")).mappings().one()
            participants = conn.execute(sa.text("SELECT count(*) FROM participants")).scalar_one()
            tokens = conn.execute(sa.text("SELECT count(*) FROM access_tokens")).scalar_one()
        assert (up["rows_in_file"], up["loaded_new"], up["rejected_rows"], up["duplicates_in_file"]) == (20, 15, 3, 2)
        assert participants == 15 and tokens == 15
        assert not list(var.rglob("*.png"))  # QR codes live only inside the mails
        assert len(list(outbox_messages(var / "outbox", "welcome"))) == 15
        assert not any(p for p in inbox.iterdir() if not p.name.startswith("."))
        processed = var / "processed" / "e2e-2026"
        _wait_for("the original to be handed back", lambda: len(list(processed.glob("*.csv"))) == 2, 60, proc, log)
        assert sorted(p.name.split("-", 2)[-1] for p in processed.glob("*.csv")) == [
            "participants (1).csv",
            "participants.csv",
        ]
        notes = [p.read_text(encoding="utf-8") for p in processed.glob("*.reason.txt")]
        assert len(notes) == 1 and "identical to upload" in notes[0]

        import dagster as dg

        def runs() -> list[dg.RunRecord]:
            os.environ["DAGSTER_HOME"] = home["DAGSTER_HOME"]
            try:
                with dg.DagsterInstance.get() as instance:
                    return list(instance.get_run_records(dg.RunsFilter(job_name="import_upload")))
            finally:
                os.environ.pop("DAGSTER_HOME", None)

        # The app database says done before the run worker has reported the run's end: wait
        # for the run's own state instead of assuming it.
        _wait_for("the run to end", lambda: all(r.dagster_run.is_finished for r in runs()), 120, proc, log)
        [record] = runs()
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        print(f"run duration: {(record.end_time or 0) - (record.start_time or 0):.1f}s")

        needles = [v.encode() for row in s.rows for v in (row[0], row[1], row[1].lower(), row[2]) if v]
        leaked = [
            f"{p}: {n!r}"
            for p in [*Path(home["DAGSTER_HOME"]).rglob("*"), log]
            if p.is_file()
            for n in needles
            if n in p.read_bytes()
        ]
        assert leaked == []
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
