"""Retry policy: at most 3 attempts within 24 hours, with growing delays."""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_ATTEMPTS = 3
# Delay before attempt 2 and attempt 3; the last one still lands well inside 24 h.
RETRY_DELAYS = (timedelta(minutes=5), timedelta(hours=2))
WINDOW = timedelta(hours=24)


def next_attempt_at(
    attempts_made: int, now: datetime, first_attempt_at: datetime, retry_at: datetime | None = None
) -> datetime | None:
    """When to try again after ``attempts_made`` failed transient attempts, or None to give up."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    delay = RETRY_DELAYS[min(attempts_made, len(RETRY_DELAYS)) - 1]
    candidate = now + delay
    if retry_at is not None:
        candidate = max(retry_at, now)  # the provider told us when its window resets
    if candidate > first_attempt_at + WINDOW:
        return None
    return candidate
