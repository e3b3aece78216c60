"""The hourly bounce digest: one mail per event and hour to the organiser, listing the mail that
bounced, was blocked or was dropped since the last digest (each delivery in exactly one digest)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from event_pipeline.steps import messages
from event_pipeline.store import digests as digests_store


@dataclass(frozen=True)
class DigestRun:
    digests: list[digests_store.DigestQueued]
    run: messages.MailRun

    @property
    def reported(self) -> int:
        return sum(q.deliveries for q in self.digests)

    def as_metadata(self) -> dict[str, int | str]:
        return {"digests_queued": len(self.digests), "deliveries_reported": self.reported, **self.run.as_metadata()}


def send_bounce_digests(engine: Engine, ctx: messages.MailContext, *, now: datetime | None = None) -> DigestRun:
    """Queue this hour's digests and send every digest that is due (earlier ones a pause held back too)."""
    queued = digests_store.queue_digests(engine, now=now)
    return DigestRun(queued, messages.send_mail(engine, ctx, kinds=(digests_store.KIND,)))
