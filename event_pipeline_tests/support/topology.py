"""Stopping a `deploy/topology.py` started as a child (the distributed test, the bench), whatever
state it is in: SIGTERM for its orderly shutdown, then its whole process group, then the
PostgreSQL cluster it made (outside the var dir when run as root)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from contextlib import suppress


def stop_topology(proc: subprocess.Popen[bytes], cluster: str) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=120)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if cluster:
        shutil.rmtree(cluster, ignore_errors=True)
