"""Refuse XLSX zip bombs before any XML parser inflates them.

An XLSX is a ZIP; its central directory declares each member's sizes. Members declaring far
more than the configured budget, or compressing implausibly well while large, are refused from
the directory alone. Declared sizes can lie, so every member is then inflated once in bounded
chunks by ``zipfile`` (which stops at the declared size and checks the CRC), proving the
declarations before the real parser reads anything. Memory stays at one chunk.
"""

from __future__ import annotations

import io
import lzma
import zipfile
import zlib

from event_pipeline.intake.errors import IntakeError, library_error
from event_pipeline.intake.messages import Phrase

# Sheet XML of real exports compresses 5-20x; zeros or repeated padding compress ~1000x.
MAX_RATIO = 100
RATIO_CHECK_MIN_BYTES = 10 * 1024 * 1024
# Uncompressed budget relative to the upload limit: a full 50 MB XLSX is about 10x bigger inflated.
UNCOMPRESSED_FACTOR = 16
_CHUNK = 1024 * 1024
# What zipfile lets through from a damaged archive besides BadZipFile: offsets that point before
# the start (ValueError, also undecodable names), and each decompressor's own error (zlib.error,
# OSError from bz2, lzma.LZMAError, EOFError for a stream cut short).
ZIP_DAMAGE: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    OSError,
    EOFError,
    ValueError,
)


def _bomb(reason: str, **facts: object) -> IntakeError:
    return IntakeError.of("zip_bomb", facts, reason=Phrase(reason, facts))


def check_xlsx_container(data: bytes, max_bytes: int) -> None:
    """Raise IntakeError if the XLSX container would inflate beyond the budget."""
    budget = max_bytes * UNCOMPRESSED_FACTOR
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            declared = sum(info.file_size for info in infos)
            if declared > budget:
                raise _bomb("zip_bomb.total", declared=declared, budget=budget)
            for info in infos:
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > RATIO_CHECK_MIN_BYTES and ratio > MAX_RATIO:
                    raise _bomb("zip_bomb.ratio", member=info.filename, ratio=round(ratio))
            for info in infos:
                try:
                    with zf.open(info) as member:
                        while member.read(_CHUNK):
                            pass
                except ZIP_DAMAGE as exc:
                    # The member's local header offset is where the damage is (or starts).
                    error = library_error(exc)
                    raise IntakeError.of(
                        "corrupt.zip_member",
                        {"error": error, "member": info.filename, "offset": info.header_offset},
                        member=info.filename,
                        offset=info.header_offset,
                        error=error,
                    ) from exc
    except ZIP_DAMAGE as exc:
        raise IntakeError.of("corrupt.zip", {"format": "zip", "error": library_error(exc)}) from exc
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: encrypted members; NotImplementedError: exotic compression methods.
        error = library_error(exc)
        raise IntakeError.of("corrupt.zip_unsupported", {"error": error}, error=error) from exc
