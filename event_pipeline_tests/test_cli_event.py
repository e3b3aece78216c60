"""`event-pipeline event add`: ISO 8601 start times, and slugs and organiser emails refused by the
same rules as every other door, with a message naming the parameter."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from event_pipeline import settings
from event_pipeline.cli import main
from event_pipeline.store.db import as_utc, make_engine
from event_pipeline.store.events import Event, get_event


@pytest.fixture
def cli(var_home: settings.Paths) -> CliRunner:
    runner = CliRunner()
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    return runner


def _add(cli: CliRunner, slug: str = "devcon-2026", *extra: str, email: str = "org@example.com") -> Result:
    return cli.invoke(main, ["event", "add", slug, "--name", "DevCon", "--organiser-email", email, *extra])


def _stored(slug: str) -> Event | None:
    with make_engine(settings.database_url()).connect() as conn:
        return get_event(conn, slug)


@pytest.mark.parametrize(
    "starts_at",
    [
        "2026-12-01T09:00:00",  # seconds: refused by the old strptime formats
        "2026-12-01T09:00:00+09:00",  # an offset: refused before
        "2026-12-01T09:00Z",
        "2026-12-01 09:00",
        "2026-12-01T09:00",
    ],
)
def test_starts_at_takes_iso_8601_and_keeps_the_wall_time(cli: CliRunner, starts_at: str) -> None:
    result = _add(cli, "devcon-2026", "--starts-at", starts_at)

    assert result.exit_code == 0, result.output
    event = _stored("devcon-2026")
    assert event is not None and event.starts_at is not None
    assert as_utc(event.starts_at).strftime("%Y-%m-%d %H:%M:%S") == "2026-12-01 09:00:00"


def test_starts_at_that_is_not_iso_8601_is_a_usage_error(cli: CliRunner) -> None:
    result = _add(cli, "devcon-2026", "--starts-at", "12/01/2026 9am")

    assert result.exit_code == 2
    assert "Invalid value for '--starts-at'" in result.output
    assert "is not an ISO 8601 date and time" in result.output
    assert "Traceback" not in result.output
    assert _stored("devcon-2026") is None


@pytest.mark.parametrize("slug", ["devcon-2026\n", "devcon-2026\r\n", "DevCon", "dev con"])
def test_a_slug_the_rule_refuses_names_the_argument_and_creates_nothing(
    cli: CliRunner, var_home: settings.Paths, slug: str
) -> None:
    result = _add(cli, slug)

    assert result.exit_code == 2
    assert "Invalid value for 'SLUG'" in result.output and "invalid event slug" in result.output
    assert _stored(slug) is None and _stored(slug.strip()) is None
    assert not (var_home.inbox / slug).exists()


@pytest.mark.parametrize("email", ["org@example.com\r\n", "org@example.com\n", "a@x.com, b@x.com", "nobody"])
def test_an_organiser_email_the_rule_refuses_names_the_option(cli: CliRunner, email: str) -> None:
    result = _add(cli, "devcon-2026", email=email)

    assert result.exit_code == 2
    assert "Invalid value for '--organiser-email'" in result.output and "organiser email" in result.output
    assert _stored("devcon-2026") is None


def test_organiser_email_is_stored_normalised_with_its_idn_domain(cli: CliRunner) -> None:
    result = _add(cli, "devcon-2026", email="Org@BÜCHER.de")

    assert result.exit_code == 0, result.output
    event = _stored("devcon-2026")
    assert event is not None and event.organiser_email == "org@bücher.de"
