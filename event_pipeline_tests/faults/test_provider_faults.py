"""Provider faults on the real mail path: ``steps.messages`` and ``mail.dispatch`` with the real
``SendGridSender`` (official payload helpers, pooled urllib3) against FakeSendGrid over TLS,
trusted through ``SSL_CERT_FILE`` as a real server would be.

Every outcome is read back from two sides: the ``email_deliveries`` rows (status, attempts,
last_error) and what the server received, by the ``delivery_id`` each message carries in its
custom_args. Time moves by handing the dispatcher a clock that runs ahead; nothing sleeps
through a retry delay.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from event_pipeline import settings
from event_pipeline.mail import policy
from event_pipeline.mail.dispatch import DispatchStats
from event_pipeline.mail.senders import SendGridSender
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import pauses as pauses_store
from event_pipeline_tests.mail.helpers import MailWorld, make_world, sendgrid, sent_per_delivery
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

pytestmark = pytest.mark.faults

HTTP_500 = "HTTP 500 (internal server error)"
HTTP_503 = "HTTP 503 (service unavailable)"
SCHEDULE_TICK = timedelta(minutes=5)  # send_due_emails_schedule's cron, */5 * * * *


class MovingClock:
    """Wall time plus an offset that only moves forward: the dispatcher's view of "now"."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def move_to(self, when: datetime) -> None:
        self.offset = max(self.offset, when - datetime.now(UTC))


@pytest.fixture
def tls_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSendGrid]:
    with FakeSendGrid(tls=True) as server:
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
        yield server


def world_of(paths: settings.Paths, n: int) -> MailWorld:
    world = make_world(paths, [f"Person {i}" for i in range(n)])
    assert world.enqueue() == n
    return world


def due_times(rows: list[dict[str, Any]]) -> list[datetime]:
    return [deliveries_store.as_utc(r["next_attempt_at"]) for r in rows if r["status"] == "awaiting_retry"]


def by_status(world: MailWorld, status: str) -> list[dict[str, Any]]:
    return [r for r in world.rows() if r["status"] == status]


def assert_each_sent_once(world: MailWorld, fake: FakeSendGrid) -> None:
    rows = world.rows()
    assert {r["status"] for r in rows} == {"sent"}
    assert sent_per_delivery(fake) == {str(r["id"]): 1 for r in rows}
    assert {r["provider_message_id"] for r in rows} == {m.message_id for m in fake.messages}


def test_a_burst_of_5xx_waits_for_the_backoff_then_each_message_goes_once(
    var_home: settings.Paths, tls_fake: FakeSendGrid
) -> None:
    world = world_of(var_home, 40)
    tls_fake.fail_next(15, 500)
    tls_fake.fail_next(15, 503)
    clock = MovingClock()
    ctx = world.ctx(sendgrid(tls_fake), workers=4)

    before = clock()
    first = messages.dispatch(world.engine, ctx, clock=clock)
    after = clock()

    assert (first.claimed, first.sent, first.retrying, first.failed) == (40, 10, 30, 0)
    waiting = by_status(world, "awaiting_retry")
    assert len(waiting) == 30 and {r["attempts"] for r in waiting} == {1}
    assert Counter(r["last_error"] for r in waiting) == {HTTP_500: 15, HTTP_503: 15}
    due = due_times(waiting)
    assert before + policy.RETRY_DELAYS[0] <= min(due) <= max(due) <= after + policy.RETRY_DELAYS[0]

    clock.move_to(min(due) - timedelta(seconds=30))
    early = messages.dispatch(world.engine, ctx, clock=clock)
    assert early.claimed == 0 and tls_fake.requests_total == 40  # not before the backoff

    clock.move_to(max(due))
    second = messages.dispatch(world.engine, ctx, clock=clock)

    assert (second.claimed, second.sent) == (30, 30) and second.attempts == Counter({2: 30})
    assert_each_sent_once(world, tls_fake)
    assert Counter(r["attempts"] for r in world.rows()) == {1: 10, 2: 30}
    assert {r["last_error"] for r in world.rows()} == {None}
    assert tls_fake.statuses == Counter({500: 15, 503: 15, 202: 40})


def test_a_429_storm_waits_for_each_reset_and_uses_up_no_attempt(
    var_home: settings.Paths, tls_fake: FakeSendGrid
) -> None:
    world = world_of(var_home, 30)
    # All 30 are throttled with a reset 2 minutes out, then half of them again with a reset
    # 10 minutes out: the dispatch must leave them for later and honour each reset.
    tls_fake.fail_next(30, 429, retry_after_s=120)
    tls_fake.fail_next(15, 429, retry_after_s=600)
    clock = MovingClock()
    ctx = world.ctx(sendgrid(tls_fake), workers=4)

    before = clock().timestamp()
    first = messages.dispatch(world.engine, ctx, clock=clock)
    after = clock().timestamp()

    assert (first.sent, first.retrying, first.throttled, first.waited_s) == (0, 30, 30, 0.0)
    rows = world.rows()
    assert {r["status"] for r in rows} == {"awaiting_retry"} and {r["attempts"] for r in rows} == {0}
    assert {r["last_error"] for r in rows} == {"HTTP 429 rate limited (too many requests)"}
    resets = [t.timestamp() for t in due_times(rows)]
    assert before + 120 <= min(resets) <= max(resets) <= after + 121  # X-RateLimit-Reset, rounded up

    clock.move_to(min(due_times(rows)) - timedelta(seconds=30))
    assert messages.dispatch(world.engine, ctx, clock=clock).claimed == 0
    assert tls_fake.requests_total == 30

    clock.move_to(max(due_times(rows)))
    before = datetime.now(UTC).timestamp()  # the server's reset is on its (real) clock
    second = messages.dispatch(world.engine, ctx, clock=clock)
    after = datetime.now(UTC).timestamp()
    assert (second.sent, second.throttled) == (15, 15)
    throttled_again = by_status(world, "awaiting_retry")
    assert len(throttled_again) == 15 and {r["attempts"] for r in throttled_again} == {0}
    resets = [t.timestamp() for t in due_times(throttled_again)]
    assert before + 600 <= min(resets) <= max(resets) <= after + 601

    clock.move_to(max(due_times(throttled_again)))
    third = messages.dispatch(world.engine, ctx, clock=clock)

    assert (third.sent, third.throttled) == (15, 0)
    assert_each_sent_once(world, tls_fake)
    # Throttled once or twice, yet every message cost exactly one attempt: the one that was sent.
    assert {r["attempts"] for r in world.rows()} == {1}
    assert tls_fake.statuses == Counter({429: 45, 202: 30})


def test_timeouts_and_dropped_connections_use_an_attempt_and_repeat_at_most_the_ambiguous_ones(
    var_home: settings.Paths, tls_fake: FakeSendGrid
) -> None:
    world = world_of(var_home, 20)
    tls_fake.drop_handshake_next(2)  # new connections closed mid-handshake: no request left
    tls_fake.drop_next(2)  # closed before any answer: SendGrid never took these
    tls_fake.cut_next(2)  # accepted, then the connection breaks after the headers
    timeout_s = 1.0  # the sender's read timeout (15 s in production); ample for a loopback answer
    tls_fake.slow_next(2, 2 * timeout_s)  # accepted after the client gave up waiting
    sender = SendGridSender(tls_fake.api_key, host=tls_fake.host, timeout_s=timeout_s)
    clock = MovingClock()
    ctx = world.ctx(sender, workers=4)

    first = messages.dispatch(world.engine, ctx, clock=clock)

    assert (first.sent, first.retrying, first.failed) == (12, 8, 0)
    waiting = by_status(world, "awaiting_retry")
    assert {r["attempts"] for r in waiting} == {1}
    assert Counter(r["last_error"] for r in waiting) == {
        "network error: SSLEOFError": 2,
        "network error: RemoteDisconnected": 2,
        "network error: IncompleteRead": 2,
        "network error: TimeoutError": 2,
    }
    # A timed-out or cut request may have been accepted; a dropped one was not.
    ambiguous = {str(r["id"]) for r in waiting if r["last_error"].endswith(("IncompleteRead", "TimeoutError"))}
    tls_fake.wait_answered()  # the slow requests are accepted only now, well after the timeout
    assert set(sent_per_delivery(tls_fake)) == {str(r["id"]) for r in by_status(world, "sent")} | ambiguous

    clock.move_to(max(due_times(waiting)))
    second = messages.dispatch(world.engine, ctx, clock=clock)
    tls_fake.wait_answered()

    assert (second.sent, second.attempts) == (8, Counter({2: 8}))
    assert world.statuses() == {"sent": 20}
    per_delivery = sent_per_delivery(tls_fake)
    duplicated = {d for d, n in per_delivery.items() if n > 1}
    assert len(per_delivery) == 20 and set(per_delivery.values()) <= {1, 2}
    # The documented bound: only a request that may have been accepted can repeat, once.
    assert duplicated == ambiguous and len(duplicated) <= 4
    assert tls_fake.requests_total == 18 + 8 and len(tls_fake.messages) == 12 + 4 + 8


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_or_sender_stops_at_once_puts_claims_back_and_pauses_once(
    var_home: settings.Paths, tls_fake: FakeSendGrid, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    world = world_of(var_home, 20)
    workers = 4
    # The first `workers` requests are answered only once all are on the wire: exactly that many
    # can be refused before the dispatch stops.
    tls_fake.rendezvous(workers)
    if status == 401:
        sender = SendGridSender("SG.revoked", host=tls_fake.host, timeout_s=5)
        detail = "HTTP 401 (The provided authorization grant is invalid, expired, or revoked)"
    else:
        tls_fake.fail_next(workers, 403)  # an unverified sender identity
        sender = sendgrid(tls_fake)
        detail = "HTTP 403 (forbidden)"
    clock = MovingClock()
    now = clock()

    with caplog.at_level(logging.ERROR):
        run = messages.send_mail(world.engine, world.ctx(sender, workers=workers), now=now, clock=clock)
        again = messages.send_mail(
            world.engine, world.ctx(sender, workers=workers), now=now + timedelta(minutes=1), clock=clock
        )

    reason = f"mail paused: the provider refused the key or sender ({detail})"
    assert (run.paused, run.new_pause, run.stats) == (reason, True, DispatchStats())
    assert (again.paused, again.new_pause) == (reason, False)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"{reason}; fix the configuration, mail resumes by itself within {messages.PAUSE}"
    ]
    with world.engine.connect() as conn:
        pause = pauses_store.get_pause(conn, sender.name)
    assert pause is not None and pause.reason == reason
    # Only the requests already on the wire were refused; the paused call asked nobody.
    assert tls_fake.statuses == Counter({status: workers}) and tls_fake.requests_total == workers
    assert tls_fake.messages == []
    rows = world.rows()
    assert {r["attempts"] for r in rows} == {0}
    put_back = by_status(world, "awaiting_retry")
    assert len(put_back) + len(by_status(world, "queued")) == 20 and len(put_back) >= workers
    assert {r["last_error"] for r in put_back} <= {
        f"not sent: {detail}",
        "not sent: not sent: the provider refused an earlier request of this dispatch",
        "not sent: dispatch stopped",
    }
    assert all(t >= now + policy.RETRY_DELAYS[0] for t in due_times(put_back))

    clock.move_to(now + messages.PAUSE + timedelta(seconds=1))
    resumed = messages.send_mail(world.engine, world.ctx(sendgrid(tls_fake), workers=workers), now=clock(), clock=clock)

    assert (resumed.paused, resumed.stats.sent) == (None, 20)
    with world.engine.connect() as conn:
        assert pauses_store.get_pause(conn, sender.name) is None
    assert_each_sent_once(world, tls_fake)
    assert {r["attempts"] for r in world.rows()} == {1}


def one_rejected(paths: settings.Paths, fake: FakeSendGrid, status: int) -> tuple[MailWorld, dict[str, Any]]:
    """20 welcomes, one of which the provider answers ``status``; returns the world and that row."""
    world = world_of(paths, 20)
    target = world.rows()[7]
    fake.reject(target["id"], status)
    clock = MovingClock()
    ctx = world.ctx(sendgrid(fake), workers=4)

    stats = messages.dispatch(world.engine, ctx, clock=clock)

    assert (stats.sent, stats.failed, stats.retrying) == (19, 1, 0)
    assert fake.statuses == Counter({202: 19, status: 1})
    # Not retried, however long we wait: the same request would be refused the same way.
    clock.move_to(datetime.now(UTC) + policy.WINDOW)
    assert messages.dispatch(world.engine, ctx, clock=clock).claimed == 0
    assert fake.requests_total == 20
    per_delivery = sent_per_delivery(fake)
    assert str(target["id"]) not in per_delivery
    assert per_delivery == {str(r["id"]): 1 for r in world.rows() if r["id"] != target["id"]}
    [failed] = by_status(world, "failed")
    assert failed["id"] == target["id"] and failed["attempts"] == 1 and failed["next_attempt_at"] is None
    assert world.statuses() == {"sent": 19, "failed": 1}
    return world, failed


def test_a_400_for_one_message_fails_it_with_the_providers_reason_and_the_rest_go(
    var_home: settings.Paths, tls_fake: FakeSendGrid
) -> None:
    world, failed = one_rejected(var_home, tls_fake, 400)

    # SendGrid's duplicate-recipient error quotes the address; last_error must not.
    assert failed["last_error"] == (
        "HTTP 400 (personalizations.0: Each email address in the personalization block should be unique"
        " between to, cc, and bcc. We found the first duplicate instance of [<address>] in the"
        " personalizations.0.to field.)"
    )
    assert world.emails[7] not in failed["last_error"]


def test_a_413_for_one_message_fails_it_permanently_with_a_clear_reason_and_the_rest_go(
    var_home: settings.Paths, tls_fake: FakeSendGrid
) -> None:
    _, failed = one_rejected(var_home, tls_fake, 413)

    assert failed["last_error"] == "HTTP 413 (The JSON payload you have included in your request is too large.)"


def test_random_faults_over_3000_messages_deliver_nearly_all_within_three_attempts_once(
    var_home: settings.Paths, tls_fake: FakeSendGrid, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 3000
    world = world_of(var_home, n)
    tls_fake.fail_ratio = 0.10  # seeded random 429/500/503
    clock = MovingClock()
    ctx = world.ctx(sendgrid(tls_fake), workers=16)
    start = clock()

    # The first dispatch, then send_due_emails_schedule's ticks (every 5 minutes), skipping the
    # ones with nothing due. max_wait_s=0: a dispatch leaves even a 1-second 429 reset to the
    # next tick instead of sleeping on it, so the whole 2-hour schedule takes seconds.
    messages.dispatch(world.engine, ctx, clock=clock, max_wait_s=0)
    rounds = 1
    while (due := deliveries_store.next_due_at(world.engine)) is not None:
        assert rounds < 50, "retries never settle"
        clock.move_to(start + SCHEDULE_TICK * math.ceil((due - start) / SCHEDULE_TICK))
        messages.dispatch(world.engine, ctx, clock=clock, max_wait_s=0)
        rounds += 1

    rows = world.rows()
    sent_on = Counter(r["attempts"] for r in rows if r["status"] == "sent")
    delivered = [sum(sent_on[a] for a in range(1, k + 1)) / n for k in (1, 2, 3)]
    with capsys.disabled():
        print(
            f"\n{n} messages, 10 % random 429/500/503, {rounds} rounds: delivered "
            + ", ".join(f"{p:.2%} after attempt {k}" for k, p in enumerate(delivered, 1))
        )
    assert set(sent_on) <= {1, 2, 3} and delivered[2] >= 0.995
    # What was not delivered used up all its attempts; nothing is left in between.
    failed = [r for r in rows if r["status"] != "sent"]
    assert all(r["status"] == "failed" and r["attempts"] == policy.MAX_ATTEMPTS for r in failed)
    assert all(r["last_error"].startswith(f"gave up after {policy.MAX_ATTEMPTS} attempts") for r in failed)
    per_delivery = sent_per_delivery(tls_fake)
    assert per_delivery == {str(r["id"]): 1 for r in rows if r["status"] == "sent"}  # 0 duplicates
    statuses = tls_fake.statuses
    assert statuses[202] == len(per_delivery) and set(statuses) <= {202, 429, 500, 503}
    assert tls_fake.requests_total == sum(statuses.values())
