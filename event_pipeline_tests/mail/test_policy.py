"""Retry timing: three attempts, growing delays, a 24-hour window, throttles never spin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from event_pipeline.mail import policy

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_delays_grow_and_the_third_failure_is_final() -> None:
    second = policy.after_failure(1, T0, T0)
    assert second is not None
    third = policy.after_failure(2, second, T0)
    assert third is not None

    assert second - T0 < third - second
    assert policy.after_failure(policy.MAX_ATTEMPTS, third, T0) is None


def test_nothing_is_retried_outside_the_24_hour_window() -> None:
    late = T0 + policy.WINDOW - timedelta(minutes=1)

    assert policy.after_failure(1, late, T0) is None
    assert policy.after_throttle(late, T0, late + timedelta(minutes=2)) is None


def test_throttle_waits_for_the_reset_but_never_less_than_a_second() -> None:
    assert policy.after_throttle(T0, T0, T0 + timedelta(seconds=30)) == T0 + timedelta(seconds=30)
    assert policy.after_throttle(T0, T0, T0 - timedelta(seconds=5)) == T0 + policy.MIN_THROTTLE_DELAY
    assert policy.after_throttle(T0, T0, None) == T0 + policy.MIN_THROTTLE_DELAY
