"""The Alembic history builds the schema from nothing, matches tables.py, and unwinds cleanly."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from event_pipeline.store.db import make_engine
from event_pipeline.store.migrate import (
    SchemaNotCurrent,
    alembic_config,
    app_engine,
    check_current,
    current_revision,
    head_revision,
    upgrade,
)
from event_pipeline.store.tables import metadata
from event_pipeline.store.uploads import register_upload

APP_TABLES = {
    "events",
    "uploads",
    "participants",
    "access_tokens",
    "checkin_scans",
    "email_deliveries",
    "participant_changes",
    "delivery_events",
    "erasures",
    "inbox_sightings",
    "mail_pauses",
    "outbox_files",
}


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _downgrade(engine: sa.Engine, revision: str) -> None:
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_upgrade_from_empty_reaches_head_and_matches_tables(database_url: str) -> None:
    engine = make_engine(database_url)
    assert _tables(engine) == set()

    upgrade(engine)

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert current_revision(engine) == head
    assert _tables(engine) == APP_TABLES | {"alembic_version"}
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert drift == [], f"migrations and tables.py disagree: {drift}"


def test_constraint_objects_exist_after_upgrade(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    insp = sa.inspect(engine)
    uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("participants")}
    assert ("event_id", "email_norm") in uniques
    live = [i for i in insp.get_indexes("access_tokens") if i["name"] == "uq_access_tokens_live_participant"]
    assert len(live) == 1 and live[0]["unique"]
    options = live[0]["dialect_options"]
    where = options.get("postgresql_where", options.get("sqlite_where"))
    assert "status" in str(getattr(where, "text", where)) and "live" in str(getattr(where, "text", where))


def test_upgrade_is_idempotent(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # `init` then `migrate`, or `migrate` twice: the second is a no-op
    assert current_revision(engine) is not None


def test_downgrade_base_removes_everything_and_upgrade_again_works(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO events (slug, name, organiser_email, location, language, created_at) "
                "VALUES ('x', 'X', 'o@example.com', '', 'ko', CURRENT_TIMESTAMP)"
            )
        )

    _downgrade(engine, "base")

    assert _tables(engine) - {"alembic_version"} == set()
    assert current_revision(engine) is None
    upgrade(engine)
    assert _tables(engine) == APP_TABLES | {"alembic_version"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one() == 0


def _exec(engine: sa.Engine, sql: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_0002_numbers_existing_uploads_and_credits_fields_to_the_last_writer(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0001")
    _exec(
        engine,
        "INSERT INTO events (id, slug, name, organiser_email, location, language, created_at) "
        "VALUES (1, 'e', 'E', 'o@example.com', '', 'ko', CURRENT_TIMESTAMP)",
    )
    # Registered out of id order, and two at the same instant (the id breaks the tie).
    for upload_id, at in [
        ("up-c", "2026-01-03"),
        ("up-a", "2026-01-01"),
        ("up-b2", "2026-01-02"),
        ("up-b1", "2026-01-02"),
    ]:
        _exec(
            engine,
            "INSERT INTO uploads (id, event_id, sha256, original_name, stored_path, size_bytes, created_at) "
            "VALUES (:id, 1, :id, 'f.csv', '/x', 1, :at)",
            id=upload_id,
            at=at,
        )
    people = [("p1", "up-a", "up-c"), ("p2", "up-b1", None), ("p3", None, None), ("p4", "up-a", "gone")]
    for email, created, updated in people:
        _exec(
            engine,
            "INSERT INTO participants (event_id, email_norm, name, created_upload_id, updated_upload_id, "
            "created_at, updated_at) VALUES (1, :e, 'N', :c, :u, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            e=email,
            c=created,
            u=updated,
        )
    # A token points at a participant: the migration must not need to copy that table.
    _exec(
        engine,
        "INSERT INTO access_tokens (event_id, participant_id, public_id, issued_at) "
        "SELECT 1, id, 'tok', CURRENT_TIMESTAMP FROM participants WHERE email_norm = 'p1'",
    )

    upgrade(engine)

    with engine.connect() as conn:
        seqs = {str(r[0]): int(r[1]) for r in conn.execute(sa.text("SELECT id, seq FROM uploads"))}
        fields = {
            str(r[0]): set(r[1:])
            for r in conn.execute(
                sa.text(
                    "SELECT email_norm, name_seq, phone_seq, department_seq, position_seq, extra_seq FROM participants"
                )
            )
        }
    assert seqs == {"up-a": 1, "up-b1": 2, "up-b2": 3, "up-c": 4}
    assert fields == {"p1": {4}, "p2": {2}, "p3": {0}, "p4": {1}}  # p4: updated by an unknown upload
    # New registrations continue after the backfilled numbers (PostgreSQL: the sequence was set).
    new, _ = register_upload(
        engine, upload_id="up-d", event_id=1, sha256="d" * 64, original_name="d.csv", stored_path="/d", size_bytes=1
    )
    assert new.seq == 5

    _downgrade(engine, "0001")  # and back, with the token still pointing at its participant
    assert current_revision(engine) == "0001"
    assert "seq" not in {c["name"] for c in sa.inspect(engine).get_columns("uploads")}


def test_check_current_names_the_command_to_run(database_url: str) -> None:
    engine = make_engine(database_url)
    masked = engine.url.render_as_string(hide_password=True)

    with pytest.raises(SchemaNotCurrent, match="has no schema yet: run `event-pipeline init`") as empty:
        check_current(engine)
    assert masked in str(empty.value)

    upgrade(engine, "0001")
    with pytest.raises(SchemaNotCurrent) as behind:
        check_current(engine)
    assert str(behind.value) == (
        f"participants database {masked} is at revision 0001, this code needs {head_revision()}: "
        "run `event-pipeline migrate`"
    )

    upgrade(engine)
    check_current(engine)


def test_app_engine_checks_and_never_migrates(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0001")

    for _ in range(2):  # a failed check is not remembered as a success
        with pytest.raises(SchemaNotCurrent, match="run `event-pipeline migrate`"):
            app_engine(database_url)
    assert current_revision(engine) == "0001"

    upgrade(engine)
    assert app_engine(database_url) is engine
    with app_engine(database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM uploads")).scalar_one() == 0


def test_the_message_masks_a_password(postgres_server: Any) -> None:
    # The test server trusts loopback connections, so any password is accepted and can be checked for.
    url = postgres_server.create_database().replace("postgres@", "postgres:s3cret@", 1)
    with pytest.raises(SchemaNotCurrent) as caught:
        app_engine(url)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
