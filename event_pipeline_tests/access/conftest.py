from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from event_pipeline.access.checkin import ScanKeys
from event_pipeline_tests.access import _support


@pytest.fixture
def db(database_url: str) -> Engine:
    """The participants database, once on SQLite and once on PostgreSQL."""
    return _support.engine()


@pytest.fixture
def sqlite_db(var_home: object) -> Engine:
    """SQLite only: for tests about files and processes rather than the database."""
    return _support.engine()


@pytest.fixture
def scan_keys(var_home: object) -> ScanKeys:
    return ScanKeys.from_env()
