"""Settling by repeated identical sightings, not by mtime age."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from event_pipeline.inbox.scan import Candidate, list_inbox
from event_pipeline.inbox.settle import (
    DEFAULT_SETTLE_SECONDS,
    SETTLE_ENV,
    Sighting,
    advance,
    is_settled,
    settle_seconds,
)

OLD_MTIME_NS = 631_152_000 * 10**9  # 1990: what `cp -p` of an old file keeps


def _c(name: str = "a.csv", size: int = 10, mtime_ns: int = OLD_MTIME_NS, ino: int = 7) -> Candidate:
    return Candidate("ev", Path("/inbox/ev") / name, size, mtime_ns, 1, ino)


def test_settle_seconds_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settle_seconds({}) == DEFAULT_SETTLE_SECONDS == 10.0
    assert settle_seconds({SETTLE_ENV: " "}) == DEFAULT_SETTLE_SECONDS
    assert settle_seconds({SETTLE_ENV: "2.5"}) == 2.5
    assert settle_seconds({SETTLE_ENV: "0"}) == 0.0
    monkeypatch.setenv(SETTLE_ENV, "30")
    assert settle_seconds() == 30.0


@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "inf", "10s"])
def test_settle_seconds_rejects_bad_values(raw: str) -> None:
    with pytest.raises(ValueError, match=SETTLE_ENV):
        settle_seconds({SETTLE_ENV: raw})


def test_two_identical_sightings_over_the_quiet_period_settle() -> None:
    a = _c()
    state = advance({}, [a], now=100.0)
    assert state == {str(a.path): Sighting(a.fingerprint, 100.0, 1)}
    # Ancient mtime, long quiet time, but only one sighting: not settled.
    assert not is_settled(state[str(a.path)], now=1000.0, quiet_s=10)
    state = advance(state, [a], now=105.0)
    assert state[str(a.path)] == Sighting(a.fingerprint, 100.0, 2)
    assert not is_settled(state[str(a.path)], now=105.0, quiet_s=10)
    state = advance(state, [a], now=110.0)
    assert state[str(a.path)].sightings == 3
    assert is_settled(state[str(a.path)], now=110.0, quiet_s=10)


@pytest.mark.parametrize(
    "changed",
    [_c(size=11), _c(mtime_ns=OLD_MTIME_NS + 1), _c(ino=8)],
    ids=["size", "mtime", "inode"],
)
def test_any_change_restarts_the_clock(changed: Candidate) -> None:
    a = _c()
    state = advance(advance({}, [a], now=0.0), [a], now=20.0)
    assert is_settled(state[str(a.path)], now=20.0, quiet_s=10)
    state = advance(state, [changed], now=25.0)
    assert state[str(a.path)] == Sighting(changed.fingerprint, 25.0, 1)
    assert not is_settled(state[str(a.path)], now=100.0, quiet_s=10)


def test_state_keeps_only_present_candidates() -> None:
    a, b = _c("a.csv"), _c("b.csv")
    state = advance({}, [a, b], now=0.0)
    state = advance(state, [b], now=1.0)
    assert list(state) == [str(b.path)]
    state = advance(state, [a, b], now=2.0)
    assert state[str(a.path)] == Sighting(a.fingerprint, 2.0, 1)
    assert state[str(b.path)] == Sighting(b.fingerprint, 0.0, 3)


def test_real_file_copied_with_an_old_mtime_is_not_settled_while_it_grows(tmp_path: Path) -> None:
    path = tmp_path / "ev" / "a.csv"
    path.parent.mkdir()
    path.write_bytes(b"email\n")
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    state = advance({}, list_inbox(tmp_path).candidates, now=0.0)
    with path.open("ab") as fh:
        fh.write(b"a@example.com\n")
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))  # the copy tool restores the old mtime
    state = advance(state, list_inbox(tmp_path).candidates, now=60.0)
    assert state[str(path)].sightings == 1
    assert not is_settled(state[str(path)], now=60.0, quiet_s=10)
    state = advance(state, list_inbox(tmp_path).candidates, now=70.0)
    assert is_settled(state[str(path)], now=70.0, quiet_s=10)
