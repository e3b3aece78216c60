"""Processes: liveness by pid and start time, claim holders, and pool workers that die with
the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from event_pipeline import processes

# Starts a pool whose two workers block (once started, or while still starting), says so, then
# waits to be killed.
POOL_OWNER = """
import sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from event_pipeline.processes import die_with_owner, owner

pool = ProcessPoolExecutor(
    max_workers=2, mp_context=get_context(sys.argv[1]), initializer=die_with_owner, initargs=owner()
)
if sys.argv[2] == "started":
    [f.result() for f in [pool.submit(time.time) for _ in range(2)]]
futures = [pool.submit(time.sleep, 3600) for _ in range(2)]
while not all(f.running() for f in futures):
    time.sleep(0.01)
print("ready", flush=True)
time.sleep(3600)
"""


def _wait(check: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("when", ["started", "starting"])
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_pool_workers_exit_when_their_owner_is_sigkilled(method: str, when: str) -> None:
    """Seen: after SIGKILL of a run worker, its pool worker processes (parent pid 1) kept running."""
    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER, method, when], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        # Workers, and for forkserver the server they were forked from, and the resource tracker.
        family = psutil.Process(owner.pid).children(recursive=True)
        assert len(family) >= 2
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        assert _wait(lambda: not any(processes.alive(p.pid, started_by=p.create_time()) for p in family), 15)
    finally:
        owner.kill()
        owner.wait(timeout=10)


def test_a_pid_counts_as_alive_only_for_the_process_that_had_it_at_the_time() -> None:
    me = psutil.Process()
    assert processes.alive(me.pid)
    assert processes.alive(me.pid, started_by=time.time())
    # Recorded before this process existed: the pid now belongs to someone else.
    assert not processes.alive(me.pid, started_by=me.create_time() - 60)
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(timeout=30)
    assert not processes.alive(done.pid)


def test_claim_holders_are_judged_on_this_host_only() -> None:
    me = processes.claimant()
    assert processes.claimant_alive(me) is True
    child = subprocess.run(
        [sys.executable, "-c", "from event_pipeline.processes import claimant; print(claimant())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert processes.claimant_alive(child.stdout.strip()) is False
    host, pid, started = me.split(":")[1:]
    assert processes.claimant_alive(f"proc:not-{host}:{pid}:{started}") is None
    assert processes.claimant_alive("run:0b3a") is None
    assert processes.claimant_alive("garbage") is None
