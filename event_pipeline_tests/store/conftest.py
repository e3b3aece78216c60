"""Fixtures for the store tests: a migrated engine on each backend and a fresh event."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from event_pipeline.store.db import make_engine
from event_pipeline.store.events import Event, create_event
from event_pipeline.store.migrate import upgrade
from event_pipeline.store.uploads import register_upload, upload_id_for

COLUMNS = ("email", "name", "phone", "department", "position", "extra")


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = make_engine(database_url)
    upgrade(engine)
    return engine


@pytest.fixture
def event(engine: Engine) -> Event:
    return create_event(engine, slug="devcon-2026", name="DevCon 2026", organiser_email="org@example.com")


def frame(rows: Sequence[Sequence[str]], *, first_row: int = 2) -> pd.DataFrame:
    """Clean rows as the validate step hands them over: (email, name, phone, department, position,
    extra), numbered as the organiser's rows from ``first_row`` (row 1 is the header)."""
    result = pd.DataFrame([list(r) for r in rows], columns=list(COLUMNS))
    result.insert(0, "source_row", pd.Series(range(first_row, first_row + len(result)), dtype="int64"))
    return result


def person(i: int, name: str | None = None, **fields: str) -> tuple[str, ...]:
    values = {"name": name or f"Person {i}", "phone": "", "department": "", "position": "", "extra": "{}"}
    values.update(fields)
    return (f"p{i}@example.com", *(values[c] for c in COLUMNS[1:]))


def register(engine: Engine, event: Event, tag: str) -> tuple[str, int]:
    """Register a (fake) upload of ``event``; returns its id and seq, as a load needs them."""
    sha = (tag.encode().hex() * 64)[:64]
    upload, _ = register_upload(
        engine,
        upload_id=upload_id_for(event.slug, sha),
        event_id=event.id,
        sha256=sha,
        original_name=f"{tag}.csv",
        stored_path=f"/nowhere/{tag}.csv",
        size_bytes=1,
    )
    return upload.id, upload.seq
