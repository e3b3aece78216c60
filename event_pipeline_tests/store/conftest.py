"""Fixtures for the store tests: a migrated engine on each backend and a fresh event."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from event_pipeline.store.db import make_engine
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.migrate import upgrade

COLUMNS = ("email", "name", "phone", "department", "position", "extra")


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = make_engine(database_url)
    upgrade(engine)
    return engine


@pytest.fixture
def event(engine: Engine) -> Event:
    return create_event(engine, slug="devcon-2026", name="DevCon 2026", organiser_email="org@example.com")


def frame(rows: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Clean rows as the validate step hands them over: (email, name, phone, department, position, extra)."""
    return pd.DataFrame([list(r) for r in rows], columns=list(COLUMNS))


def person(i: int, name: str | None = None, **fields: str) -> tuple[str, ...]:
    values = {"name": name or f"Person {i}", "phone": "", "department": "", "position": "", "extra": "{}"}
    values.update(fields)
    return (f"p{i}@example.com", *(values[c] for c in COLUMNS[1:]))
