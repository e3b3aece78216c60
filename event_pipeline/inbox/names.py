"""Names we derive from organisers' file names: safe on any file system and short enough that a
prefix (timestamp, id) plus a sidecar suffix still fits the 255-byte limit of one name."""

from __future__ import annotations

import re
import unicodedata

# What people put in file names ("list (1).csv", "A&B [final].xlsx") and every file system takes.
_KEEP_PUNCT = frozenset(".-_ ()[]+,&")
_SUFFIX = re.compile(r"[a-z0-9]+", re.ASCII)
_MAX_SUFFIX = 10
_FALLBACK = "file"


def _keep(ch: str) -> bool:
    # Letters, digits and combining marks of any script (so Devanagari or decomposed Hangul survive);
    # surrogates from undecodable bytes (category Cs), controls, separators and slashes do not.
    return ch in _KEEP_PUNCT or unicodedata.category(ch)[0] in "LNM"


def _cut(text: str, max_bytes: int) -> str:
    """``text`` shortened to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    return text.encode("utf-8")[: max(max_bytes, 0)].decode("utf-8", errors="ignore")


def suffix_of(name: str) -> str:
    """Lower-case extension (``'.csv'``) if it is short and plain ASCII, else ``''``."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip("."):
        return ""
    ext = ext.lower()
    if not _SUFFIX.fullmatch(ext) or len(ext) + 1 > _MAX_SUFFIX:
        return ""
    return "." + ext


def safe_name(name: str, *, max_bytes: int = 120) -> str:
    """A file-system-safe version of ``name``, at most ``max_bytes`` UTF-8 bytes, keeping its suffix."""
    if max_bytes < len(_FALLBACK):
        raise ValueError(f"max_bytes must be at least {len(_FALLBACK)}, not {max_bytes}")
    # NFC first: it is what a reader sees and the shortest in bytes; lone surrogates pass through.
    text = unicodedata.normalize("NFC", name)
    text = "".join(ch if _keep(ch) else "_" for ch in text)
    text = text.lstrip(". ").rstrip(" ")
    stem, dot, ext = text.rpartition(".")
    suffix = dot + ext if dot and stem and len(ext) + 1 <= _MAX_SUFFIX else ""
    stem = text[: len(text) - len(suffix)]
    room = max_bytes - len(suffix.encode("utf-8"))
    if room < 1:
        suffix, room = "", max_bytes
    stem = _cut(stem, room).rstrip(" ")
    result = stem + suffix if stem else ""
    return result or _FALLBACK


__all__ = ["safe_name", "suffix_of"]
