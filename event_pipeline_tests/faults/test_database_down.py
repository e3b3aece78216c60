"""Issue 12, "Database down": PostgreSQL (the participants database, ``DATABASE_URL``) is stopped
while the import job's load step is writing a 20,000-row upload, then started again.

The job runs for real (``execute_in_process`` on a temp instance, the way `event-pipeline import`
runs it) against a PostgreSQL server of the test's own. Every wait is on state: the server is
stopped once the load's backend is seen mid-write in ``pg_stat_activity`` (inside its INSERT of
the new participants, queued on a row lock another session holds on one of the upload's emails,
so however fast the load is it cannot commit first), and
started again once the event log holds the load step's retry (or the run's end). Afterwards each
valid row is a participant exactly once, the upload's counts add up, and each participant has
one live token; the step's error says which upload, that the database was unavailable, and
never the password. The time from the outage's end to the run's success is printed.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
import sqlalchemy as sa
from dagster_shared.error import SerializableErrorInfo

from event_pipeline import settings
from event_pipeline.defs.assets import TRANSIENT_RETRY
from event_pipeline.defs.schedules import upload_history
from event_pipeline.defs.sensors import import_failure_sensor
from event_pipeline.steps import reconcile
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.store import tables
from event_pipeline.store.db import dispose_engines
from event_pipeline.store.events import Event
from event_pipeline.store.participants import DatabaseUnavailable
from event_pipeline.store.uploads import Upload
from event_pipeline_tests.support.participants import Sample, sample, write_csv
from event_pipeline_tests.support.pipeline import ASSET_CHAIN, engine, failure_sensor_context, make_event, run_upload
from event_pipeline_tests.support.postgres import PostgresServer, PostgresUnavailable

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

ROWS = 20_000
INVALID, DUPLICATES = 3, 2
DBNAME = "participants_db"
# Trust authentication accepts any password; the URL carries one so that the test can show it
# never reaches an error message or the event log.
PASSWORD = f"pw-{uuid.uuid4().hex}"
LOAD_STEP = "participants"
DEADLINE_S = 180
# The run after the outage sends 20,000 welcome mails (QR codes rendered): minutes on 2 cores.
RUN_DEADLINE_S = 480
POLL_S = 0.05


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server of this test's own: it gets stopped, which the session's server must not be."""
    try:
        server = PostgresServer(tmp_path_factory.mktemp("pg")).start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for this test: {exc}")
    yield server
    dispose_engines()
    server.cleanup()


@pytest.fixture
def instance(
    own_server: PostgresServer, var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    own_server.create_database(DBNAME)
    url = sa.make_url(own_server.url(DBNAME)).set(password=PASSWORD).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


@dataclass
class Outage:
    """The import run in a thread, and what the main thread saw of it."""

    instance: dg.DagsterInstance
    upload: Upload
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        def run() -> None:
            try:
                self.results.append(run_upload(self.instance, self.upload.id, run_id=self.run_id))
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, name="import-run")
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def result(self) -> dg.ExecuteInProcessResult:
        assert self.thread is not None
        self.thread.join(timeout=RUN_DEADLINE_S)
        assert not self.thread.is_alive(), "the import run did not end"
        assert not self.errors, self.errors
        [result] = self.results
        return result

    def events(self, kind: dg.DagsterEventType) -> list[dg.EventLogEntry]:
        return [
            e
            for e in self.instance.all_logs(self.run_id, of_type=kind)
            if e.dagster_event is not None and e.dagster_event.step_key in (LOAD_STEP, None)
        ]

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(POLL_S)


def _blocker(server: PostgresServer, event: Event, email: str) -> psycopg.Connection:
    """Another session inserts one of the upload's emails and does not commit: the load's INSERT
    waits on that row part-way through, so the load is caught mid-write however fast it is."""
    conn = psycopg.connect(server.dsn(DBNAME))
    conn.execute(
        "INSERT INTO participants (event_id, email_norm, name, created_at, updated_at) "
        "VALUES (%s, %s, 'blocker', now(), now())",
        (event.id, email),
    )
    return conn


def _load_caught_mid_write(server: PostgresServer) -> bool:
    """The load's backend is in its transaction, inside the INSERT of new participants, waiting
    on a row lock."""
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
            "AND backend_xid IS NOT NULL AND query LIKE %s",
            (DBNAME, "%INSERT INTO participants%"),
        ).fetchone()
    return row is not None and int(row[0]) > 0


def _prepare(instance: dg.DagsterInstance, var_home: settings.Paths) -> tuple[Event, Sample, Outage]:
    event = make_event()
    rows = sample(ROWS, invalid=INVALID, duplicates=DUPLICATES)
    source = write_csv(var_home.home / "in" / "participants.csv", rows.rows)
    upload, _ = register_local_file(engine(), settings.paths(), event_slug=event.slug, source=source)
    return event, rows, Outage(instance, upload)


def _take_down_mid_load(
    outage: Outage, server: PostgresServer, event: Event, rows: Sample, *, how: str = "crash"
) -> psycopg.Connection:
    blocker = _blocker(server, event, rows.rows[ROWS // 2][1].lower())
    outage.start()
    outage.wait_for("the load to be caught mid-write", lambda: not outage.running or _load_caught_mid_write(server))
    assert outage.running, f"the run ended before its load was seen writing: {outage.errors}"
    {"crash": server.stop, "shutdown": server.shut_down}[how]()
    assert not server.is_running()
    return blocker


def _errors(entries: list[dg.EventLogEntry]) -> list[SerializableErrorInfo]:
    out = []
    for entry in entries:
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        error = getattr(data, "error", None)
        if isinstance(error, SerializableErrorInfo):
            out.append(error)
    return out


def _unavailable(error: SerializableErrorInfo) -> str:
    """The message of the DatabaseUnavailable in an error's chain (Dagster wraps a step's last
    retry in its own error)."""
    chain: SerializableErrorInfo | None = error
    while chain is not None:
        if chain.cls_name == DatabaseUnavailable.__name__:
            return chain.message
        chain = chain.cause
    raise AssertionError(f"no DatabaseUnavailable in:\n{error.to_string()}")


def _at(outage: Outage, kind: dg.DagsterEventType) -> float:
    [entry] = outage.events(kind)
    return entry.timestamp


def _assert_imported_once(upload_id: str, event: Event, rows: Sample) -> None:
    valid = rows.distinct_valid
    with engine().connect() as conn:
        per_email = conn.execute(
            sa.select(tables.participants.c.email_norm, sa.func.count())
            .where(tables.participants.c.event_id == event.id)
            .group_by(tables.participants.c.email_norm)
        ).all()
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload_id)).one()
        tokens = conn.execute(
            sa.select(tables.access_tokens.c.participant_id, sa.func.count())
            .where(tables.access_tokens.c.event_id == event.id, tables.access_tokens.c.status == "live")
            .group_by(tables.access_tokens.c.participant_id)
        ).all()
        welcome = conn.execute(
            sa.select(tables.email_deliveries.c.participant_id, sa.func.count())
            .where(tables.email_deliveries.c.event_id == event.id, tables.email_deliveries.c.kind == "welcome")
            .group_by(tables.email_deliveries.c.participant_id)
        ).all()
        blocker_rows = conn.execute(
            sa.select(sa.func.count()).select_from(tables.participants).where(tables.participants.c.name == "blocker")
        ).scalar_one()
    assert len(per_email) == valid and {n for _, n in per_email} == {1}
    assert blocker_rows == 0
    assert up.status == "done"
    assert (up.rows_in_file, up.loaded_new, up.updated, up.unchanged, up.rejected_rows, up.duplicates_in_file) == (
        ROWS,
        valid,
        0,
        0,
        INVALID,
        DUPLICATES,
    )
    assert len(tokens) == valid and {n for _, n in tokens} == {1}
    assert len(welcome) == valid and {n for _, n in welcome} == {1}


def _assert_clear(message: str, upload_id: str) -> None:
    assert f"for upload {upload_id}" in message, message
    assert "participants database" in message and "unavailable while" in message, message
    assert PASSWORD not in message


def _assert_no_password_in_event_log(instance: dg.DagsterInstance, run_id: str) -> None:
    for entry in instance.all_logs(run_id):
        assert PASSWORD not in str(entry), entry


@pytest.mark.parametrize("how", ["crash", "shutdown"])
def test_the_load_step_is_retried_once_the_database_is_back(
    instance: dg.DagsterInstance, var_home: settings.Paths, own_server: PostgresServer, how: str
) -> None:
    """``crash``: the server dies (``-m immediate``); ``shutdown``: an administrator's restart
    (``-m fast``), which tells each session why it is being disconnected."""
    event, rows, outage = _prepare(instance, var_home)
    blocker = _take_down_mid_load(outage, own_server, event, rows, how=how)
    down_at = time.time()
    outage.wait_for(
        "the load step's retry to be recorded",
        lambda: not outage.running or bool(outage.events(dg.DagsterEventType.STEP_UP_FOR_RETRY)),
    )
    own_server.start()
    up_at = time.time()
    blocker.close()

    result = outage.result()
    assert result.success
    assert not outage.events(dg.DagsterEventType.STEP_FAILURE)
    first = _unavailable(_errors(outage.events(dg.DagsterEventType.STEP_UP_FOR_RETRY))[0])
    _assert_clear(first, outage.upload.id)
    assert "unavailable while loading into" in first and "nothing of this upload was written" in first
    _assert_no_password_in_event_log(instance, outage.run_id)
    _assert_imported_once(outage.upload.id, event, rows)
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]
    print(
        f"\n{how}: database down {up_at - down_at:.1f}s; from its return to the load step's success "
        f"{_at(outage, dg.DagsterEventType.STEP_SUCCESS) - up_at:.1f}s, to the run's success "
        f"{_at(outage, dg.DagsterEventType.RUN_SUCCESS) - up_at:.1f}s; "
        f"load attempts {1 + len(outage.events(dg.DagsterEventType.STEP_RESTARTED))}"
    )


def test_a_database_down_longer_than_every_retry_fails_the_run_clearly_and_a_rerun_finishes_it(
    instance: dg.DagsterInstance, var_home: settings.Paths, own_server: PostgresServer
) -> None:
    event, rows, outage = _prepare(instance, var_home)
    blocker = _take_down_mid_load(outage, own_server, event, rows)
    result = outage.result()  # the server stays down until every retry has been used
    assert not result.success
    assert len(outage.events(dg.DagsterEventType.STEP_RESTARTED)) == TRANSIENT_RETRY.max_retries
    failures = outage.events(dg.DagsterEventType.STEP_FAILURE)
    assert [f.dagster_event.step_key for f in failures if f.dagster_event] == [LOAD_STEP]
    # Every attempt after the first found the database gone before loading anything.
    final = _unavailable(_errors(failures)[0])
    _assert_clear(final, outage.upload.id)
    assert "unavailable while connecting to" in final
    _assert_no_password_in_event_log(instance, outage.run_id)

    own_server.start()
    up_at = time.time()
    blocker.close()
    # What the daemon does with a run that failed for good, once the database answers again:
    # the failure sensor records why.
    import_failure_sensor(failure_sensor_context(instance, result))
    with engine().connect() as conn:
        failed = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == outage.upload.id)).one()
    assert (failed.status, failed.reason) == (
        "failed",
        f"step {LOAD_STEP} failed (DatabaseUnavailable); it will be reconciled automatically",
    )

    # What reconcile_uploads_schedule does next: resume from the first asset not materialized.
    later = datetime.now(UTC) + reconcile.GRACE + timedelta(seconds=1)
    [resume] = reconcile.plan(engine(), ASSET_CHAIN, lambda u: upload_history(instance, u), now=later)
    assert (resume.upload_id, resume.assets) == (outage.upload.id, ASSET_CHAIN[ASSET_CHAIN.index(LOAD_STEP) :])
    rerun = run_upload(instance, resume.upload_id, asset_selection=[dg.AssetKey(a) for a in resume.assets])
    assert rerun.success
    assert [c.passed for c in rerun.get_asset_check_evaluations()] == [True]
    _assert_imported_once(outage.upload.id, event, rows)
    [done] = instance.all_logs(rerun.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
    print(f"\nfrom the database's return to the re-run's success {done.timestamp - up_at:.1f}s")
