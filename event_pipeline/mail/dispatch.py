"""Send claimed deliveries with bounded concurrency and record each outcome."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.policy import MAX_ATTEMPTS, next_attempt_at
from event_pipeline.mail.senders import PermanentSendError, Sender, TransientSendError
from event_pipeline.store import deliveries as store
from event_pipeline.store.deliveries import Delivery

log = logging.getLogger(__name__)

MessageBuilder = Callable[[list[Delivery]], dict[int, OutgoingMessage]]


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    attempts: Counter[int] = field(default_factory=Counter)

    def as_metadata(self) -> dict[str, int]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "skipped": self.skipped,
        }


def _attempt(sender: Sender, delivery: Delivery, message: OutgoingMessage) -> dict[str, Any]:
    now = datetime.now(UTC)
    try:
        result = sender.send(message)
    except PermanentSendError as exc:
        return {"id": delivery.id, "status": "failed", "last_error": str(exc)[:500]}
    except TransientSendError as exc:
        when = next_attempt_at(delivery.attempts, now, delivery.created_at, exc.retry_at)
        if when is None:
            return {"id": delivery.id, "status": "failed", "last_error": f"gave up: {exc}"[:500]}
        return {"id": delivery.id, "status": "awaiting_retry", "last_error": str(exc)[:500], "next_attempt_at": when}
    except Exception as exc:  # an unexpected sender bug must not leave the row stuck in `sending`
        log.exception("sender raised unexpectedly for delivery %s", delivery.id)
        return {"id": delivery.id, "status": "awaiting_retry", "last_error": type(exc).__name__, "next_attempt_at": now}
    return {"id": delivery.id, "status": "sent", "provider_message_id": result.message_id, "sent_at": now}


def dispatch_due(
    engine: Engine,
    sender: Sender,
    build: MessageBuilder,
    *,
    event_id: int | None = None,
    kinds: tuple[str, ...] | None = None,
    workers: int = 8,
    batch_size: int = 500,
    max_batches: int | None = None,
    progress: Callable[[DispatchStats], None] | None = None,
) -> DispatchStats:
    """Claim due deliveries batch by batch and send them; returns aggregate counts (no PII)."""
    stats = DispatchStats()
    batches = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mail") as pool:
        while max_batches is None or batches < max_batches:
            claimed = store.claim_due(engine, limit=batch_size, event_id=event_id, kinds=kinds)
            if not claimed:
                break
            batches += 1
            stats.claimed += len(claimed)
            messages = build(claimed)
            outcomes: list[dict[str, Any]] = []
            sendable = []
            for d in claimed:
                if d.id in messages:
                    sendable.append(d)
                else:  # recipient vanished or bounced since enqueue
                    outcomes.append({"id": d.id, "status": "dropped", "last_error": "no longer deliverable"})
            outcomes += list(pool.map(lambda d: _attempt(sender, d, messages[d.id]), sendable))
            store.record_outcomes(engine, outcomes)
            for d, o in zip(claimed, sorted(outcomes, key=lambda o: o["id"]), strict=True):
                status = o["status"]
                if status == "sent":
                    stats.sent += 1
                    stats.attempts[d.attempts] += 1
                elif status == "awaiting_retry":
                    stats.retrying += 1
                elif status == "failed":
                    stats.failed += 1
                else:
                    stats.skipped += 1
            if progress is not None:
                progress(stats)
    return stats


__all__ = ["MAX_ATTEMPTS", "DispatchStats", "dispatch_due"]
