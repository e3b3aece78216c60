"""The Alembic history builds the schema from nothing, matches tables.py, and unwinds cleanly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from event_pipeline.store.db import make_engine
from event_pipeline.store.migrate import alembic_config, current_revision, upgrade
from event_pipeline.store.tables import metadata

APP_TABLES = {"events", "uploads", "participants", "access_tokens", "checkin_scans", "email_deliveries"}


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
    upgrade(engine)  # every process start runs it: must be a no-op the second time
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
