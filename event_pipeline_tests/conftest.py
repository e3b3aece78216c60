"""Shared fixtures: an isolated var dir per test, both database backends, and the CI rule that
a skipped test is a failed run."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from event_pipeline import settings
from event_pipeline.store.db import dispose_engines

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def var_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[settings.Paths]:
    """A fresh EVENT_PIPELINE_HOME (and DAGSTER_HOME inside it) with a token key in the environment."""
    home = tmp_path / "var"
    monkeypatch.setenv("EVENT_PIPELINE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.setenv("EVENT_PIPELINE_TOKEN_KEY", secrets.token_urlsafe(48))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    monkeypatch.delenv("SENDGRID_HOST", raising=False)
    # Set, it makes a dead dispatcher's claims wait 10 minutes for SendGrid's events.
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    paths = settings.paths()
    for folder in [*paths.all_dirs(), paths.dagster_home]:
        folder.mkdir(parents=True, exist_ok=True)
    yield paths
    dispose_engines()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL server on a free loopback port, for the whole session."""
    from event_pipeline_tests.support.postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer(tmp_path_factory.mktemp("pg")).start()
    except PostgresUnavailable as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each test using this runs once on SQLite and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{var_home.db_file}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = server.create_database()
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    dispose_engines()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        if reporter:
            reporter.write_line(f"CI=true: {skipped} test(s) skipped; in CI every test must run", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
