"""Applying a verified batch of SendGrid Event Webhook events (the receiver checks the
signature; this trusts what it is handed).

Each event is recorded once by ``sg_event_id`` (SendGrid sends duplicates) and, if it is about
one of our deliveries (``delivery_id`` among its custom args, which SendGrid puts at the top level
of the event), applied in the same transaction:

- ``processed``, ``delivered``: SendGrid has the message (``store.delivery_events.mark_accepted``);
- ``bounce`` (``type`` bounce or blocked), ``dropped``: the delivery becomes ``bounced`` /
  ``dropped`` and its participant's address is flagged, by the rule the suppression-list poller
  uses too (``store.suppressions``);
- anything else (``deferred``, opens, ...): recorded only.

The event's ``email`` is never read: addresses stay out of logs and of ``delivery_events``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from event_pipeline.mail.senders import redact
from event_pipeline.store import delivery_events as store
from event_pipeline.store import suppressions
from event_pipeline.store.tables import participants

log = logging.getLogger(__name__)

MAX_EVENT_ID = 100  # delivery_events.sg_event_id
ACCEPTED = ("processed", "delivered")


@dataclass(frozen=True)
class ParsedEvent:
    sg_event_id: str
    event: str
    occurred_at: datetime
    delivery_id: int | None
    event_id: int | None
    message_id: str | None  # X-Message-Id: sg_message_id up to its first "."
    bounce_type: str
    reason: str  # addresses redacted


@dataclass
class BatchResult:
    received: int = 0
    recorded: int = 0  # new events
    duplicates: int = 0
    unusable: int = 0  # not an object, or without sg_event_id / event: nothing to dedupe on
    not_ours: int = 0  # no delivery_id, or one this database does not have
    deliveries_changed: int = 0
    participants_flagged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_event(raw: object, *, now: datetime) -> ParsedEvent | None:
    """One event object as the receiver got it; None if it cannot be recorded."""
    if not isinstance(raw, Mapping):
        return None
    sg_event_id, event = raw.get("sg_event_id"), raw.get("event")
    if not isinstance(sg_event_id, str) or not 0 < len(sg_event_id) <= MAX_EVENT_ID or not isinstance(event, str):
        return None
    ts = _int(raw.get("timestamp"))
    try:
        occurred_at = datetime.fromtimestamp(ts, UTC) if ts is not None else now
    except (OverflowError, OSError, ValueError):
        occurred_at = now
    sg_message_id = raw.get("sg_message_id")
    message_id = sg_message_id.split(".", 1)[0][:128] if isinstance(sg_message_id, str) else ""
    return ParsedEvent(
        sg_event_id=sg_event_id,
        event=event[:32],
        occurred_at=occurred_at,
        delivery_id=_int(raw.get("delivery_id")),
        event_id=_int(raw.get("event_id")),
        message_id=message_id or None,
        bounce_type=str(raw.get("type") or "bounce"),
        reason=redact(str(raw.get("reason") or raw.get("response") or "")),
    )


def address_status(e: ParsedEvent) -> str:
    """What a bounce or drop says about the address (participants.email_status)."""
    if e.event == "bounce":
        return "blocked" if e.bounce_type == "blocked" else "bounced"
    reason = e.reason.lower()  # dropped: "Bounced Address", "Invalid", "Unsubscribed Address", ...
    if "invalid" in reason:
        return "invalid"
    return "bounced" if "bounce" in reason else "blocked"


def apply_events(engine: Engine, batch: Sequence[object], *, now: datetime | None = None) -> BatchResult:
    """Record and apply one webhook batch; returns counts (no addresses, no reasons)."""
    now = now or datetime.now(UTC)
    result = BatchResult(received=len(batch))
    parsed = [p for p in (parse_event(raw, now=now) for raw in batch) if p is not None]
    result.unusable = result.received - len(parsed)
    with engine.begin() as conn:
        claimed: dict[int, int | None] = {}
        for p in parsed:
            if p.delivery_id is not None:
                claimed.setdefault(p.delivery_id, p.event_id)
        owners = store.owned_deliveries(conn, claimed)
        ours = [p for p in parsed if p.delivery_id in owners]
        result.not_ours = len(parsed) - len(ours)
        recorded = [
            store.RecordedEvent(
                p.sg_event_id, p.delivery_id if p.delivery_id in owners else None, p.event, p.occurred_at
            )
            for p in parsed
        ]
        new = store.record_new(conn, recorded, received_at=now)
        result.recorded = len(new)
        result.duplicates = len(parsed) - len(new)
        # Acceptances first, then failures: a bounce or drop always wins over a processed event
        # for the same delivery, in whichever order SendGrid batched them.
        accepted: list[store.Acceptance] = []
        failed: dict[tuple[str, str], list[tuple[ParsedEvent, int]]] = {}
        for p in ours:
            did = p.delivery_id
            if did is None or p.sg_event_id not in new:
                continue
            new.discard(p.sg_event_id)  # the same id twice in one batch is applied once
            if p.event in ACCEPTED:
                accepted.append(store.Acceptance(did, p.occurred_at, p.message_id))
            elif p.event in ("bounce", "dropped"):
                status = "bounced" if p.event == "bounce" else "dropped"
                failed.setdefault((status, address_status(p)), []).append((p, did))
        result.deliveries_changed += store.mark_accepted(conn, accepted)
        for (status, email_status), items in failed.items():
            why = [(did, f"{email_status} (SendGrid {p.event} event): {p.reason}") for p, did in items]
            result.deliveries_changed += suppressions.mark_deliveries(conn, why, status)
            people = [(owners[did], p.occurred_at) for p, did in items if owners[did] is not None]
            result.participants_flagged += suppressions.mark_participants(conn, participants.c.id, people, email_status)
    log.info("delivery events: %s", result.as_dict())
    return result
