"""Retry policy: at most 3 attempts within 24 hours, with growing delays.

An *attempt* is a request that SendGrid could have turned into an email. A 429 is not one
(nothing was accepted), so it does not use up an attempt; the 24-hour window still bounds how
long a throttled message keeps trying.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from event_pipeline import settings

MAX_ATTEMPTS = 3
# Delay before attempt 2 and attempt 3: a blip clears in minutes, an outage needs hours.
RETRY_DELAYS = (timedelta(minutes=5), timedelta(hours=2))
WINDOW = timedelta(hours=24)
# A 429 without a usable reset (missing, or already past by our clock) still waits this long,
# so a throttled message can never be re-claimed in a tight loop.
MIN_THROTTLE_DELAY = timedelta(seconds=1)


def after_failure(attempts_made: int, now: datetime, created_at: datetime) -> datetime | None:
    """When to try again after attempt number ``attempts_made`` failed transiently; None: give up."""
    if attempts_made >= MAX_ATTEMPTS:
        return None
    candidate = now + RETRY_DELAYS[max(attempts_made, 1) - 1]
    return candidate if candidate <= created_at + WINDOW else None


def after_throttle(now: datetime, created_at: datetime, reset_at: datetime | None) -> datetime | None:
    """When to try again after a 429 (the provider's reset time, never sooner than a second)."""
    candidate = max(reset_at or now, now + MIN_THROTTLE_DELAY)
    return candidate if candidate <= created_at + WINDOW else None


# With SendGrid's signed events flowing, a claim a dead dispatcher left in `sending` may be a
# message SendGrid accepted: its `processed` event (seconds, usually) makes the receiver mark it
# sent. Only a claim this old without one is sent again, so a crash duplicates nothing.
PROCESSED_EVENT_WAIT = timedelta(minutes=10)


def events_flowing(sender_name: str) -> bool:
    """Whether SendGrid's signed delivery events reach us for mail this sender sends."""
    return sender_name == "sendgrid" and settings.sendgrid_webhook_public_key() is not None


def resend_cutoff(sender_name: str, now: datetime) -> datetime | None:
    """Claims of dead dispatchers older than this may be sent again (None: any of them)."""
    return now - PROCESSED_EVENT_WAIT if events_flowing(sender_name) else None
