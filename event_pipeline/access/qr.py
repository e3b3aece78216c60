"""Check-in QR codes, fast enough to render a whole event (hundreds of thousands) in minutes.

``qrcode``/``segno`` spend milliseconds per symbol in pure-Python loops, mostly on mask
evaluation and PIL. zxing-cpp's encoder (C++) builds the module matrix in a fraction of that; the
PNG is then written straight from the matrix (1-bit grayscale, one IDAT, no PIL), and large batches
are spread over processes.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import threading
import zlib
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import zxingcpp

__all__ = [
    "QR_ERROR_CORRECTION",
    "QR_MAX_PAYLOAD_BYTES",
    "naive_qr_png",
    "qr_matrix",
    "render_qr_png",
    "write_qr_pngs",
]

QR_ERROR_CORRECTION: Final = "M"
# Byte-mode capacity of a version-40 symbol at level M (ISO/IEC 18004 table 7).
QR_MAX_PAYLOAD_BYTES: Final = 2331

U8 = npt.NDArray[np.uint8]

# Starting a forkserver pool costs ~0.3 s; below this many items one core finishes sooner.
_MIN_ITEMS_FOR_PROCESSES: Final = 500
_MAX_CHUNK: Final = 4000
_RASTER_BUDGET: Final = 8 << 20
_ZLIB_LEVEL: Final = 1


def _check_fits(payload: str) -> None:
    # Check-in URLs are ASCII (percent-encoded). Other text would be written as ISO-8859-1 without
    # an ECI header, which readers guess at (0xA1 comes back as Shift_JIS '｡'), so refuse it.
    if not payload.isascii():
        raise ValueError("QR payloads must be ASCII (percent-encode non-ASCII parts of the URL)")
    size = len(payload)
    if size > QR_MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {size} bytes does not fit in a QR code at level M (max {QR_MAX_PAYLOAD_BYTES})")


def _matrix(payload: str) -> U8:
    """1 = dark module, no quiet zone."""
    _check_fits(payload)
    barcode = zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode, ec_level=QR_ERROR_CORRECTION)
    image = np.asarray(barcode.to_image(scale=1, add_quiet_zones=False))
    return (image < 128).astype(np.uint8)


def qr_matrix(payload: str) -> npt.NDArray[np.bool_]:
    """Module matrix of ``payload`` (True = dark), level M, without quiet zone."""
    return _matrix(payload).astype(bool)


# -- PNG -----------------------------------------------------------------------------------------

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_PNG_IEND: Final = _png_chunk(b"IEND", b"")


def _png_images(matrices: U8, scale: int, border: int) -> list[bytes]:
    """1-bit grayscale PNGs for same-sized matrices (N, S, S; 1 = dark)."""
    if scale < 1 or border < 0:
        raise ValueError(f"scale must be >= 1 and border >= 0, got scale={scale} border={border}")
    n, size, _ = matrices.shape
    modules = size + 2 * border
    width = modules * scale
    row_bytes = -(-width // 8) + 1  # + the filter-type byte
    head = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0))
    # Big symbols at big scales make multi-MB rasters; cap the batch's scanline buffer instead.
    step = max(1, _RASTER_BUDGET // (row_bytes * width))
    images: list[bytes] = []
    for start in range(0, n, step):
        part = matrices[start : start + step]
        light = np.ones((len(part), modules, modules), dtype=np.uint8)
        light[:, border : border + size, border : border + size] ^= part
        packed = np.packbits(np.repeat(light, scale, axis=2), axis=2)  # (n, modules, row_bytes - 1)
        # Each module row is one "None"-filtered scanline and scale-1 "Up"-filtered ones, which are
        # all zero because they equal the row above: ~10 % smaller and a bit faster to deflate than
        # repeating the literal row, and no per-pixel work.
        scanlines = np.zeros((len(part), modules, scale, row_bytes), dtype=np.uint8)
        scanlines[:, :, 0, 1:] = packed
        scanlines[:, :, 1:, 0] = 2
        for raw in scanlines.reshape(len(part), -1):
            images.append(head + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), _ZLIB_LEVEL)) + _PNG_IEND)
    return images


def render_qr_png(payload: str, *, scale: int = 6, border: int = 4) -> bytes:
    """PNG bytes of ``payload``'s QR code; each module is ``scale`` px, quiet zone ``border`` modules."""
    return _png_images(_matrix(payload)[None], scale, border)[0]


# -- writing files -------------------------------------------------------------------------------


def _write_atomic(path: str, content: bytes) -> None:
    # Same directory so os.replace is a rename within one filesystem; pid+thread keeps concurrent
    # writers of the same target from sharing a temp file.
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_chunk(items: Sequence[tuple[str, str]], scale: int, border: int) -> int:
    made_dirs: set[str] = set()
    # Same-sized symbols share one numpy pass when rasterised.
    by_size: dict[int, list[tuple[U8, str]]] = defaultdict(list)
    for payload, path in items:
        matrix = _matrix(payload)
        by_size[matrix.shape[0]].append((matrix, path))
    written = 0
    for group in by_size.values():
        pngs = _png_images(np.stack([m for m, _ in group]), scale, border)
        for (_, path), png in zip(group, pngs, strict=True):
            parent = os.path.dirname(path)
            if parent and parent not in made_dirs:
                os.makedirs(parent, exist_ok=True)
                made_dirs.add(parent)
            _write_atomic(path, png)
            written += 1
    return written


def write_qr_pngs(
    items: Sequence[tuple[str, Path]], *, scale: int = 6, border: int = 4, workers: int | None = None
) -> int:
    """Writes each payload's QR PNG to its path; returns how many files were written.

    Parent directories are created and existing files replaced. Each file appears atomically (a
    hidden ``.<name>.<pid>-<thread>.tmp`` sibling, then ``os.replace``), so readers never see a
    partial PNG. There is no fsync: this guards against crashes of the process, not of the machine.
    Payloads are validated (size) before anything is written; an I/O error mid-way leaves the files
    written so far in place and propagates.

    ``workers`` processes (default: CPU count) share batches of at least 500 items; they are
    started with ``forkserver``, so a script calling this needs the ``if __name__ == "__main__"``
    guard.
    """
    if scale < 1 or border < 0:
        raise ValueError(f"scale must be >= 1 and border >= 0, got scale={scale} border={border}")
    # Paths travel to workers as str: cheaper to pickle, and os.* calls take them directly.
    plain = [(payload, os.fspath(path)) for payload, path in items]
    for payload, _ in plain:
        _check_fits(payload)  # raises before any file is touched
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(plain) < _MIN_ITEMS_FOR_PROCESSES:
        return _write_chunk(plain, scale, border)
    chunk = max(_MIN_ITEMS_FOR_PROCESSES, min(_MAX_CHUNK, math.ceil(len(plain) / (workers * 4))))
    # forkserver/spawn rather than fork: callers (Dagster) may have threads, and forking a
    # threaded process can deadlock the child.
    method = "forkserver" if os.name == "posix" else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method)) as pool:
        futures = [
            pool.submit(_write_chunk, plain[start : start + chunk], scale, border)
            for start in range(0, len(plain), chunk)
        ]
        try:
            return sum(f.result() for f in futures)
        except BaseException:
            # Without this the pool would still render every queued chunk before re-raising.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def naive_qr_png(payload: str, path: Path) -> None:
    """The straightforward ``qrcode`` + PIL path; kept as the benchmark baseline."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    qrcode.make(payload, error_correction=ERROR_CORRECT_M).save(path)
