"""Events: the unit an upload belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store.tables import events

# Slugs become folder names and Dagster partition keys, so keep them boring.
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?$")
LANGUAGES = ("ko", "en")


class EventError(ValueError):
    pass


@dataclass(frozen=True)
class Event:
    id: int
    slug: str
    name: str
    starts_at: datetime | None
    location: str
    organiser_email: str
    language: str


def _row_to_event(row: sa.Row[tuple[object, ...]]) -> Event:
    m = row._mapping
    return Event(
        id=m["id"],
        slug=m["slug"],
        name=m["name"],
        starts_at=m["starts_at"],
        location=m["location"],
        organiser_email=m["organiser_email"],
        language=m["language"],
    )


def validate_slug(slug: str) -> str:
    if not SLUG_RE.match(slug):
        raise EventError(
            f"invalid event slug {slug!r}: use 1-48 lower-case letters, digits and inner hyphens (e.g. 'devcon-2026')"
        )
    return slug


def create_event(
    engine: Engine,
    *,
    slug: str,
    name: str,
    organiser_email: str,
    starts_at: datetime | None = None,
    location: str = "",
    language: str = "ko",
    exist_ok: bool = False,
) -> Event:
    validate_slug(slug)
    if language not in LANGUAGES:
        raise EventError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    if "@" not in organiser_email:
        raise EventError("organiser email must be an email address")
    with engine.begin() as conn:
        existing = get_event(conn, slug)
        if existing is not None:
            if exist_ok:
                return existing
            raise EventError(f"event {slug!r} already exists")
        conn.execute(
            sa.insert(events).values(
                slug=slug,
                name=name,
                starts_at=starts_at,
                location=location,
                organiser_email=organiser_email,
                language=language,
                created_at=datetime.now(UTC),
            )
        )
        created = get_event(conn, slug)
    assert created is not None
    return created


def get_event(conn: sa.Connection, slug: str) -> Event | None:
    row = conn.execute(sa.select(events).where(events.c.slug == slug)).first()
    return _row_to_event(row) if row is not None else None


def get_event_by_id(conn: sa.Connection, event_id: int) -> Event:
    row = conn.execute(sa.select(events).where(events.c.id == event_id)).one()
    return _row_to_event(row)


def list_events(conn: sa.Connection) -> list[Event]:
    return [_row_to_event(r) for r in conn.execute(sa.select(events).order_by(events.c.slug))]
