"""Fixtures the resend, digest and correction tests share with the mail tests: a populated event
(``world_factory``) and the SendGrid stand-in (``fake``). Imported by the test modules that use
them, since ``steps/`` has no conftest of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from event_pipeline import settings
from event_pipeline_tests.mail.helpers import MailWorld, make_world
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid


@pytest.fixture(name="world_factory")
def world_factory_fixture(var_home: settings.Paths) -> Callable[..., MailWorld]:
    def factory(names: list[str], **kwargs: object) -> MailWorld:
        return make_world(var_home, names, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture(name="fake")
def fake_fixture() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server
