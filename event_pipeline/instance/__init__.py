"""Dagster instance plug-ins named in ``dagster.yaml`` (loaded by the daemon and the webserver,
not by the code location). Like ``event_pipeline.defs``, a part that may import Dagster."""
