"""The delivery state machine end to end: real client, FakeSendGrid, real database.

Time is moved by pulling ``next_attempt_at`` earlier or by handing the dispatcher a clock that
runs ahead; nothing here sleeps through a retry delay.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from event_pipeline import processes
from event_pipeline.mail import policy
from event_pipeline.mail.dispatch import DispatchAborted
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.senders import SendGridSender, SendResult
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store.tables import email_deliveries
from event_pipeline_tests.mail.helpers import MailWorld, sendgrid, sent_per_delivery
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

NAMES = [f"Person {i}" for i in range(12)]
ROOT = Path(__file__).resolve().parents[2]


def test_rerunning_enqueue_and_dispatch_sends_each_welcome_once(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES)
    ctx = world.ctx(sendgrid(fake))

    assert world.enqueue() == 12
    first = messages.dispatch(world.engine, ctx)
    assert world.enqueue() == 0
    second = messages.dispatch(world.engine, ctx)

    assert (first.sent, second.sent, second.claimed) == (12, 0, 0)
    assert sorted(sent_per_delivery(fake).values()) == [1] * 12
    rows = world.rows()
    assert {r["status"] for r in rows} == {"sent"} and {r["attempts"] for r in rows} == {1}
    assert {r["provider_message_id"] for r in rows} == {m.message_id for m in fake.messages}


@pytest.mark.usefixtures("database_url")
def test_concurrent_dispatchers_never_send_a_delivery_twice(world_factory: Callable[..., MailWorld]) -> None:
    world = world_factory([f"Person {i}" for i in range(60)])
    world.enqueue()
    errors: list[BaseException] = []
    with FakeSendGrid(latency_s=0.01) as fake:
        ctx = world.ctx(sendgrid(fake), workers=4)
        barrier = threading.Barrier(3)

        def run() -> None:
            try:
                barrier.wait()
                messages.dispatch(world.engine, ctx)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        per_delivery = sent_per_delivery(fake)

    assert errors == []
    assert len(per_delivery) == 60 and set(per_delivery.values()) == {1}
    assert world.statuses() == {"sent": 60}


@pytest.mark.usefixtures("database_url")
def test_a_claim_left_by_a_dead_dispatcher_is_sent_once_after_release(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES)
    world.enqueue()
    # A dispatcher claims four rows and dies before sending any of them.
    orphaned = deliveries_store.claim_due(world.engine, limit=4)
    ctx = world.ctx(sendgrid(fake))

    live = messages.dispatch(world.engine, ctx)
    # Fresh claims belong to someone who may still be sending: hands off.
    assert live.sent == 8 and world.statuses() == {"sent": 8, "sending": 4}
    assert deliveries_store.release_stale_claims(world.engine, older_than=timedelta(minutes=15), max_attempts=3) == 0

    later = datetime.now(UTC) + timedelta(minutes=16)
    released = deliveries_store.release_stale_claims(
        world.engine, older_than=timedelta(minutes=15), max_attempts=3, now=later
    )
    after = messages.dispatch(world.engine, ctx)

    assert released == 4 and after.sent == 4
    assert sorted(sent_per_delivery(fake).values()) == [1] * 12
    by_id = {r["id"]: r for r in world.rows()}
    assert all(by_id[d.id]["attempts"] == 2 for d in orphaned)  # the lost claim counted as a try


def test_claims_of_a_dead_holder_go_back_at_once_and_live_or_unknown_holders_keep_theirs(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    """Seen: after SIGKILL of a run worker mid-mail, its claims waited 15 minutes for the stale
    limit before the retry could send them."""
    world = world_factory(NAMES)
    world.enqueue()
    finished = subprocess.run(
        [sys.executable, "-c", "from event_pipeline.processes import claimant; print(claimant())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = finished.stdout.strip()  # a dispatcher that has exited
    alive = processes.claimant()  # this test: still running
    elsewhere = dead.replace(":", ":other-host-", 1)  # nobody here can tell
    for holder in (dead, alive, elsewhere):
        deliveries_store.claim_due(world.engine, limit=3, claimant=holder)
    ctx = world.ctx(sendgrid(fake), claimant="proc:the-retry")

    run = messages.send_mail(world.engine, ctx)

    assert run.released == 3
    # The dead holder's 3 and the 3 never claimed go out now; the others stay with their holders.
    assert run.stats.sent == 6 and world.statuses() == {"sent": 6, "sending": 6}
    by_holder = Counter(r["claimed_by"] for r in world.rows() if r["status"] == "sending")
    assert by_holder == {alive: 3, elsewhere: 3}


def test_a_late_outcome_from_a_stale_claim_does_not_overwrite_the_new_one(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:1])
    world.enqueue()
    [stale] = deliveries_store.claim_due(world.engine, limit=1)
    deliveries_store.release_stale_claims(
        world.engine, older_than=timedelta(0), max_attempts=3, now=datetime.now(UTC) + timedelta(seconds=1)
    )
    messages.dispatch(world.engine, world.ctx(sendgrid(fake)))
    assert stale.claimed_at is not None

    written = deliveries_store.record_outcomes(
        world.engine,
        [deliveries_store.Outcome(stale.id, stale.claimed_at, "failed", last_error="late writer")],
    )

    assert written == 0
    [row] = world.rows()
    assert row["status"] == "sent" and row["last_error"] is None


def test_killed_dispatcher_process_duplicates_at_most_its_in_flight_messages(
    world_factory: Callable[..., MailWorld], var_home: object
) -> None:
    workers = 3
    world = world_factory([f"Person {i}" for i in range(40)])
    world.enqueue()
    url = str(world.engine.url.render_as_string(hide_password=False))
    with FakeSendGrid(latency_s=0.05) as fake:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "event_pipeline_tests.mail.dispatcher_proc",
                url,
                fake.host,
                fake.api_key,
                str(workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            while len(fake.messages) < 10 and proc.poll() is None:
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the dispatcher finished before it could be killed"
        # Requests the dead process had on the wire still complete on the server side.
        while fake.requests_total != sum(fake.statuses.values()):
            time.sleep(0.01)
        left_sending = {r["id"] for r in world.rows() if r["status"] == "sending"}

        deliveries_store.release_stale_claims(
            world.engine,
            older_than=timedelta(minutes=15),
            max_attempts=3,
            now=datetime.now(UTC) + timedelta(minutes=16),
        )
        messages.dispatch(world.engine, world.ctx(sendgrid(fake), workers=workers))
        per_delivery = sent_per_delivery(fake)

    assert world.statuses() == {"sent": 40}
    assert len(per_delivery) == 40
    duplicated = {int(k) for k, n in per_delivery.items() if n > 1}
    assert set(per_delivery.values()) <= {1, 2}
    # The crash window: only claims the dead process held can repeat. It holds at most
    # 3 x workers claims (in flight + read-ahead), and only those on the wire or answered but
    # not yet recorded can have reached SendGrid (docs/email.md).
    assert duplicated <= left_sending
    assert len(left_sending) <= 3 * workers
    assert len(duplicated) <= 2 * workers


def _sending_threads() -> list[str]:
    """Mail workers inside a send: running a work item and not waiting for the budget."""
    busy = []
    frames = sys._current_frames()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        if not thread.name.startswith("mail") or frame is None:
            continue
        stack = [(f.f_code.co_name, Path(f.f_code.co_filename).name) for f, _ in traceback.walk_stack(frame)]
        if ("run", "thread.py") in stack and not any(name == "take" for name, _ in stack):
            busy.append(thread.name)
    return busy


def test_answers_never_outrun_recording_by_more_than_twice_the_workers(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    """Seen: the run-worker kill test repeated 136 mails from 2 processes of 32 workers, over the
    documented 2 x workers per process. A dispatcher waiting on SQLite's write lock let its
    workers answer its whole queue meanwhile, and a kill then repeats every answered but
    unrecorded message."""
    workers = 3
    world = world_factory([f"Person {i}" for i in range(40)])
    world.enqueue()
    database = world.engine.url.database
    assert database is not None
    errors: list[BaseException] = []

    def run() -> None:
        try:
            messages.dispatch(world.engine, world.ctx(sendgrid(fake), workers=workers))
        except BaseException as exc:
            errors.append(exc)

    fake.hold_answers(workers)
    dispatcher = threading.Thread(target=run)
    dispatcher.start()
    lock = sqlite3.connect(database, isolation_level=None)
    try:
        fake.wait_held(workers)
        lock.execute("BEGIN IMMEDIATE")  # the next claim or commit waits (busy_timeout: 30 s)
        fake.release_answers()
        deadline = time.monotonic() + 10
        while _sending_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _sending_threads() == []
        fake.wait_answered()
        recorded = lock.execute("SELECT count(*) FROM email_deliveries WHERE status = 'sent'").fetchone()[0]
        unrecorded = len(fake.messages) - recorded
    finally:
        if lock.in_transaction:
            lock.execute("ROLLBACK")
        lock.close()
        dispatcher.join()

    assert errors == []
    assert 0 < unrecorded <= 2 * workers
    assert world.statuses() == {"sent": 40}
    assert set(sent_per_delivery(fake).values()) == {1}


def test_client_error_fails_at_once_and_server_error_waits_for_a_retry(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:2])
    world.enqueue()
    fake.fail_next(1, 400)
    fake.fail_next(1, 503)
    started = datetime.now(UTC)

    stats = messages.dispatch(world.engine, world.ctx(sendgrid(fake), workers=1))

    assert (stats.sent, stats.failed, stats.retrying) == (0, 1, 1)
    failed, retrying = sorted(world.rows(), key=lambda r: r["status"] != "failed")
    assert failed["status"] == "failed" and failed["attempts"] == 1 and failed["next_attempt_at"] is None
    assert "HTTP 400" in failed["last_error"]
    assert retrying["status"] == "awaiting_retry" and retrying["attempts"] == 1
    assert "HTTP 503" in retrying["last_error"]
    due = deliveries_store.as_utc(retrying["next_attempt_at"])
    assert started + policy.RETRY_DELAYS[0] <= due <= datetime.now(UTC) + policy.RETRY_DELAYS[0]
    for row in world.rows():
        assert "@" not in (row["last_error"] or "")


def test_three_failed_attempts_then_failed_with_growing_delays(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:1])
    world.enqueue()
    fake.drop_next(1)  # a dropped connection is taken before any queued status
    fake.fail_next(1, 500)
    fake.fail_next(1, 503)
    ctx = world.ctx(sendgrid(fake))
    delays = []

    for _ in range(3):
        before = datetime.now(UTC)
        messages.dispatch(world.engine, ctx)
        [row] = world.rows()
        if row["next_attempt_at"] is not None:
            delays.append(deliveries_store.as_utc(row["next_attempt_at"]) - before)
            world.shift_due(delays[-1])  # the retry is due now
    again = messages.dispatch(world.engine, ctx)

    [row] = world.rows()
    assert row["status"] == "failed" and row["attempts"] == 3
    assert row["last_error"] == "gave up after 3 attempts: HTTP 503 (service unavailable)"
    assert len(delays) == 2 and delays[0] < delays[1] <= timedelta(hours=24)
    assert again.claimed == 0 and fake.requests_total == 3 and fake.messages == []


def test_a_clock_running_ahead_drives_retries_without_touching_the_database(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:3])
    world.enqueue()
    fake.fail_next(3, 500)
    offset = timedelta(0)

    def clock() -> datetime:
        return datetime.now(UTC) + offset

    first = messages.dispatch(world.engine, world.ctx(sendgrid(fake)), clock=clock)
    offset = policy.RETRY_DELAYS[0] + timedelta(seconds=1)
    second = messages.dispatch(world.engine, world.ctx(sendgrid(fake)), clock=clock)

    assert (first.retrying, second.sent) == (3, 3)
    assert second.attempts == Counter({2: 3})
    assert world.statuses() == {"sent": 3}


def test_short_429_is_waited_for_within_the_same_dispatch_without_using_an_attempt(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:1])
    world.enqueue()
    fake.fail_next(1, 429, retry_after_s=1)
    started = time.time()

    stats = messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    assert (stats.sent, stats.throttled) == (1, 1) and stats.waited_s > 0
    assert fake.statuses == Counter({429: 1, 202: 1})
    [row] = world.rows()
    assert row["status"] == "sent" and row["attempts"] == 1
    # Not sent before the announced reset, which is at least ceil(started + 1).
    [sent] = fake.messages
    assert sent.received_at >= math.ceil(started + 1)


def test_long_429_is_left_for_the_schedule(world_factory: Callable[..., MailWorld], fake: FakeSendGrid) -> None:
    world = world_factory(NAMES[:2])
    world.enqueue()
    fake.fail_next(2, 429, retry_after_s=600)
    before = datetime.now(UTC)

    stats = messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    assert (stats.sent, stats.retrying, stats.throttled, stats.waited_s) == (0, 2, 2, 0.0)
    for row in world.rows():
        assert row["status"] == "awaiting_retry" and row["attempts"] == 0
        due = deliveries_store.as_utc(row["next_attempt_at"])
        assert before + timedelta(seconds=599) <= due <= datetime.now(UTC) + timedelta(seconds=601)
    world.shift_due(timedelta(seconds=601))
    assert messages.dispatch(world.engine, world.ctx(sendgrid(fake))).sent == 2


def test_429_without_reset_window_left_gives_up_after_24_hours(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:1])
    world.enqueue()
    with world.engine.begin() as conn:  # queued a day ago
        conn.execute(sa.update(email_deliveries).values(created_at=datetime.now(UTC) - timedelta(hours=23, minutes=59)))
    fake.fail_next(1, 429, retry_after_s=600)

    messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    [row] = world.rows()
    assert row["status"] == "failed" and row["last_error"].startswith("gave up after 24 h")


def test_a_rejected_api_key_stops_the_dispatch_and_fails_nothing(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES)
    world.enqueue()
    wrong = SendGridSender("SG.revoked", host=fake.host, timeout_s=5)

    with pytest.raises(DispatchAborted, match="HTTP 401"):
        messages.dispatch(world.engine, world.ctx(wrong, workers=2))

    rows = world.rows()
    assert {r["status"] for r in rows} <= {"awaiting_retry", "queued"}
    assert {r["attempts"] for r in rows} == {0}
    assert fake.statuses[401] <= 2 * 2  # stopped after the requests already on the wire
    world.shift_due(policy.RETRY_DELAYS[0])
    assert messages.dispatch(world.engine, world.ctx(sendgrid(fake))).sent == 12


class ExplodingSender:
    """A provider integration with a bug: raises something no sender should."""

    name = "exploding"
    idempotent = False

    def send(self, message: OutgoingMessage) -> SendResult:
        raise KeyError(message.to)


def test_a_sender_bug_uses_up_attempts_instead_of_looping(world_factory: Callable[..., MailWorld]) -> None:
    world = world_factory(NAMES[:1])
    world.enqueue()

    for _ in range(5):
        messages.dispatch(world.engine, world.ctx(ExplodingSender()))
        world.shift_due(timedelta(hours=3))

    [row] = world.rows()
    assert row["status"] == "failed" and row["attempts"] == 3
    assert row["last_error"] == "gave up after 3 attempts: unexpected KeyError"  # no address from the KeyError


def test_a_participant_who_bounced_after_enqueue_is_dropped_not_sent(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    from event_pipeline.store.tables import participants

    world = world_factory(NAMES[:2])
    world.enqueue()
    with world.engine.begin() as conn:
        conn.execute(
            sa.update(participants).where(participants.c.email_norm == world.emails[0]).values(email_status="bounced")
        )

    stats = messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    assert (stats.sent, stats.skipped) == (1, 1)
    assert world.statuses() == {"sent": 1, "dropped": 1}
    assert [m.body["personalizations"][0]["to"][0]["email"] for m in fake.messages] == [world.emails[1]]
