"""Processes as seen by whoever has to clean up after them: is a given process still alive,
who holds a claim, and child processes that never outlive their parent."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
from contextlib import suppress

import psutil

# A process's start time, as psutil reads it, is rounded; allow for that when comparing it with
# the time something recorded the pid.
_CLOCK_SLACK_S = 1.0
_PR_SET_PDEATHSIG = 1
_OWNER_POLL_S = 1.0


def alive(pid: int, *, started_by: float | None = None) -> bool:
    """Whether ``pid`` is a live process that already existed at ``started_by`` (a Unix time):
    a pid the kernel has handed to a newer process since is not the one that was recorded."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_by is None or proc.create_time() <= started_by + _CLOCK_SLACK_S
    except psutil.Error:
        return False


def claimant() -> str:
    """Who this process is, for a claim another process may have to judge: host, pid, start."""
    return f"proc:{socket.gethostname()}:{os.getpid()}:{int(psutil.Process().create_time())}"


def claimant_alive(name: str) -> bool | None:
    """For a :func:`claimant` name: alive or not; None when this host cannot tell (another host,
    another kind of claimant)."""
    kind, _, rest = name.partition(":")
    host, _, rest = rest.partition(":")
    pid, _, started = rest.partition(":")
    if kind != "proc" or host != socket.gethostname() or not pid.isdigit() or not started.isdigit():
        return None
    return alive(int(pid), started_by=int(started))


def owner() -> tuple[int, float]:
    """This process as a pool's owner: ``initargs`` for :func:`die_with_owner`."""
    return os.getpid(), psutil.Process().create_time()


def die_with_owner(owner_pid: int, owner_started: float) -> None:
    """Initializer for pool processes: when the process that started the pool is killed
    (SIGKILL leaves it no chance to stop its pool), its workers go too instead of running on
    as orphans that still send mail or hold files.

    The owner is named explicitly: a forkserver's workers are children of the fork server, not
    of the owner, and a worker still starting up when the owner died already has init as its
    parent, so "my parent changed" would miss both."""
    if sys.platform.startswith("linux") and os.getppid() == owner_pid:
        libc = ctypes.CDLL(None, use_errno=True)
        with suppress(AttributeError):
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if not alive(owner_pid, started_by=owner_started):
        os._exit(1)
    threading.Thread(
        target=_exit_without_owner, args=(owner_pid, owner_started), daemon=True, name="die-with-owner"
    ).start()


def _exit_without_owner(owner_pid: int, owner_started: float) -> None:
    stop = threading.Event()
    while not stop.wait(_OWNER_POLL_S):
        if not alive(owner_pid, started_by=owner_started):
            os._exit(1)
