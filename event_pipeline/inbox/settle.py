"""When is an inbox file finished arriving?

Not by mtime age: ``cp -p``, rsync and unzip keep the source's old mtime, so a file that is still
being copied can look hours old. Instead a file is settled once the very same inode, size and mtime
have been seen on at least two observations that span the quiet period.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from event_pipeline.inbox.scan import Candidate

SETTLE_ENV = "EVENT_PIPELINE_SETTLE_SECONDS"
DEFAULT_SETTLE_SECONDS = 10.0


def settle_seconds(environ: Mapping[str, str] | None = None) -> float:
    """The quiet period from ``EVENT_PIPELINE_SETTLE_SECONDS`` (default 10); a bad value raises
    rather than silently importing files early."""
    env = os.environ if environ is None else environ
    raw = env.get(SETTLE_ENV, "").strip()
    if not raw:
        return DEFAULT_SETTLE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SETTLE_ENV} must be a number of seconds, not {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{SETTLE_ENV} must be a finite number of seconds >= 0, not {raw!r}")
    return value


@dataclass(frozen=True)
class Sighting:
    fingerprint: str
    first_seen: float
    sightings: int


def advance(previous: Mapping[str, Sighting], candidates: Sequence[Candidate], now: float) -> dict[str, Sighting]:
    """Fold one observation into the state. Only present candidates are kept, so the state stays
    as small as the inbox; any change of fingerprint restarts that file's clock."""
    state: dict[str, Sighting] = {}
    for c in candidates:
        key = str(c.path)
        fp = c.fingerprint
        seen = previous.get(key)
        if seen is not None and seen.fingerprint == fp:
            state[key] = Sighting(fp, seen.first_seen, seen.sightings + 1)
        else:
            state[key] = Sighting(fp, now, 1)
    return state


def is_settled(s: Sighting, now: float, quiet_s: float) -> bool:
    return s.sightings >= 2 and now - s.first_seen >= quiet_s


__all__ = ["DEFAULT_SETTLE_SECONDS", "SETTLE_ENV", "Sighting", "advance", "is_settled", "settle_seconds"]
