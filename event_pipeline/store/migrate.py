"""Alembic migrations: applied only by ``event-pipeline init`` / ``migrate`` (``upgrade``);
everything else opens the database through ``app_engine``, which checks and never migrates."""

from __future__ import annotations

import threading
import weakref
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from event_pipeline.store.db import make_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Engines whose schema was found current. Keyed by engine, not URL: make_engine hands out one
# engine per URL, so this is once per process and URL, and a disposed engine is checked afresh.
_checked: weakref.WeakSet[Engine] = weakref.WeakSet()
_check_lock = threading.Lock()


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this code was written for."""


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None  # the migrations folder ships with the code
    return head


def check_current(engine: Engine) -> None:
    """Raise ``SchemaNotCurrent`` unless the database is at this code's head revision."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    where = f"participants database {engine.url.render_as_string(hide_password=True)}"
    if current is None:
        raise SchemaNotCurrent(f"{where} has no schema yet: run `event-pipeline init`")
    if current not in {s.revision for s in _script().walk_revisions()}:
        raise SchemaNotCurrent(
            f"{where} is at revision {current}, which this code does not know "
            f"(it needs {head}): a newer event-pipeline migrated it; upgrade this installation"
        )
    raise SchemaNotCurrent(f"{where} is at revision {current}, this code needs {head}: run `event-pipeline migrate`")


def app_engine(url: str) -> Engine:
    """The engine for ``url``, once its schema is known to be current (checked once per process
    and URL; a failed check is not remembered, so the next call looks again)."""
    engine = make_engine(url)
    if engine in _checked:
        return engine
    with _check_lock:
        if engine not in _checked:
            check_current(engine)
            _checked.add(engine)
    return engine
