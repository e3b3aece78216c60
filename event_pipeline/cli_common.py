"""What every command module of the CLI shares: the checked database, JSON output, the refusal."""

from __future__ import annotations

import json
from typing import Any

import click

from event_pipeline import settings


class Unusable(click.ClickException):
    """The var dir or database cannot be used as it is: said in one line, exit 2, no traceback."""

    exit_code = 2


def engine() -> Any:
    """The participants database, checked; the one place the CLI opens it."""
    import sqlalchemy as sa

    from event_pipeline.store.db import sqlite_file
    from event_pipeline.store.migrate import SchemaNotCurrent, app_engine

    url = settings.database_url()
    db_file = sqlite_file(url)
    if db_file is not None and not db_file.exists():
        # Opening it would create an empty database (and a var dir) wherever the command ran.
        raise Unusable(f"no database at {db_file}: run `event-pipeline init` or set EVENT_PIPELINE_HOME")
    try:
        return app_engine(url)
    except SchemaNotCurrent as exc:
        raise Unusable(str(exc)) from None
    except sa.exc.DBAPIError as exc:
        where = sa.make_url(url).render_as_string(hide_password=True)
        said = str(exc.orig or exc).strip().splitlines()
        raise Unusable(f"cannot open the participants database {where}: {said[0] if said else exc}") from None


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
