"""list_inbox, hash_candidate and still_same on real files: links, odd names, special files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from event_pipeline.inbox.moves import move_aside
from event_pipeline.inbox.names import safe_name
from event_pipeline.inbox.scan import (
    Candidate,
    ChangedUnderfoot,
    Listing,
    hash_candidate,
    is_ignored,
    list_inbox,
    still_same,
)

NOBODY = 65534


def _write(path: Path, data: bytes = b"email\na@example.com\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _names(listing: Listing) -> list[tuple[str, str]]:
    return [(c.folder, c.name) for c in listing.candidates]


def _misfits(listing: Listing) -> list[tuple[str | None, str, str]]:
    return [(m.folder, m.path.name, m.kind) for m in listing.misfits]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A folder with a short path: AF_UNIX socket paths are limited to ~107 bytes."""
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="ibx-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_regular_files_are_candidates_with_their_identity(tmp_path: Path) -> None:
    b = _write(tmp_path / "ev-2" / "b.xlsx", b"bb")
    a = _write(tmp_path / "ev-1" / "a.csv")
    listing = list_inbox(tmp_path)
    assert _names(listing) == [("ev-1", "a.csv"), ("ev-2", "b.xlsx")]
    assert listing.misfits == [] and listing.problems == []
    first = listing.candidates[0]
    st = a.stat()
    assert (first.path, first.size, first.mtime_ns, first.dev, first.ino) == (
        a,
        st.st_size,
        st.st_mtime_ns,
        st.st_dev,
        st.st_ino,
    )
    assert first.fingerprint == f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    assert listing.candidates[1].path == b


def test_missing_inbox_is_empty(tmp_path: Path) -> None:
    assert list_inbox(tmp_path / "nope") == Listing([], [], [])


@pytest.mark.parametrize(
    "name",
    [
        ".~lock.a.csv#",
        "~$a.xlsx",
        "a.csv.part",
        "a.tmp",
        "A.TMP",
        ".hidden",
        "a.csv.json",
        "a.csv.reason.txt",
        "a.crdownload",
    ],
)
def test_ignored_names_are_skipped(tmp_path: Path, name: str) -> None:
    assert is_ignored(name)
    _write(tmp_path / "ev" / name)
    _write(tmp_path / "ev" / "real.csv")
    (tmp_path / ".hidden-event").mkdir()
    _write(tmp_path / ".hidden-event" / "x.csv")
    listing = list_inbox(tmp_path)
    assert _names(listing) == [("ev", "real.csv")]
    assert listing.misfits == []


def test_symlinks_in_an_event_folder_are_misfits_and_never_read(tmp_path: Path) -> None:
    outside = _write(tmp_path / "elsewhere" / "secret.csv", b"email\nsecret@example.com\n")
    inbox = tmp_path / "inbox"
    _write(inbox / "ev" / "ok.csv")
    (inbox / "ev" / "link.csv").symlink_to(outside)
    (inbox / "ev" / "passwd.csv").symlink_to("/etc/passwd")
    (inbox / "ev" / "dangling.csv").symlink_to(tmp_path / "missing")
    listing = list_inbox(inbox)
    assert _names(listing) == [("ev", "ok.csv")]
    assert _misfits(listing) == [
        ("ev", "dangling.csv", "symlink"),
        ("ev", "link.csv", "symlink"),
        ("ev", "passwd.csv", "symlink"),
    ]
    passwd_lines = [line for line in Path("/etc/passwd").read_text().splitlines() if line.strip()]
    for misfit in listing.misfits:
        assert "symbolic link" in misfit.reason
        assert not any(line in misfit.reason for line in passwd_lines)
        assert "secret@example.com" not in misfit.reason
    assert listing.problems == []


def test_symlinked_event_folder_is_a_top_level_misfit_and_not_descended(tmp_path: Path) -> None:
    target = tmp_path / "other-event"
    _write(target / "theirs.csv")
    inbox = tmp_path / "inbox"
    _write(inbox / "ev" / "ours.csv")
    (inbox / "linked").symlink_to(target, target_is_directory=True)
    (inbox / "file-link.csv").symlink_to(target / "theirs.csv")
    listing = list_inbox(inbox)
    assert _names(listing) == [("ev", "ours.csv")]
    assert _misfits(listing) == [(None, "file-link.csv", "symlink"), (None, "linked", "symlink")]
    assert not any("theirs" in str(m.path) for m in listing.misfits)


def test_files_directly_in_the_inbox_are_misfits(tmp_path: Path) -> None:
    _write(tmp_path / "loose.csv")
    _write(tmp_path / "ev" / "a.csv")
    listing = list_inbox(tmp_path)
    assert _names(listing) == [("ev", "a.csv")]
    assert _misfits(listing) == [(None, "loose.csv", "file_at_top")]
    assert "event folder" in listing.misfits[0].reason


def test_255_byte_name_is_listed_and_moves_aside(tmp_path: Path) -> None:
    long_name = "가" * 80 + "a" * 11 + ".csv"
    assert len(os.fsencode(long_name)) == 255
    inbox = tmp_path / "inbox"
    _write(inbox / "ev" / long_name)
    _write(inbox / "ev" / "short.csv")
    listing = list_inbox(inbox)
    assert sorted(c.name for c in listing.candidates) == sorted([long_name, "short.csv"])
    long = next(c for c in listing.candidates if c.name == long_name)
    rejected = tmp_path / "rejected" / "ev"
    target = move_aside(long.path, rejected, name_hint=long.name, reason="no email column")
    assert target.exists() and not long.path.exists()
    assert len(os.fsencode(target.name)) <= 255 and target.name.endswith(".csv")
    reason_file = target.with_name(target.name + ".reason.txt")
    assert reason_file.read_text(encoding="utf-8") == "no email column\n"
    assert stat.S_IMODE(reason_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(rejected.stat().st_mode) == 0o700
    assert stat.S_IMODE(rejected.parent.stat().st_mode) == 0o700


def test_names_with_newlines_and_undecodable_bytes(tmp_path: Path) -> None:
    _write(tmp_path / "ev" / "two\nlines.csv")
    fd = os.open(bytes(tmp_path / "ev") + b"/\xff\xfe.csv", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"data")
    os.close(fd)
    os.mkdir(bytes(tmp_path) + b"/ev-\xff")
    os.close(os.open(bytes(tmp_path) + b"/ev-\xff/in\nside.csv", os.O_WRONLY | os.O_CREAT, 0o600))
    listing = list_inbox(tmp_path)
    odd = os.fsdecode(b"\xff\xfe.csv")
    assert sorted(_names(listing)) == sorted(
        [("ev", "two\nlines.csv"), ("ev", odd), (os.fsdecode(b"ev-\xff"), "in\nside.csv")]
    )
    assert listing.problems == [] and listing.misfits == []
    undecodable = next(c for c in listing.candidates if c.name == odd)
    assert hash_candidate(undecodable) == hashlib.sha256(b"data").hexdigest()
    assert safe_name(undecodable.name) == "__.csv"
    target = move_aside(undecodable.path, tmp_path / "rejected", name_hint=undecodable.name, reason="x")
    assert target.name.endswith("-__.csv") and target.exists()


def test_fifo_socket_subfolder_and_device_are_misfits(short_tmp: Path) -> None:
    ev = short_tmp / "ev"
    ev.mkdir()
    _write(ev / "ok.csv")
    os.mkfifo(ev / "pipe.csv")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(ev / "sock.csv"))
        _write(ev / "sub" / "inner.csv")
        try:
            os.mknod(ev / "dev.csv", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs CAP_MKNOD (run as root to cover it)")
        listing = list_inbox(short_tmp)
    finally:
        sock.close()
    assert _names(listing) == [("ev", "ok.csv")]
    assert _misfits(listing) == [
        ("ev", "dev.csv", "device"),
        ("ev", "pipe.csv", "fifo"),
        ("ev", "sock.csv", "socket"),
        ("ev", "sub", "folder"),
    ]
    assert listing.problems == []


def _summary(listing: Listing) -> dict[str, Any]:
    return {"candidates": _names(listing), "misfits": _misfits(listing), "problems": listing.problems}


def _list_as_nobody(inbox: Path) -> dict[str, Any]:
    """list_inbox in a forked child that dropped root, since root reads any file whatever its mode."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must never return into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with os.fdopen(write_end, "wb") as out:
                out.write(json.dumps(_summary(list_inbox(inbox))).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, Any] = json.loads(data)
    return result


def test_unreadable_file_and_unlistable_folder_do_not_sink_the_rest(short_tmp: Path) -> None:
    # World-listable on purpose: the child lists these as "nobody"; the two locked entries are the test.
    os.chmod(short_tmp, 0o755)  # noqa: S103
    ev = short_tmp / "ev"
    ev.mkdir()
    os.chmod(ev, 0o755)  # noqa: S103
    os.chmod(_write(ev / "ok.csv"), 0o644)
    os.chmod(_write(ev / "locked.csv"), 0o000)
    closed = short_tmp / "closed\nevent"
    _write(closed / "hidden.csv")
    os.chmod(closed, 0o000)
    try:
        # Root may open anything, so as root the listing runs in a child that dropped to "nobody".
        result = _list_as_nobody(short_tmp) if os.geteuid() == 0 else _summary(list_inbox(short_tmp))
    finally:
        os.chmod(closed, 0o700)
    assert [tuple(c) for c in result["candidates"]] == [("ev", "ok.csv")]
    assert [tuple(m) for m in result["misfits"]] == [("ev", "locked.csv", "unreadable")]
    [problem] = result["problems"]
    assert "cannot list" in problem and "\n" not in problem


def test_hash_candidate_and_still_same(tmp_path: Path) -> None:
    path = _write(tmp_path / "ev" / "a.csv", b"abc")
    [c] = list_inbox(tmp_path).candidates
    assert hash_candidate(c, chunk=1) == hashlib.sha256(b"abc").hexdigest()
    assert still_same(c)
    with path.open("ab") as fh:
        fh.write(b"more")
    assert not still_same(c)
    with pytest.raises(ChangedUnderfoot) as caught:
        hash_candidate(c)
    assert isinstance(caught.value, OSError) and caught.value.path == c.path


def test_hash_candidate_refuses_a_swapped_file_or_link(tmp_path: Path) -> None:
    path = _write(tmp_path / "ev" / "a.csv", b"abc")
    [c] = list_inbox(tmp_path).candidates
    st = path.stat()
    replacement = _write(tmp_path / "b.csv", b"abc")
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(replacement, path)  # same size and mtime, other inode
    with pytest.raises(ChangedUnderfoot):
        hash_candidate(c)
    path.unlink()
    path.symlink_to("/etc/passwd")
    assert not still_same(c)
    with pytest.raises(ChangedUnderfoot):
        hash_candidate(c)
    path.unlink()
    assert not still_same(c)
    with pytest.raises(FileNotFoundError):
        hash_candidate(c)


def test_candidate_name_is_the_path_name() -> None:
    c = Candidate("ev", Path("/x/ev/a b.csv"), 1, 2, 3, 4)
    assert c.name == "a b.csv" and c.fingerprint == "3:4:1:2"
