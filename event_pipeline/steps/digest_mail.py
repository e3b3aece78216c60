"""What the organiser's bounce digest says: how many addresses could not be reached, the first
of them masked in the body, and the full list (names and addresses in clear) as an attached CSV.

The body travels further than an attachment the organiser chooses to open, so only the CSV
names people in full.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from event_pipeline.identity import mask_email
from event_pipeline.mail.message import Attachment, OutgoingMessage
from event_pipeline.mail.render import template_language
from event_pipeline.steps.notices import mask_text
from event_pipeline.store import digests as digests_store
from event_pipeline.store.deliveries import Delivery
from event_pipeline.store.events import Event

if TYPE_CHECKING:
    from event_pipeline.steps.messages import MailContext

KIND = digests_store.KIND
LISTED = 20
CSV_COLUMNS = ("participant_id", "name", "email", "status", "when", "reason")
STATUS_NAMES = {
    "en": {"bounced": "bounced", "blocked": "blocked", "dropped": "dropped", "invalid": "invalid address"},
    "ko": {"bounced": "반송", "blocked": "차단", "dropped": "발송 거부", "invalid": "잘못된 주소"},
}


def digest_csv(rows: list[digests_store.Undeliverable]) -> bytes:
    """The full list, UTF-8 with a BOM so that Excel (what organisers open it in) reads Korean."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r.participant_id, r.name, r.email, r.status, r.at.isoformat() if r.at else "", r.reason])
    return buf.getvalue().encode("utf-8-sig")


def digest_message(
    conn: sa.Connection,
    ctx: MailContext,
    event: Event,
    d: Delivery,
    *,
    event_context: dict[str, Any],
    custom_args: dict[str, str],
) -> OutgoingMessage:
    rows = digests_store.digest_rows(conn, d.dedupe_key)
    language = template_language(event.language)
    names = STATUS_NAMES[language]
    hour = d.dedupe_key.rsplit(":", 1)[-1]
    csv_name = f"bounces-{event.slug}-{hour}.csv"
    context = {
        "event": event_context,
        "total": len(rows),
        "more": max(0, len(rows) - LISTED),
        "hour": f"{hour[:4]}-{hour[4:6]}-{hour[6:8]} {hour[8:10]}:00 UTC",
        "listed": [
            {
                "participant_id": r.participant_id,
                "email": mask_email(r.email),
                "status": names.get(r.status, r.status),
                "reason": mask_text(r.reason),
            }
            for r in rows[:LISTED]
        ],
        "csv_name": csv_name,
    }
    rendered = ctx.templates.render(KIND, event.language, context)
    attachment = Attachment(filename=csv_name, data=digest_csv(rows), mime_type="text/csv")
    return ctx.to_organiser(event, rendered, custom_args=custom_args, key=d.dedupe_key, attachments=(attachment,))
