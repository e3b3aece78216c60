"""Mail test helpers: an event with participants and tokens built by the real pipeline steps
(QR codes are rendered by the mail builder at send time), and small readers of what FakeSendGrid
received and of the outbox's mbox files."""

from __future__ import annotations

import json
import mailbox
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.access.tokens import TokenCodec
from event_pipeline.mail.senders import Sender, SendGridSender
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import tokens as tokens_store
from event_pipeline.store.db import make_engine
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.migrate import upgrade
from event_pipeline.store.participants import load_participants
from event_pipeline.store.tables import email_deliveries
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

CODEC = TokenCodec.from_secret("x" * 40)
BASE_URL = "https://checkin.example.test/t/"
FROM = "events@example.com"


@dataclass
class MailWorld:
    engine: Engine
    paths: settings.Paths
    event: Event
    emails: list[str]

    def ctx(self, sender: Sender, **kwargs: object) -> messages.MailContext:
        return messages.MailContext(
            sender=sender,
            from_email=FROM,
            from_name="Dev Conference",
            codec=CODEC,
            checkin_base_url=BASE_URL,
            **kwargs,  # type: ignore[arg-type]
        )

    def enqueue(self) -> int:
        return deliveries_store.enqueue_welcome(self.engine, self.event.id, "upload-1")

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(email_deliveries).order_by(email_deliveries.c.id))]

    def statuses(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return deliveries_store.status_counts(conn, event_id=self.event.id)

    def shift_due(self, delta: timedelta) -> None:
        """Pull every pending retry ``delta`` earlier: time passes without sleeping."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(email_deliveries)
                .where(email_deliveries.c.next_attempt_at.is_not(None))
                .values(next_attempt_at=email_deliveries.c.next_attempt_at - delta)
            )


def make_world(
    paths: settings.Paths,
    names: list[str],
    *,
    slug: str = "devcon-2026",
    language: str = "en",
    url: str | None = None,
) -> MailWorld:
    engine = make_engine(url or settings.database_url())
    upgrade(engine)
    event = create_event(
        engine,
        slug=slug,
        name="Dev Conference",
        organiser_email="organiser@example.com",
        language=language,
        starts_at=datetime(2026, 12, 10, 9, 0, tzinfo=UTC),
        location="Seoul COEX",
    )
    emails = [f"p{i}@example.org" for i in range(len(names))]
    frame = pd.DataFrame(
        {
            "email": emails,
            "name": names,
            "phone": ["" for _ in names],
            "department": ["" for _ in names],
            "position": ["" for _ in names],
            "extra": ["{}" for _ in names],
            "source_row": range(2, len(names) + 2),
        }
    )
    load_participants(engine, event_id=event.id, upload_id="upload-1", upload_seq=1, rows=frame)
    tokens_store.issue_missing_tokens(engine, event.id)
    return MailWorld(engine, paths, event, emails)


def sendgrid(fake: FakeSendGrid, timeout_s: float = 5.0) -> SendGridSender:
    return SendGridSender(fake.api_key, host=fake.host, timeout_s=timeout_s)


def custom_args(message_body: dict[str, object]) -> dict[str, str]:
    args = message_body.get("custom_args") or {}
    assert isinstance(args, dict)
    return {str(k): str(v) for k, v in args.items()}


def sent_per_delivery(fake: FakeSendGrid) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in fake.messages:
        key = custom_args(m.body)["delivery_id"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def dumps(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def qr_text(png: bytes) -> str:
    """What a phone camera would read from the QR image."""
    import io

    import zxingcpp
    from PIL import Image

    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1, f"expected one QR code, found {len(results)}"
    return str(results[0].text)


def checkin_url_of(engine: Engine, participant_id: int) -> str:
    from event_pipeline.access.tokens import checkin_url
    from event_pipeline.store.tables import access_tokens

    with engine.connect() as conn:
        public_id = conn.execute(
            sa.select(access_tokens.c.public_id).where(
                access_tokens.c.participant_id == participant_id, access_tokens.c.status == "live"
            )
        ).scalar_one()
    return checkin_url(BASE_URL, CODEC.token_for(public_id))


def mbox_delivery_ids(path: Path) -> list[int]:
    """The ``X-Event-Pipeline-Delivery-Id`` header (the ``delivery_id`` custom arg) of every
    message in one mbox file, in file order, split by the stdlib ``mailbox`` reader."""
    # Headers only: parsing every body (base64 PNGs) made counting thousands of messages slow.
    box = mailbox.mbox(path, factory=BytesHeaderParser().parse, create=False)  # type: ignore[arg-type]
    try:
        return [int(str(m["X-Event-Pipeline-Delivery-Id"])) for m in box.itervalues()]
    finally:
        box.close()


def outbox_per_delivery(directory: Path) -> Counter[int]:
    """How many messages all the outbox's mbox files hold for each delivery id."""
    return Counter(i for path in sorted(directory.glob("*.mbox")) for i in mbox_delivery_ids(path))
