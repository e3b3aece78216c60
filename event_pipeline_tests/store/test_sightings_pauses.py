"""The inbox sensor's sightings and the mail pauses: small tables every process shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from event_pipeline.store import pauses, sightings


def test_sightings_round_trip_and_save_replaces_the_whole_set(engine: Engine) -> None:
    with engine.connect() as conn:
        assert sightings.load_sightings(conn) == {}

    first = {"/inbox/e/a.csv": ("12:1700000000.5", 1_700_000_000.25, 1), "/inbox/e/b.xlsx": ("9:1", 17.0, 3)}
    sightings.save_sightings(engine, first)
    with engine.connect() as conn:
        assert sightings.load_sightings(conn) == first

    # a.csv seen again, b.xlsx gone from the inbox, c.csv new.
    second = {"/inbox/e/a.csv": ("12:1700000000.5", 1_700_000_000.25, 2), "/inbox/e/c.csv": ("1:2", 18.5, 1)}
    sightings.save_sightings(engine, second)
    with engine.connect() as conn:
        assert sightings.load_sightings(conn) == second

    sightings.save_sightings(engine, {})
    with engine.connect() as conn:
        assert sightings.load_sightings(conn) == {}


def test_many_sightings(engine: Engine) -> None:
    many = {f"/inbox/e/{i}.csv": (f"fp{i}", float(i), i) for i in range(1_200)}
    sightings.save_sightings(engine, many)
    sightings.save_sightings(engine, dict(list(many.items())[:10]))
    with engine.connect() as conn:
        assert sightings.load_sightings(conn) == dict(list(many.items())[:10])


def test_a_pause_starts_once_is_extended_and_cleared(engine: Engine) -> None:
    soon = datetime(2026, 11, 26, 9, 5, tzinfo=UTC)
    with engine.connect() as conn:
        assert pauses.get_pause(conn, "sendgrid") is None

    assert pauses.set_pause(engine, "sendgrid", "mail paused: provider refused the key (HTTP 401)", soon) is True
    with engine.connect() as conn:
        first = pauses.get_pause(conn, "sendgrid")
    assert first is not None
    assert (first.backend, first.reason, first.probe_after) == (
        "sendgrid",
        "mail paused: provider refused the key (HTTP 401)",
        soon,
    )
    assert first.paused_at.tzinfo is not None and first.probe_after.tzinfo is not None

    later = soon + timedelta(minutes=5)
    assert pauses.set_pause(engine, "sendgrid", "mail paused: provider refused the key (HTTP 403)", later) is False
    with engine.connect() as conn:
        extended = pauses.get_pause(conn, "sendgrid")
        assert pauses.get_pause(conn, "outbox") is None  # per backend
    assert extended is not None
    assert (extended.reason, extended.probe_after) == ("mail paused: provider refused the key (HTTP 403)", later)
    assert extended.paused_at == first.paused_at  # still the same pause

    pauses.clear_pause(engine, "sendgrid")
    pauses.clear_pause(engine, "sendgrid")  # clearing twice is harmless
    with engine.connect() as conn:
        assert pauses.get_pause(conn, "sendgrid") is None
    assert pauses.set_pause(engine, "sendgrid", "again", later) is True  # a new pause alerts again
