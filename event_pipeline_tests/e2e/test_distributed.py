"""The distributed topology, started as an operator starts it (``deploy/topology.py``, what
``make run-distributed`` runs): PostgreSQL for both databases, Redis as the Celery broker, a code
server, webserver, daemon and two ``dagster-celery`` workers, every one a separate process on
loopback, sharing nothing but the databases, the broker and the upload store. Mail goes to the
TLS SendGrid stand-in.

First three files for two events (one of 20,000 rows) are imported: every upload done with the
right counts, every participant mailed exactly once, steps run on both workers (their names are
in the event log), no participant data under DAGSTER_HOME (files and the Dagster database
itself). Then one worker is SIGKILLed while it sends a big upload's welcome mail: the step runs
again on the other worker and the upload completes, with duplicates within docs/email.md's bound.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml

from event_pipeline_tests.conftest import IN_CI
from event_pipeline_tests.support.deployment import Deployment
from event_pipeline_tests.support.participants import Sample, csv_bytes, sample
from event_pipeline_tests.support.ports import free_port
from event_pipeline_tests.support.postgres import find_pg_bin
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid
from event_pipeline_tests.support.topology import stop_topology

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
WORKERS = 2
MAIL_WORKERS = 32
MAIL_PROCESSES = 2
# docs/email.md: a killed dispatcher repeats at most its requests on the wire plus answered but
# unrecorded ones, 2 x workers per dispatching process.
DUPLICATE_BOUND = 2 * MAIL_WORKERS * MAIL_PROCESSES
# How long a killed worker's task waits before another worker takes it (deploy/celery.yaml ships
# 20 minutes, sized for the biggest upload's mail). It must exceed the longest step, or a live
# step is handed to the second worker too: a 20,000-row welcome step took 53-84 s here.
VISIBILITY_S = 120
START_S = 180
BIG, SMALL = "big-2026", "small-2026"


def _require(program: str) -> None:
    found = find_pg_bin(program) if program in ("initdb", "pg_dump") else shutil.which(program)
    if found is None:
        message = f"{program} is needed for the distributed topology (apt-get install redis-server postgresql)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Stand:
    deployment: Deployment
    fake: FakeSendGrid
    proc: subprocess.Popen[bytes]
    log: Path
    pg_port: int

    @property
    def var(self) -> Path:
        return self.deployment.var

    def state(self) -> dict[str, object]:
        path = self.var / "topology.json"
        return dict(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else {}

    def processes(self) -> dict[str, dict[str, object]]:
        return {str(p["name"]): p for p in self.state()["processes"]}  # type: ignore[attr-defined]

    def log_tail(self) -> str:
        parts = [self.log.read_text(errors="replace")[-3000:]]
        for name in ("daemon", "worker-1", "worker-2", "code-server"):
            path = self.var / "logs" / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def wait_for(self, what: str, check: object, timeout_s: float) -> float:
        assert callable(check)
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if check():
                return time.monotonic() - start
            if self.proc.poll() is not None:
                pytest.fail(f"topology.py exited early ({self.proc.returncode}):\n{self.log_tail()}")
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{self.log_tail()}")


def _celery_config(path: Path) -> Path:
    """deploy/celery.yaml with a visibility timeout that fits the test's wall time."""
    config = yaml.safe_load((REPO / "deploy" / "celery.yaml").read_text(encoding="utf-8"))
    config["execution"]["config"]["config_source"]["broker_transport_options"]["visibility_timeout"] = VISIBILITY_S
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


# One topology per test: the crash test's big upload must not start on a table holding the first
# test's 20,000 sent deliveries (see the note at the crash test).
@pytest.fixture
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    for program in ("redis-server", "initdb", "pg_dump"):
        _require(program)
    root = tmp_path_factory.mktemp("distributed")
    pg_port, web_port, code_port, redis_port = free_port(), free_port(), free_port(), free_port()
    with FakeSendGrid(tls=True, latency_s=0.01) as fake:
        env = {
            **fake.client_env(),
            "EVENT_PIPELINE_MAIL_BACKEND": "sendgrid",
            "EVENT_PIPELINE_MAIL_WORKERS": str(MAIL_WORKERS),
            "EVENT_PIPELINE_MAIL_PROCESSES": str(MAIL_PROCESSES),
        }
        d = Deployment(root, extra_env=env)
        for name in ("DAGSTER_PG_URL", "CELERY_BROKER_URL", "PORT"):
            d.env.pop(name, None)
        log = root / "topology.log"
        argv = [
            sys.executable,
            str(REPO / "deploy" / "topology.py"),
            "--workers", str(WORKERS),
            "--port", str(web_port),
            "--code-server-port", str(code_port),
            "--redis-port", str(redis_port),
            "--pg-port", str(pg_port),
            "--celery-config", str(_celery_config(root / "celery.yaml")),
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=REPO, env=d.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        s = Stand(d, fake, proc, log, pg_port)
        cluster = ""
        try:
            started = s.wait_for("the topology to be up", lambda: s.state().get("ready") is True, START_S)
            print(f"topology up in {started:.0f}s")
            # The URLs topology.py exported to its children; the Dagster instance reads its own.
            d.env["DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/participants"
            dagster_pg = f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/dagster"
            d.env["DAGSTER_PG_URL"] = os.environ["DAGSTER_PG_URL"] = dagster_pg
            for slug in (BIG, SMALL, "crash-2026"):
                d.cli("event", "add", slug, "--name", slug.upper(), "--organiser-email", f"org@{slug}.example.com")
            cluster = str(s.state()["postgres_cluster"])
            yield s
            _stop(s)
        finally:
            stop_topology(proc, str(s.state().get("postgres_cluster") or cluster))
            d.close()
            os.environ.pop("DAGSTER_PG_URL", None)


def _stop(s: Stand) -> None:
    """What `make stop` does: SIGTERM to the pid in the pid file; everything ends, in order."""
    pid = int((s.var / "topology.pid").read_text().strip())
    assert pid == s.proc.pid
    os.kill(pid, signal.SIGTERM)
    assert s.proc.wait(timeout=120) == 0, s.log_tail()
    left = s.deployment.processes()
    assert left == [], [p.cmdline() for p in left]
    assert not (s.var / "topology.pid").exists()


# -- what the deployment knows ----------------------------------------------------------------


def _upload(d: Deployment, slug: str, name: str) -> dict[str, object] | None:
    rows = d.rows(
        "SELECT u.* FROM uploads u JOIN events e ON e.id = u.event_id WHERE e.slug = :slug AND u.original_name = :name",
        slug=slug,
        name=name,
    )
    return dict(rows[0]) if rows else None


def _runs_finished(d: Deployment) -> bool:
    records = d.runs("import_upload")
    return bool(records) and all(r.dagster_run.is_finished for r in records)


def _welcome_counts(fake: FakeSendGrid, event_id: int) -> Counter[int]:
    return Counter(
        int(a["delivery_id"])
        for a in (m.body.get("custom_args", {}) for m in fake.messages)
        if a.get("kind") == "welcome" and a.get("event_id") == str(event_id)
    )


def _step_workers(d: Deployment, run_id: str) -> dict[str, set[str]]:
    """step key -> the Celery workers (``worker-N@host``) that executed it, from the event log."""
    found: dict[str, set[str]] = {}
    with d.instance() as instance:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            data = event.engine_event_data if event is not None else None
            worker = data.metadata.get("Celery worker") if data is not None else None
            if event is not None and worker is not None and event.step_key:
                found.setdefault(event.step_key, set()).add(str(worker.value))
    return found


def _stages(steps: dict[str, set[str]]) -> dict[str, set[str]]:
    """asset -> workers: welcome_emails is a graph (plan, one step per chunk, finish)."""
    found: dict[str, set[str]] = {}
    for step, workers in steps.items():
        found.setdefault(step.split(".", 1)[0], set()).update(workers)
    return found


def _chunk_workers(steps: dict[str, set[str]]) -> dict[str, set[str]]:
    return {step: workers for step, workers in steps.items() if ".send_welcome_chunk[" in step}


def _run_of(d: Deployment, upload_id: str) -> dg.RunRecord:
    [record] = [r for r in d.runs("import_upload") if r.dagster_run.tags.get("dagster/partition") == upload_id]
    return record


def _pii_found(s: Stand, samples: list[Sample]) -> list[str]:
    """Participant names, emails and phones anywhere under DAGSTER_HOME, in the Dagster database
    (a plain-text dump of every table) or in any process's log."""
    names = {row[0] for x in samples for row in x.rows if row[0]}
    emails = {row[1].lower() for x in samples for row in x.rows if "@" in row[1]}
    phones = {row[2] for x in samples for row in x.rows} | {
        "+8210" + row[2][4:].replace("-", "") for x in samples for row in x.rows
    }
    dump = subprocess.run(
        [str(find_pg_bin("pg_dump")), "-h", "127.0.0.1", "-p", str(s.pg_port), "-U", "postgres", "dagster"],
        capture_output=True,
        check=True,
    ).stdout
    sources: dict[str, bytes] = {"dagster database": dump}
    for folder in (s.var / "dagster_home", s.var / "logs"):
        for path in folder.rglob("*"):
            if path.is_file():
                sources[str(path)] = path.read_bytes()
    leaked = []
    for where, data in sources.items():
        text = data.decode("utf-8", errors="replace")
        hits = {m.lower() for m in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text)} & emails
        hits |= set(re.findall(r"010-\d{4}-\d{4}|\+8210\d{8}", text)) & phones
        hits |= {n for n in names if n in text}
        leaked += [f"{where}: {hit}" for hit in sorted(hits)[:3]]
    return leaked


# -- the tests --------------------------------------------------------------------------------


def test_three_uploads_for_two_events_spread_over_two_workers(stand: Stand) -> None:
    d, fake = stand.deployment, stand.fake
    files = {
        (BIG, "big.csv"): sample(20_000, invalid=7, duplicates=5, seed=1),
        (BIG, "late.csv"): sample(40, invalid=2, duplicates=1, seed=2),
        (SMALL, "small.csv"): sample(60, invalid=3, duplicates=2, seed=3),
    }
    for (slug, name), rows in files.items():
        d.drop(slug, name, csv_bytes(rows.rows))

    def all_done() -> bool:
        ups = [_upload(d, slug, name) for slug, name in files]
        return all(u is not None and u["status"] in ("done", "failed", "rejected") for u in ups)

    elapsed = stand.wait_for("the three uploads to finish", all_done, 360)
    stand.wait_for("their runs to end", lambda: _runs_finished(d), 60)
    print(f"three uploads (20,040 + 60 rows) dropped -> done: {elapsed:.0f}s")

    for (slug, name), rows in files.items():
        up = _upload(d, slug, name)
        assert up is not None and up["status"] == "done", up
        counts = (up["rows_in_file"], up["loaded_new"], up["rejected_rows"], up["duplicates_in_file"])
        assert counts == (len(rows.rows), rows.distinct_valid, len(rows.invalid_rows), len(rows.duplicate_rows))

    fake.wait_answered()
    for slug in (BIG, SMALL):
        event_id = int(d.scalar("SELECT id FROM events WHERE slug = :slug", slug=slug))
        expected = d.scalar("SELECT count(*) FROM participants WHERE event_id = :e", e=event_id)
        welcome = _welcome_counts(fake, event_id)
        assert len(welcome) == expected == sum(x.distinct_valid for (s, _), x in files.items() if s == slug)
        assert max(welcome.values()) == 1  # exactly once

    spread: dict[str, dict[str, set[str]]] = {}
    for slug, name in files:
        up = _upload(d, slug, name)
        assert up is not None
        record = _run_of(d, str(up["id"]))
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        spread[name] = _step_workers(d, record.dagster_run.run_id)
        assert len(_stages(spread[name])) == 8, spread[name]  # every step a Celery task
    # 20,000 rows: 4 chunks of 5,000 welcome mails, each its own step, over both workers.
    chunks = _chunk_workers(spread["big.csv"])
    assert len(chunks) == 4, sorted(chunks)
    print(f"mail chunks of the big upload per worker: {Counter(w for ws in chunks.values() for w in ws)}")
    big_workers = {w for ws in chunks.values() for w in ws}
    all_workers = {w for run in spread.values() for ws in run.values() for w in ws}
    print(f"steps per worker, big upload: {Counter(w for ws in spread['big.csv'].values() for w in ws)}")
    print(f"steps per worker, all uploads: {Counter(w for r in spread.values() for ws in r.values() for w in ws)}")
    assert {w.split("@")[0] for w in all_workers} == {"worker-1", "worker-2"}
    assert {w.split("@")[0] for w in big_workers} == {"worker-1", "worker-2"}, spread["big.csv"]

    assert _pii_found(stand, list(files.values())) == []
    # Seen: every worker start left dagster-celery's config module, broker URL and all, in
    # DAGSTER_HOME/dagster_celery/config/<uuid>/ for good.
    assert not list((stand.var / "dagster_home").rglob("dagster_celery_config.py"))
    # No IO manager output (fs_io_manager would write storage/<asset name>/<partition>): what
    # Dagster keeps on disk is compute logs of steps and of sensor ticks.
    storage = stand.var / "dagster_home" / "storage"
    assets = {"upload_file", "parsed_rows", "validated_rows", "participants", "access_tokens", "qr_codes"}
    assets |= {"welcome_emails", "import_report"}
    stored = [p.relative_to(storage) for p in storage.rglob("*") if p.is_file()]
    assert stored and not [p for p in stored if assets & set(p.parts)], stored[:5]
    assert all("compute_logs" in p.parts or p.parts[0] == "__repository__" for p in stored), stored[:5]


def _sent(d: Deployment, event_id: int) -> int:
    return int(
        d.scalar(
            "SELECT count(*) FROM email_deliveries WHERE kind = 'welcome' AND status = 'sent' AND event_id = :e",
            e=event_id,
        )
    )


def test_a_worker_killed_mid_mail_leaves_the_upload_to_the_other(stand: Stand) -> None:
    """The worker is killed while it sends one of the big upload's mail chunks: the other worker
    sends the remaining chunks, the killed chunk's task is redelivered (visibility timeout) and
    re-run there; its dead claims are taken back by whichever chunk step starts next.

    Seen when this ran on the first test's topology, before mail went out in chunks: the second
    20,000-row upload's single welcome step made no progress for minutes, its claim_due UPDATEs
    running 50-80 s each on PostgreSQL (LWLock LockManager waits), until the visibility timeout
    handed the step to the other worker as well. Chunk steps claim inside an id range (the
    primary key's order) instead of scanning the whole queue; a topology of its own keeps this
    test about the killed worker."""
    d, fake = stand.deployment, stand.fake
    slug = "crash-2026"
    rows = sample(20_000, invalid=7, duplicates=5, seed=9)
    event_id = int(d.scalar("SELECT id FROM events WHERE slug = :slug", slug=slug))
    d.drop(slug, "crash.csv", csv_bytes(rows.rows))
    found: dict[str, str] = {}

    def mailing() -> bool:
        up = _upload(d, slug, "crash.csv")
        if up is None or _sent(d, event_id) < 2_000:
            return False
        chunks = _chunk_workers(_step_workers(d, _run_of(d, str(up["id"])).dagster_run.run_id))
        workers = {w for ws in chunks.values() for w in ws}
        if not workers:
            return False
        found["upload"], found["worker"] = str(up["id"]), next(iter(workers)).split("@")[0]
        return True

    stand.wait_for("the big upload's welcome mail to be under way", mailing, 300)
    victim = stand.processes()[found["worker"]]
    # The worker's machine dies: the worker, its pool process and its mail processes at once.
    os.killpg(int(str(victim["pgid"])), signal.SIGKILL)
    sent_at_kill = _sent(d, event_id)

    def completed() -> bool:
        up = _upload(d, slug, "crash.csv")
        unsent = d.scalar(
            "SELECT count(*) FROM email_deliveries WHERE event_id = :e AND kind = 'welcome' AND status <> 'sent'",
            e=event_id,
        )
        return up is not None and up["status"] == "done" and unsent == 0

    recovered = stand.wait_for("the upload to complete without the killed worker", completed, VISIBILITY_S + 240)
    record = _run_of(d, found["upload"])
    stand.wait_for("its run to end", lambda: _run_of(d, found["upload"]).dagster_run.is_finished, 60)
    record = _run_of(d, found["upload"])
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    fake.wait_answered()
    welcome = _welcome_counts(fake, event_id)
    assert len(welcome) == rows.distinct_valid  # everyone mailed
    twice = sum(n - 1 for n in welcome.values())
    assert twice <= DUPLICATE_BOUND
    survivors = {w for ws in _chunk_workers(_step_workers(d, record.dagster_run.run_id)).values() for w in ws}
    assert any(not w.startswith(f"{found['worker']}@") for w in survivors), survivors
    up = _upload(d, slug, "crash.csv")
    assert up is not None and up["loaded_new"] == rows.distinct_valid
    print(
        f"killed {found['worker']} after {sent_at_kill} of {rows.distinct_valid} welcome mails; "
        f"done {recovered:.0f}s later, {twice} sent twice (bound {DUPLICATE_BOUND})"
    )
