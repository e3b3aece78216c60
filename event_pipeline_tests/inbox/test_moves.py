"""move_aside and hold on files, links and folders, across file systems too."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from event_pipeline.inbox.moves import hold, move_aside

NOW = datetime(2024, 5, 17, 8, 30, 5, tzinfo=UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def other_fs() -> Iterator[Path]:
    """A folder on /dev/shm (tmpfs), normally another file system than tmp_path, so rename gives EXDEV."""
    folder = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_move_aside_names_the_target_and_writes_the_reason(tmp_path: Path) -> None:
    src = _write(tmp_path / "inbox" / "ev" / "Liste\n2024.CSV", b"data")
    side = _write(tmp_path / "inbox" / "ev" / "Liste\n2024.CSV.json", b"{}")
    folder = tmp_path / "var" / "rejected" / "ev"
    target = move_aside(src, folder, name_hint=src.name, reason="no email column\n\n", now=NOW)
    assert re.fullmatch(r"20240517T083005Z-[0-9a-f]{8}-Liste_2024\.CSV", target.name)
    assert target.parent == folder and target.read_bytes() == b"data" and not src.exists()
    assert not side.exists()
    assert target.with_name(target.name + ".json").read_bytes() == b"{}"
    reason = target.with_name(target.name + ".reason.txt")
    assert reason.read_text(encoding="utf-8") == "no email column\n"
    assert _mode(reason) == 0o600
    assert _mode(folder) == _mode(folder.parent) == _mode(folder.parent.parent) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [target.name, target.name + ".json", target.name + ".reason.txt"]
    )


def test_move_aside_converts_now_to_utc_and_never_reuses_a_name(tmp_path: Path) -> None:
    cest = timezone(timedelta(hours=2))
    targets = [
        move_aside(_write(tmp_path / "in" / f"{i}.csv"), tmp_path / "out", name_hint="a.csv", now=NOW.astimezone(cest))
        for i in range(5)
    ]
    assert len({t.name for t in targets}) == 5
    assert all(t.name.startswith("20240517T083005Z-") for t in targets)
    assert not any(t.with_name(t.name + ".reason.txt").exists() for t in targets)


def test_move_aside_moves_a_link_not_its_target(tmp_path: Path) -> None:
    outside = _write(tmp_path / "elsewhere" / "secret.csv", b"secret")
    ev = tmp_path / "inbox" / "ev"
    ev.mkdir(parents=True)
    (ev / "link.csv").symlink_to(outside)
    (ev / "passwd").symlink_to("/etc/passwd")
    passwd_before = Path("/etc/passwd").read_bytes()
    moved = move_aside(ev / "link.csv", tmp_path / "rejected", name_hint="link.csv", reason="a link")
    moved_passwd = move_aside(ev / "passwd", tmp_path / "rejected", name_hint="passwd")
    assert moved.is_symlink() and os.readlink(moved) == str(outside)
    assert moved_passwd.is_symlink() and os.readlink(moved_passwd) == "/etc/passwd"
    assert outside.read_bytes() == b"secret"
    assert Path("/etc/passwd").read_bytes() == passwd_before
    assert not os.path.lexists(ev / "link.csv") and not os.path.lexists(ev / "passwd")


def test_move_aside_moves_a_folder(tmp_path: Path) -> None:
    sub = _write(tmp_path / "inbox" / "ev" / "sub" / "inner.csv").parent
    target = move_aside(sub, tmp_path / "rejected", name_hint="sub", reason="a folder")
    assert target.is_dir() and (target / "inner.csv").read_bytes() == b"x"
    assert not sub.exists()


def test_move_aside_across_file_systems_keeps_links_as_links(tmp_path: Path, other_fs: Path) -> None:
    src = _write(other_fs / "a.csv", b"data")
    link = other_fs / "link.csv"
    link.symlink_to("/etc/passwd")
    _write(other_fs / "a.csv.json", b'{"strict": true}')
    moved = move_aside(src, tmp_path / "rejected", name_hint="a.csv", reason="r")
    moved_link = move_aside(link, tmp_path / "rejected", name_hint="link.csv")
    assert moved.read_bytes() == b"data" and not src.exists()
    assert moved.with_name(moved.name + ".json").read_bytes() == b'{"strict": true}'
    assert moved_link.is_symlink() and os.readlink(moved_link) == "/etc/passwd"
    assert not os.path.lexists(link)


def test_a_failed_move_leaves_everything_in_place(tmp_path: Path) -> None:
    ev = tmp_path / "inbox" / "ev"
    side = _write(ev / "gone.csv.json", b"{}")
    folder = tmp_path / "rejected"
    with pytest.raises(FileNotFoundError):
        move_aside(ev / "gone.csv", folder, name_hint="gone.csv", reason="why")
    assert side.read_bytes() == b"{}"
    assert list(folder.iterdir()) == []


def test_a_manifest_that_is_a_link_is_not_moved_as_a_sidecar(tmp_path: Path) -> None:
    src = _write(tmp_path / "ev" / "a.csv")
    (tmp_path / "ev" / "a.csv.json").symlink_to("/etc/passwd")
    target = move_aside(src, tmp_path / "out", name_hint="a.csv")
    assert not os.path.lexists(target.with_name(target.name + ".json"))
    assert (tmp_path / "ev" / "a.csv.json").is_symlink()


def test_hold_numbers_collisions_and_moves_the_sidecar(tmp_path: Path) -> None:
    folder = tmp_path / "held" / "ev"
    first = hold(_write(tmp_path / "in" / "a.csv", b"1"), folder, stem="up-123", suffix=".csv")
    second = hold(_write(tmp_path / "in" / "b.csv", b"2"), folder, stem="up-123", suffix=".csv")
    src = _write(tmp_path / "in" / "c.csv", b"3")
    _write(tmp_path / "in" / "c.csv.json", b'{"sheet": "S"}')
    third = hold(src, folder, stem="up-123", suffix=".csv")
    assert [first.name, second.name, third.name] == ["up-123.csv", "up-123-2.csv", "up-123-3.csv"]
    assert [p.read_bytes() for p in (first, second, third)] == [b"1", b"2", b"3"]
    assert (folder / "up-123-3.csv.json").read_bytes() == b'{"sheet": "S"}'
    assert not (tmp_path / "in" / "c.csv.json").exists()
    assert _mode(folder) == _mode(folder.parent) == 0o700


def test_hold_across_file_systems(tmp_path: Path, other_fs: Path) -> None:
    target = hold(_write(other_fs / "a.xlsx", b"xl"), tmp_path / "held", stem="u1", suffix=".xlsx")
    assert target == tmp_path / "held" / "u1.xlsx" and target.read_bytes() == b"xl"


@pytest.mark.parametrize("stem", ["", ".", "..", "a/b", "a\0b"])
def test_hold_refuses_a_stem_that_is_not_a_name(tmp_path: Path, stem: str) -> None:
    with pytest.raises(ValueError):
        hold(_write(tmp_path / "a.csv"), tmp_path / "held", stem=stem, suffix=".csv")
