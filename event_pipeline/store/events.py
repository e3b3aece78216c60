"""Events: the unit an upload belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline import identity
from event_pipeline.store.tables import events

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
    """The one door every event comes in by (CLI, demo, any API): slug, organiser email and start
    are checked here by the ``identity`` rules, so no caller can skip them.

    ``starts_at`` is the event's local wall time; an offset, if given, is not converted (see
    ``identity.event_wall_time``)."""
    try:
        identity.validate_slug(slug)
        organiser_email = identity.validate_organiser_email(organiser_email)
    except ValueError as exc:
        raise EventError(str(exc)) from None
    if language not in LANGUAGES:
        raise EventError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    if starts_at is not None:
        starts_at = identity.event_wall_time(starts_at)
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
