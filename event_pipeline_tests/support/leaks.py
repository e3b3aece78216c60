"""Where given bytes (names, addresses, phones, tokens) sit in files on disk."""

from __future__ import annotations

from pathlib import Path


def file_leaks(root: Path, needles: list[bytes]) -> list[str]:
    """``path: needle`` for every regular file under ``root`` that holds one of ``needles``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n!r}" for n in needles if n in data]
    return found
