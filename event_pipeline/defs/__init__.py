"""The Dagster face of event_pipeline: one ``Definitions`` object, ``defs``."""

from event_pipeline import settings

# Before anything reads the environment: a daemon, webserver, code server or run worker
# started by hand finds the var dir's secrets.env like `make run` does.
settings.load_secrets_env()

from event_pipeline.defs.definitions import defs  # noqa: E402

__all__ = ["defs"]
