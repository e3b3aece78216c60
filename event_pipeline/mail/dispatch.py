"""Send due deliveries with bounded concurrency and record each outcome as soon as it is known.

Shape of one dispatch: the calling thread claims only as many deliveries as the worker pool
can start right away (plus a small read-ahead), builds their messages, hands them to the pool,
and writes outcomes to the database as requests return. Workers never touch the database, so
one connection serves any number of workers and outcomes are committed in natural groups.

What is *not* due now is left for later: a retry in 5 minutes or 2 hours belongs to the
``send_due_emails`` schedule, not to a run held open. The one exception is a short wait
(``max_wait_s``, default 5 s) for deliveries that come due very soon, which is what a 429 with
a near X-RateLimit-Reset produces; the dispatch sleeps (never spins) until then, within a total
``wait_budget_s``. See docs/email.md.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.mail import policy
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.policy import MAX_ATTEMPTS
from event_pipeline.mail.senders import (
    PermanentSendError,
    RateLimitedError,
    Sender,
    SenderUnavailableError,
    SendResult,
    TransientSendError,
    redact,
)
from event_pipeline.store import deliveries as store
from event_pipeline.store.deliveries import Delivery, Outcome

log = logging.getLogger(__name__)

MessageBuilder = Callable[[list[Delivery]], dict[int, OutgoingMessage]]
Clock = Callable[[], datetime]
_ERROR_MAX = 500
_MIN_NAP_S = 0.05
FLUSH_AFTER_S = 0.05


def wall_clock() -> datetime:
    return datetime.now(UTC)


class DispatchAborted(RuntimeError):
    """The provider refused our credentials or sender (or none are configured); claims were put
    back or never taken, nothing was failed. ``reason`` is the organiser-readable why."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    throttled: int = 0
    waited_s: float = 0.0
    # Attempt number a delivery was sent on (1 = first try): the retry histogram.
    attempts: Counter[int] = field(default_factory=Counter)

    def as_metadata(self) -> dict[str, int]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "skipped": self.skipped,
            "throttled": self.throttled,
        }

    def count(self, delivery: Delivery, outcome: Outcome) -> None:
        if outcome.status == "sent":
            self.sent += 1
            self.attempts[delivery.attempts] += 1
        elif outcome.status == "awaiting_retry":
            self.retrying += 1
        elif outcome.status == "failed":
            self.failed += 1
        else:
            self.skipped += 1


def attempt(sender: Sender, delivery: Delivery, message: OutgoingMessage, now: datetime) -> Outcome:
    """Send one claimed delivery and turn the result into the row's next state.

    Raises ``SenderUnavailableError`` (the whole dispatch must stop); everything else becomes
    an ``Outcome``. Error texts are redacted of addresses before they can reach the database.
    """
    assert delivery.claimed_at is not None
    did, claim = delivery.id, delivery.claimed_at
    try:
        result = sender.send(message)
    except SenderUnavailableError:
        raise
    except PermanentSendError as exc:
        return Outcome(did, claim, "failed", last_error=redact(str(exc))[:_ERROR_MAX])
    except RateLimitedError as exc:
        when = policy.after_throttle(now, delivery.created_at, exc.retry_at)
        if when is None:
            return Outcome(did, claim, "failed", last_error=f"gave up after 24 h: {redact(str(exc))}"[:_ERROR_MAX])
        error = redact(str(exc))[:_ERROR_MAX]
        return Outcome(
            did, claim, "awaiting_retry", last_error=error, next_attempt_at=when, refund_attempt=True, throttled=True
        )
    except TransientSendError as exc:
        return _retry_or_fail(delivery, now, redact(str(exc)))
    except Exception as exc:
        # A bug in a sender must not leave the row in `sending`, nor loop: it is handled like a
        # transient failure, so it uses up attempts. The type only, in the log too: exception
        # messages and tracebacks may quote the recipient.
        log.error("sender %s raised %s for delivery %s", sender.name, type(exc).__name__, delivery.id)
        return _retry_or_fail(delivery, now, f"unexpected {type(exc).__name__}")
    return Outcome(did, claim, "sent", provider_message_id=result.message_id or None, sent_at=now)


def _retry_or_fail(delivery: Delivery, now: datetime, error: str) -> Outcome:
    assert delivery.claimed_at is not None
    when = policy.after_failure(delivery.attempts, now, delivery.created_at)
    if when is None:
        return Outcome(
            delivery.id,
            delivery.claimed_at,
            "failed",
            last_error=f"gave up after {delivery.attempts} attempts: {error}"[:_ERROR_MAX],
        )
    return Outcome(
        delivery.id, delivery.claimed_at, "awaiting_retry", last_error=error[:_ERROR_MAX], next_attempt_at=when
    )


IDEMPOTENT_BATCH = 1000


def _put_back(delivery: Delivery, reason: str, not_before: datetime | None = None) -> Outcome:
    """The claim is returned unused: it never reached the provider, so it costs no attempt."""
    assert delivery.claimed_at is not None
    return Outcome(
        delivery.id,
        delivery.claimed_at,
        "awaiting_retry",
        last_error=reason[:_ERROR_MAX],
        next_attempt_at=not_before,
        refund_attempt=True,
    )


def dispatch_due(
    engine: Engine,
    sender: Sender,
    build: MessageBuilder,
    *,
    event_id: int | None = None,
    kinds: Iterable[str] | None = None,
    id_range: tuple[int, int] | None = None,
    workers: int = 8,
    read_ahead: int | None = None,
    max_wait_s: float = 5.0,
    wait_budget_s: float = 60.0,
    clock: Clock = wall_clock,
    progress: Callable[[DispatchStats], None] | None = None,
    claimant: str | None = None,
    progress_every: int = 1000,
) -> DispatchStats:
    """Claim due deliveries and send them until none is due (or due within ``max_wait_s``).

    Returns aggregate counts only (no addresses). Raises ``DispatchAborted`` after putting
    every unsent claim back if the provider rejects our credentials or sender identity.
    """
    kinds = tuple(kinds) if kinds is not None else None
    unavailable = getattr(sender, "unavailable", None)
    if unavailable:
        # Fail closed before anything is claimed: a sender that cannot send must never let a
        # delivery look sent (or even look attempted).
        raise DispatchAborted(f"{sender.name} cannot send: {unavailable}", reason=unavailable)
    workers = max(1, min(workers, getattr(sender, "max_workers", workers)))
    journal = sender if isinstance(sender, Journal) else None
    # Claimed-but-unstarted rows wait in the pool's queue. The queue is refilled in chunks of at
    # least half the read-ahead (claiming and building messages costs per batch, and this thread
    # must keep up with all workers), but stays short, so every claim stays far younger than the
    # stale-claim limit. What a hard kill can repeat is bounded by ``budget`` below, not by this.
    # For an idempotent sender a crash repeats nothing visible, so claims and outcomes go in big
    # batches: each small SQLite transaction costs this thread ~10 ms, which capped the outbox at
    # ~300 messages/s with the small batches a real provider needs.
    idempotent = getattr(sender, "idempotent", False)
    if read_ahead is None:
        read_ahead = IDEMPOTENT_BATCH if idempotent else 2 * workers
    read_ahead = max(1, read_ahead)
    capacity = workers + read_ahead
    low_water = workers + read_ahead // 2
    # Outcomes are written in groups of this many, or after FLUSH_AFTER_S at most: one commit per
    # response would cost this thread more than the sends themselves; answered-but-unrecorded
    # messages are what a hard kill can repeat (docs/email.md), so the groups stay small.
    flush_at = IDEMPOTENT_BATCH // 2 if idempotent else max(1, workers // 2)
    # What a hard kill can repeat, bounded here rather than by timing: a worker waits before it
    # sends while 2 x workers messages are sent or on the wire with no committed outcome. Small
    # groups alone did not hold it: a claim or a commit waiting on SQLite's write lock lets the
    # workers answer the whole queue meanwhile (136 repeats from 2 processes, bound 128).
    budget = None if idempotent else _Unrecorded(2 * workers)
    held = 0  # settled outcomes whose send holds a unit of the budget until they are committed
    stats = DispatchStats()
    in_flight: dict[Future[Outcome], Delivery] = {}
    finished: list[tuple[Delivery, Outcome]] = []
    abort: SenderUnavailableError | None = None
    refused_until: datetime | None = None
    drained = False
    next_report = progress_every

    def flush() -> None:
        nonlocal held
        if finished:
            outcomes = [o for _, o in finished]
            ids = [o.delivery_id for o in outcomes]
            checkpoint = None
            if journal is not None:
                journal.sync()
                checkpoint = lambda conn: journal.checkpoint(conn, ids)  # noqa: E731
            store.record_outcomes(engine, outcomes, checkpoint=checkpoint)
            for d, o in finished:
                stats.count(d, o)
                stats.throttled += o.throttled
            finished.clear()
            if budget is not None:
                budget.give(held)
            held = 0

    def settle(done: Iterable[Future[Outcome]]) -> None:
        nonlocal abort, held, refused_until
        now = clock()
        for future in done:
            d = in_flight.pop(future)
            if future.cancelled():
                finished.append((d, _put_back(d, "not sent: dispatch stopped", refused_until)))
                continue
            held += 1
            try:
                finished.append((d, future.result()))
            except SenderUnavailableError as exc:
                # Back off like a failed attempt would, so the schedule does not hammer a
                # provider that keeps refusing us every five minutes; the sends cancelled
                # because of it wait as long.
                refused_until = refused_until or now + policy.RETRY_DELAYS[0]
                finished.append((d, _put_back(d, f"not sent: {redact(str(exc))}", refused_until)))
                if abort is None:
                    abort = exc
                    for f in in_flight:
                        f.cancel()  # unstarted ones come back cancelled and are put back

    # Finished sends arrive here, each once (also cancelled ones): waiting on the in-flight set
    # instead (``concurrent.futures.wait``) hooks into every pending future for each answer,
    # O(in flight) per message: 8 % of the dispatch's CPU, measured with up to 160 in flight.
    completions: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
    gate = _RefusalGate(sender)
    if journal is not None:
        journal.open(engine)
    with _closing(journal), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mail") as pool:
        try:
            while True:
                if abort is None and not drained and len(in_flight) <= low_water:
                    if budget is not None:
                        # Committed first: claiming and building a batch is this thread's longest
                        # stretch away from recording, and the budget must not run dry during it.
                        flush()
                    room = capacity - len(in_flight)
                    claimed = store.claim_due(
                        engine,
                        limit=room,
                        now=clock(),
                        event_id=event_id,
                        kinds=kinds,
                        id_range=id_range,
                        claimant=claimant,
                    )
                    stats.claimed += len(claimed)
                    drained = len(claimed) < room
                    if claimed:
                        _submit(
                            pool, gate, budget, build, claimed, clock(), in_flight, finished, engine, completions.put
                        )
                if not in_flight:
                    flush()
                    if abort is not None:
                        abort = gate.first or abort  # the provider's own answer, not the gate's
                        raise DispatchAborted(
                            f"{sender.name} refused to send ({abort}); unsent deliveries were put back for later",
                            reason=f"the provider refused the key or sender ({abort})",
                        )
                    if not drained:
                        continue
                    if _wait_for_soon_due(engine, (event_id, kinds, id_range), clock, max_wait_s, wait_budget_s, stats):
                        drained = False
                        continue
                    break
                done = _completed(completions, timeout=FLUSH_AFTER_S if finished else None)
                settle(done)
                if len(finished) >= flush_at or not done:
                    flush()
                if progress is not None and stats.sent + stats.failed >= next_report:
                    next_report += progress_every
                    progress(stats)
        except BaseException:
            # Interrupted (run terminated, DB error): unstarted sends are put back and the ones
            # already on the wire are waited for and recorded, so only a hard kill can leave a
            # sent message unrecorded (the documented crash window).
            for f in in_flight:
                f.cancel()
            if budget is not None:
                budget.close()  # a worker waiting for the budget puts its claim back instead
            settle(wait(in_flight).done)
            flush()
            raise
    if progress is not None:
        progress(stats)
    return stats


@runtime_checkable
class Journal(Protocol):
    """A sender that keeps its own record of what it sent (the outbox's files): opened before a
    dispatch, made durable before each batch of outcomes is recorded (``sync``), told in that
    transaction which deliveries it covers (``checkpoint``), closed after."""

    def open(self, engine: Engine) -> None: ...
    def sync(self) -> None: ...
    def checkpoint(self, conn: sa.Connection, delivery_ids: Sequence[int]) -> None: ...
    def close(self) -> None: ...


@contextmanager
def _closing(journal: Journal | None) -> Iterator[None]:
    try:
        yield
    finally:
        if journal is not None:
            journal.close()


class _RefusalGate:
    """The sender, shut for every worker the moment one of them is refused (401/403): workers
    pick queued sends up faster than the dispatching thread can cancel them, and each of
    those would be one more refused request."""

    def __init__(self, sender: Sender) -> None:
        self.sender, self.name, self.idempotent = sender, sender.name, sender.idempotent
        self.refused = threading.Event()
        self.first: SenderUnavailableError | None = None

    def send(self, message: OutgoingMessage) -> SendResult:
        if self.refused.is_set():
            raise SenderUnavailableError("not sent: the provider refused an earlier request of this dispatch")
        try:
            return self.sender.send(message)
        except SenderUnavailableError as exc:
            if not self.refused.is_set():
                self.first = exc
                self.refused.set()
            raise


class _Unrecorded:
    """A count of sends allowed before their outcomes are committed: ``take`` waits for a unit
    (False once closed: do not send), ``give`` returns the units of committed outcomes."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._closed = False
        self._changed = threading.Condition()

    def take(self) -> bool:
        with self._changed:
            while self._free == 0 and not self._closed:
                self._changed.wait()
            if self._closed:
                return False
            self._free -= 1
            return True

    def give(self, units: int) -> None:
        if units:
            with self._changed:
                self._free += units
                self._changed.notify(units)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def _attempt_within(
    budget: _Unrecorded | None, sender: Sender, delivery: Delivery, message: OutgoingMessage, now: datetime
) -> Outcome:
    if budget is not None and not budget.take():
        return _put_back(delivery, "not sent: dispatch stopped")
    return attempt(sender, delivery, message, now)


def _submit(
    pool: ThreadPoolExecutor,
    sender: Sender,
    budget: _Unrecorded | None,
    build: MessageBuilder,
    claimed: list[Delivery],
    now: datetime,
    in_flight: dict[Future[Outcome], Delivery],
    finished: list[tuple[Delivery, Outcome]],
    engine: Engine,
    on_done: Callable[[Future[Outcome]], None],
) -> None:
    try:
        messages = build(claimed)
    except BaseException:
        # Nothing was sent: hand the claims back untouched rather than strand them in `sending`.
        store.record_outcomes(engine, [_put_back(d, "not sent: building the message failed") for d in claimed])
        raise
    for d in claimed:
        message = messages.get(d.id)
        if message is None:  # recipient bounced, was deactivated or lost its QR since enqueue
            assert d.claimed_at is not None
            finished.append((d, Outcome(d.id, d.claimed_at, "dropped", last_error="no longer deliverable")))
        else:
            future = pool.submit(_attempt_within, budget, sender, d, message, now)
            in_flight[future] = d
            future.add_done_callback(on_done)


def _completed(completions: queue.SimpleQueue[Future[Outcome]], timeout: float | None) -> list[Future[Outcome]]:
    """The sends that finished: waits up to ``timeout`` (None: until one does) for the first."""
    try:
        done = [completions.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            done.append(completions.get_nowait())
        except queue.Empty:
            return done


def _wait_for_soon_due(
    engine: Engine,
    scope: tuple[int | None, tuple[str, ...] | None, tuple[int, int] | None],
    clock: Clock,
    max_wait_s: float,
    wait_budget_s: float,
    stats: DispatchStats,
) -> bool:
    """Sleep until the next delivery in scope is due if that is soon; False: leave it to the schedule."""
    event_id, kinds, id_range = scope
    due = store.next_due_at(engine, event_id=event_id, kinds=kinds, id_range=id_range)
    if due is None:
        return False
    delay = (due - clock()).total_seconds()
    if delay > max_wait_s or stats.waited_s + max(delay, 0.0) > wait_budget_s:
        return False
    # At least a short nap: a row can look due here yet be unclaimable for a moment (another
    # dispatcher holds its lock), and retrying the claim at once would spin.
    delay = max(delay, _MIN_NAP_S)
    time.sleep(delay)
    stats.waited_s += delay
    return True


__all__ = ["MAX_ATTEMPTS", "DispatchAborted", "DispatchStats", "attempt", "dispatch_due"]
