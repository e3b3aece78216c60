"""The optional sidecar ``<file>.json`` an organiser drops next to an upload: ``{"strict": true, "sheet": "Sheet2"}``.

Values are typed strictly: ``bool("false")`` is True, so a loose reader turned strict mode ON for
``{"strict": "false"}``. Every mistake is a :class:`ManifestError` whose message names the file,
the key and what was found, because it ends up in the organiser's reason file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_SUFFIX = ".json"
MAX_MANIFEST_BYTES = 64 * 1024
ALLOWED_KEYS = ("sheet", "strict")

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Manifest:
    strict: bool = False
    sheet: str | None = None


class ManifestError(ValueError):
    pass


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def _describe(value: Any) -> str:
    """What was found, in words an organiser can match against their file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _read_bytes(side: Path) -> bytes | None:
    """The manifest's bytes, None if there is none; never follows a link, never blocks on a FIFO."""
    try:
        st = os.lstat(side)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return None  # the data file's name is so long that no sidecar can exist beside it
        raise ManifestError(f"{side.name}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise ManifestError(f"{side.name}: is a symbolic link; links are never followed. Copy the file itself.")
    if not stat.S_ISREG(st.st_mode):
        raise ManifestError(f"{side.name}: is not a regular file")
    try:
        fd = os.open(side, _OPEN_FLAGS)
        try:
            data = os.read(fd, MAX_MANIFEST_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ManifestError(f"{side.name}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{side.name}: is larger than {MAX_MANIFEST_BYTES // 1024} KiB; a manifest is a few lines")
    return data


def _strict(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ManifestError(f'{name}: "strict" must be true or false, not {_describe(value)}')


def _sheet(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    raise ManifestError(f'{name}: "sheet" must be a sheet name in quotes, not {_describe(value)}')


def read_manifest(path: Path) -> Manifest:
    """The manifest beside ``path``, or the defaults if there is none."""
    side = manifest_path(path)
    data = _read_bytes(side)
    if data is None:
        return Manifest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{side.name}: is not UTF-8 text (byte {exc.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{side.name}: is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(doc, dict):
        raise ManifestError(f'{side.name}: must be a JSON object like {{"strict": true}}, not {_describe(doc)}')
    unknown = sorted(set(doc) - set(ALLOWED_KEYS))
    if unknown:
        raise ManifestError(
            f"{side.name}: unknown key(s) {', '.join(json.dumps(k, ensure_ascii=False) for k in unknown)}; "
            f"allowed keys: {', '.join(json.dumps(k) for k in ALLOWED_KEYS)}"
        )
    return Manifest(
        strict=_strict(side.name, doc["strict"]) if "strict" in doc else False,
        sheet=_sheet(side.name, doc.get("sheet")),
    )


__all__ = [
    "ALLOWED_KEYS",
    "MANIFEST_SUFFIX",
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "ManifestError",
    "manifest_path",
    "read_manifest",
]
