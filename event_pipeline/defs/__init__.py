"""The Dagster face of event_pipeline: one ``Definitions`` object, ``defs``."""

from event_pipeline.defs.definitions import defs

__all__ = ["defs"]
