"""Fixtures for webhook tests: an event with queued welcome mail on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from event_pipeline import settings
from event_pipeline_tests.mail.helpers import MailWorld, make_world
from event_pipeline_tests.support.sendgrid_events import EventPoster, new_signing_key
from event_pipeline_tests.webhook.receiver import running_receiver


@pytest.fixture
def world(var_home: settings.Paths, database_url: str) -> MailWorld:
    world = make_world(var_home, ["Ada", "Bo", "Cy"], url=database_url)
    world.enqueue()
    return world


@pytest.fixture
def poster(world: MailWorld) -> Iterator[EventPoster]:
    """Signs like SendGrid with a fresh key, posting to a receiver that trusts that key."""
    key = new_signing_key()
    poster = EventPoster("", key)
    with running_receiver(world.engine, poster.public_key) as url:
        poster.url = url
        yield poster
