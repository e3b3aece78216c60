"""Plain helpers for the access tests: events with participants, token lookups, dumps, QR decoding."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
import zxingcpp
from PIL import Image
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.access.tokens import TOKEN_KEY_ENV, TokenCodec
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.tables import access_tokens, participants
from event_pipeline_tests.support.pipeline import engine as migrated_app_engine


def engine() -> Engine:
    return migrated_app_engine()


def codec() -> TokenCodec:
    return TokenCodec.from_secret(os.environ[TOKEN_KEY_ENV])


def add_event(db: Engine, slug: str = "devcon-2026") -> Event:
    return create_event(db, slug=slug, name=f"Event {slug}", organiser_email="organiser@example.com")


def add_participants(db: Engine, event_id: int, n: int, *, status: str = "active", tag: str = "p") -> list[int]:
    """``n`` participants with an email and phone each (so tests can check neither leaks)."""
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": event_id,
            "email_norm": f"{tag}{i}.e{event_id}@example.com",
            "name": f"참가자 {tag}{i}",
            "phone": f"+8210{event_id:02d}{i:06d}",
            "status": status,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    with db.begin() as conn:
        conn.execute(sa.insert(participants), rows)
        emails = [r["email_norm"] for r in rows]
        ids = conn.execute(
            sa.select(participants.c.id).where(participants.c.email_norm.in_(emails)).order_by(participants.c.id)
        )
        return [int(i) for i in ids.scalars()]


def contact_details(db: Engine) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(sa.select(participants.c.email_norm, participants.c.phone)).all()
    return [value for row in rows for value in row if value]


def live_public_ids(db: Engine, event_id: int | None = None) -> dict[int, str]:
    """participant id -> public id of the live token."""
    stmt = sa.select(access_tokens.c.participant_id, access_tokens.c.public_id).where(access_tokens.c.status == "live")
    if event_id is not None:
        stmt = stmt.where(access_tokens.c.event_id == event_id)
    with db.connect() as conn:
        return {int(pid): str(public_id) for pid, public_id in conn.execute(stmt)}


def all_public_ids(db: Engine) -> list[str]:
    with db.connect() as conn:
        return [str(p) for p in conn.execute(sa.select(access_tokens.c.public_id)).scalars()]


def dump_database_text(db: Engine) -> str:
    """Every value of every table (whatever tables exist now, not just ours), as one text blob."""
    parts: list[str] = []
    with db.connect() as conn:
        for name in sa.inspect(conn).get_table_names():
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            parts.append(f"## {name}")
            for row in conn.execute(sa.select(table)):
                parts.append("\t".join("" if v is None else str(v) for v in row))
    return "\n".join(parts)


def database_files_bytes() -> bytes:
    """The raw SQLite file (and WAL), when the database is the embedded SQLite file."""
    url = settings.database_url()
    if not url.startswith("sqlite:///"):
        return b""
    base = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (base, Path(f"{base}-wal")) if p.exists())


def decode_qr(source: Path | bytes) -> str:
    """What a scanner reads from a PNG file or PNG bytes (a mail's inline image, a ZIP member)."""
    image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    results = zxingcpp.read_barcodes(image)
    name = "PNG" if isinstance(source, bytes) else source.name
    assert len(results) == 1, f"{name}: expected one QR code, found {len(results)}"
    assert results[0].format == zxingcpp.BarcodeFormat.QRCode
    return str(results[0].text)
