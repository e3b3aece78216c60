"""Events and uploads: creation rules and the (event, content) idempotency of registration."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store import uploads as uploads_store
from event_pipeline.store.db import as_utc
from event_pipeline.store.events import Event, EventError, create_event, get_event, list_events
from event_pipeline.store.tables import uploads as uploads_table

SHA_A = "a" * 64
SHA_B = "b" * 64


def _register(engine: Engine, event: Event, sha: str, name: str = "list.csv") -> tuple[uploads_store.Upload, bool]:
    return uploads_store.register_upload(
        engine,
        upload_id=uploads_store.upload_id_for(event.slug, sha),
        event_id=event.id,
        sha256=sha,
        original_name=name,
        stored_path=f"/store/{sha[:8]}/original.csv",
        size_bytes=123,
    )


def test_create_event_then_duplicate_slug_is_refused_unless_exist_ok(engine: Engine) -> None:
    first = create_event(engine, slug="devcon-2026", name="DevCon", organiser_email="org@example.com")

    with pytest.raises(EventError, match="already exists"):
        create_event(engine, slug="devcon-2026", name="Other", organiser_email="org@example.com")
    again = create_event(engine, slug="devcon-2026", name="Other", organiser_email="x@example.com", exist_ok=True)

    assert again == first
    with engine.connect() as conn:
        assert [e.slug for e in list_events(conn)] == ["devcon-2026"]


@pytest.mark.parametrize("slug", ["DevCon", "-x", "x-", "a b", "", "x" * 49, "../etc", "devcon\n", "devcon\r\n"])
def test_bad_slugs_are_refused_with_a_hint(engine: Engine, slug: str) -> None:
    with pytest.raises(EventError, match="invalid event slug"):
        create_event(engine, slug=slug, name="n", organiser_email="org@example.com")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 0


def test_language_and_organiser_email_are_checked(engine: Engine) -> None:
    with pytest.raises(EventError, match="language"):
        create_event(engine, slug="e1", name="n", organiser_email="org@example.com", language="fr")
    with pytest.raises(EventError, match="organiser email"):
        create_event(engine, slug="e1", name="n", organiser_email="nobody")
    with engine.connect() as conn:
        assert get_event(conn, "e1") is None


@pytest.mark.parametrize(
    "organiser_email",
    ["org@example.com\r\n", "org@example.com\nBcc: all@example.com", "a@example.com, b@example.com", "Org <o@x.com>"],
)
def test_organiser_email_must_be_one_address_on_one_line(engine: Engine, organiser_email: str) -> None:
    # A CR/LF here went into the notice's To header, which then failed on every retry.
    with pytest.raises(EventError, match="organiser email"):
        create_event(engine, slug="e1", name="n", organiser_email=organiser_email)
    with engine.connect() as conn:
        assert get_event(conn, "e1") is None


def test_organiser_email_is_stored_normalised(engine: Engine) -> None:
    created = create_event(engine, slug="e1", name="n", organiser_email=" Org@BÜCHER.de ")
    assert created.organiser_email == "org@bücher.de"


def test_starts_at_keeps_the_wall_time_as_written_with_or_without_an_offset(engine: Engine) -> None:
    naive = create_event(engine, slug="e1", name="n", organiser_email="o@x.com", starts_at=datetime(2026, 12, 1, 9))
    seoul = timezone(timedelta(hours=9))
    aware = create_event(
        engine, slug="e2", name="n", organiser_email="o@x.com", starts_at=datetime(2026, 12, 1, 9, tzinfo=seoul)
    )
    for event in (naive, aware):
        assert event.starts_at is not None
        assert as_utc(event.starts_at).strftime("%Y-%m-%d %H:%M") == "2026-12-01 09:00"


def test_register_upload_is_idempotent_per_event_and_content(engine: Engine, event: Event) -> None:
    up, created = _register(engine, event, SHA_A, "list.csv")
    same, created_again = _register(engine, event, SHA_A, "renamed copy.csv")

    assert created is True
    assert created_again is False
    assert same.id == up.id == f"{event.slug}-{SHA_A[:16]}"
    assert same.original_name == "list.csv"  # the first registration wins
    assert same.status == "received"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(uploads_table)).scalar_one() == 1


def test_same_content_for_another_event_and_new_content_are_new_uploads(engine: Engine, event: Event) -> None:
    other = create_event(engine, slug="other-2026", name="Other", organiser_email="org@example.com")

    a, _ = _register(engine, event, SHA_A)
    b, created_b = _register(engine, other, SHA_A)
    c, created_c = _register(engine, event, SHA_B)

    assert created_b and created_c
    assert len({a.id, b.id, c.id}) == 3
    with engine.connect() as conn:
        assert uploads_store.find_by_sha(conn, other.id, SHA_A) == b
        assert {u.id for u in uploads_store.list_uploads(conn, event_id=event.id)} == {a.id, c.id}


def test_update_upload_sets_finished_at_on_terminal_status_and_rejects_unknown_fields(
    engine: Engine, event: Event
) -> None:
    up, _ = _register(engine, event, SHA_A)
    uploads_store.update_upload(engine, up.id, status="running", rows_in_file=20)
    with engine.connect() as conn:
        running = uploads_store.get_upload(conn, up.id)
    assert running is not None and running.finished_at is None and running.rows_in_file == 20

    uploads_store.update_upload(engine, up.id, status="done")
    with engine.connect() as conn:
        done = uploads_store.get_upload(conn, up.id)
    assert done is not None and done.status == "done" and done.finished_at is not None

    with pytest.raises(ValueError, match="unknown upload fields"):
        uploads_store.update_upload(engine, up.id, colour="red")
    with pytest.raises(ValueError, match="never changed"):
        uploads_store.update_upload(engine, up.id, seq=0)


def test_a_long_original_name_is_cut_to_the_column_size(engine: Engine, event: Event) -> None:
    up, _ = _register(engine, event, SHA_A, "참가자" * 200 + ".csv")
    assert len(up.original_name) == 255


def test_uploads_are_numbered_in_registration_order(engine: Engine, event: Event) -> None:
    other = create_event(engine, slug="other-2026", name="Other", organiser_email="org@example.com")
    a, _ = _register(engine, event, SHA_A)
    again, _ = _register(engine, event, SHA_A)  # a duplicate takes no number from the order
    b, _ = _register(engine, other, SHA_A)
    c, _ = _register(engine, event, SHA_B)

    assert again.seq == a.seq
    assert a.seq < b.seq < c.seq
    with engine.connect() as conn:
        assert [u.id for u in uploads_store.list_uploads(conn)] == [c.id, b.id, a.id]
        assert uploads_store.newer_uploads_exist(conn, event.id, a.seq)
        assert not uploads_store.newer_uploads_exist(conn, event.id, c.seq)
        assert not uploads_store.newer_uploads_exist(conn, other.id, b.seq)  # c is another event's


def test_concurrent_registrations_get_distinct_numbers(engine: Engine, event: Event) -> None:
    shas = [f"{i:x}" * 64 for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        registered = list(pool.map(lambda sha: _register(engine, event, sha[:64]), shas))

    assert all(created for _, created in registered)
    assert len({u.seq for u, _ in registered}) == len(shas)


def test_original_path_and_mail_note_are_kept(engine: Engine, event: Event) -> None:
    up, _ = uploads_store.register_upload(
        engine,
        upload_id=uploads_store.upload_id_for(event.slug, SHA_A),
        event_id=event.id,
        sha256=SHA_A,
        original_name="list.csv",
        stored_path="/store/original.csv",
        size_bytes=1,
        inbox_path="/inbox/devcon-2026/list.csv",
        original_path="/received/devcon-2026/x.csv",
    )
    assert (up.inbox_path, up.original_path, up.mail_note) == (
        "/inbox/devcon-2026/list.csv",
        "/received/devcon-2026/x.csv",
        None,
    )

    note = "mail paused: provider refused the key (HTTP 401)"
    uploads_store.update_upload(engine, up.id, original_path="/processed/devcon-2026/list.csv", mail_note=note)
    with engine.connect() as conn:
        moved = uploads_store.get_upload(conn, up.id)
    assert moved is not None
    assert (moved.inbox_path, moved.original_path, moved.mail_note) == (
        "/inbox/devcon-2026/list.csv",
        "/processed/devcon-2026/list.csv",
        note,
    )
