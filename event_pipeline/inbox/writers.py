"""Is another process still writing a file? A second guard next to settling, for slow writers
that pause longer than the quiet period (a stalled network copy keeps its fd open)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

import psutil

# psutil reports an open file's mode only on Linux; elsewhere we cannot tell and say so.
CAN_TELL: bool = sys.platform.startswith("linux")

_WRITE_MODES = frozenset({"w", "a", "r+", "a+", "w+"})


def open_for_writing(paths: Iterable[Path]) -> set[Path]:
    """The subset of ``paths`` that some process (this one included) has open for writing.

    Paths are compared by ``realpath`` so a link or a relative path matches the fd's path. Processes
    that vanish or that we may not inspect are skipped: this is a best-effort extra check.
    """
    wanted: dict[str, list[Path]] = {}
    for path in paths:
        wanted.setdefault(os.path.realpath(path), []).append(path)
    if not wanted or not CAN_TELL:
        return set()
    found: set[Path] = set()
    for proc in psutil.process_iter():
        try:
            files = proc.open_files()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        except (psutil.Error, OSError):  # races reading /proc: never let one process sink the check
            continue
        for f in files:
            if getattr(f, "mode", None) in _WRITE_MODES and f.path in wanted:
                found.update(wanted[f.path])
    return found


__all__ = ["CAN_TELL", "open_for_writing"]
