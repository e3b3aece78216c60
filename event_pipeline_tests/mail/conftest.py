"""Fixtures for mail tests: a populated event and a SendGrid stand-in on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from event_pipeline import settings
from event_pipeline_tests.mail.helpers import MailWorld, make_world
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid


@pytest.fixture
def world_factory(var_home: settings.Paths) -> Callable[..., MailWorld]:
    def factory(names: list[str], **kwargs: object) -> MailWorld:
        return make_world(var_home, names, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server
