"""Polling SendGrid's suppression lists (bounces, blocks, invalid emails) since a cursor.

Plain Python over the official client, so it is testable without Dagster; the Dagster sensor
(``defs/mail_sensors.py``) only keeps the cursor and reports counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sendgrid import SendGridAPIClient
from sqlalchemy.engine import Engine

from event_pipeline.identity import normalise_email
from event_pipeline.mail.senders import redact
from event_pipeline.store.suppressions import SuppressedAddress, apply_suppressions

# SendGrid list name -> participants.email_status
KINDS = {"bounces": "bounced", "blocks": "blocked", "invalid_emails": "invalid"}
PAGE_SIZE = 500  # SendGrid's maximum for the suppression endpoints


@dataclass
class BounceCursor:
    """Per list, the newest ``created`` (unix seconds) already applied.

    The next poll asks for ``start_time=<that value>``: entries created in that same second
    are fetched again and re-applied, which is harmless (applying is idempotent) and means an
    entry that landed in the cursor's second after the previous poll is not missed.
    """

    since: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: str | None) -> BounceCursor:
        data = json.loads(raw) if raw else {}
        return cls({k: int(v) for k, v in data.items() if k in KINDS})

    def to_json(self) -> str:
        return json.dumps(self.since, sort_keys=True)


@dataclass(frozen=True)
class PollResult:
    cursor: BounceCursor
    fetched: dict[str, int]  # entries read per list
    participants_marked: int
    deliveries_bounced: int


def fetch_list(client: SendGridAPIClient, kind: str, *, start_time: int) -> list[dict[str, Any]]:
    """Every entry of one suppression list created at or after ``start_time``, page by page.

    Raises the client's HTTPError / OSError on failure; the caller keeps its old cursor.
    """
    entries: list[dict[str, Any]] = []
    offset = 0
    while True:
        params = {"start_time": start_time, "limit": PAGE_SIZE, "offset": offset}
        response = client.client.suppression._(kind).get(query_params=params)
        page = json.loads(response.body or b"[]")
        if not isinstance(page, list):
            raise ValueError(f"unexpected {kind} response: not a list")
        entries += [e for e in page if isinstance(e, dict) and isinstance(e.get("email"), str)]
        if len(page) < PAGE_SIZE:
            return entries
        offset += len(page)


def poll_suppressions(engine: Engine, client: SendGridAPIClient, cursor: BounceCursor) -> PollResult:
    """Fetch what is new on each list, apply it, and return the advanced cursor.

    The cursor advances only after the findings are committed, so a failure anywhere means
    the next poll repeats the work instead of skipping it.
    """
    found: list[SuppressedAddress] = []
    since = dict(cursor.since)
    fetched: dict[str, int] = {}
    for kind, email_status in KINDS.items():
        entries = fetch_list(client, kind, start_time=cursor.since.get(kind, 0))
        fetched[kind] = len(entries)
        for e in entries:
            reason = redact(str(e.get("reason") or ""))
            created = e.get("created")
            at = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None
            found.append(SuppressedAddress(normalise_email(e["email"]), email_status, reason, at))
            if isinstance(created, int):
                since[kind] = max(since.get(kind, 0), created)
    counts = apply_suppressions(engine, found)
    return PollResult(BounceCursor(since), fetched, counts.participants, counts.deliveries)
