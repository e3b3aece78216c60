"""open_for_writing against real processes holding real files open."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from event_pipeline.inbox.writers import CAN_TELL, open_for_writing

HOLDER = "import sys\nfh = open(sys.argv[1], sys.argv[2])\nprint('ready', flush=True)\nsys.stdin.read()\n"


@contextmanager
def _holding(path: Path, mode: str) -> Iterator[subprocess.Popen[str]]:
    """A child process with ``path`` open in ``mode`` until the block ends; waits on its own signal."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)
        assert proc.stdout is not None
        proc.stdout.close()


def test_can_tell_on_linux() -> None:
    assert CAN_TELL is sys.platform.startswith("linux")


def test_empty_input_is_empty() -> None:
    assert open_for_writing([]) == set()


def test_a_process_appending_is_detected_until_it_exits(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email\n")
    other = tmp_path / "b.csv"
    other.write_text("email\n")
    with _holding(path, "a"):
        assert open_for_writing([path, other]) == {path}
    assert open_for_writing([path, other]) == set()


def test_paths_are_compared_by_realpath(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    path = real / "a.csv"
    path.write_text("x")
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    via_link = tmp_path / "alias" / "a.csv"
    with _holding(path, "r+"):
        assert open_for_writing([via_link]) == {via_link}


def test_a_reader_is_not_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("email\n")
    with _holding(path, "r"):
        assert open_for_writing([path]) == set()


def test_this_process_counts_too(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    with path.open("w") as fh:
        fh.write("x")
        fh.flush()
        assert open_for_writing([path]) == {path}
    assert open_for_writing([path]) == set()
