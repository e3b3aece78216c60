"""Check-in QR codes: zxing-cpp's encoder (libzint underneath), written out as small 1-bit PNGs.

The symbol comes from ``zxingcpp.create_barcode`` at error correction level M, with libzint's
automatic mode segmentation and one fixed mask (``QR_MASK``). libzint's standard mask selection
(score all eight ISO/IEC 18004 masks, keep the lowest penalty) is nearly all of its cost:
~460-570 us for a ~70-character check-in URL on an idle core against ~73 us with a fixed mask,
which is what takes a 577k-participant upload's codes from minutes to under one. The penalty
exists to avoid one-coloured areas and finder-like patterns in the data region; our payload is a
random token, so every mask leaves the data region equally random and choosing the best of eight
buys little. Measured on 2,000 real check-in URLs, scaled 4x, Gaussian blur and noise, decoded by
zxing: automatic 854 and 150 (of 2,000, at noise 40 and 50), mask 2 866 and 172, mask 4 895 and
157. No degradation level we tried showed the automatic choice reading better.

Non-ASCII payloads get an explicit UTF-8 ECI. Without one libzint silently picks ISO-8859-1 or
Shift JIS when the text fits them, and a Shift JIS ``¥`` reads back as ``\\``.

The PNG is built by hand: the image is already two-coloured, so the scaled 1-bit rows are a few
numpy operations, deflated once, in the three chunks a PNG needs. ``bench/qr.py`` times it against
Pillow (``Image.fromarray(...).convert("1")``, nearest resize, save) on the same matrices; for a
check-in URL at scale 6 / border 4 (246x246 px), on the 2-core machine while other work kept it at
load 5-8: 782 us against 2,484 us per code (then still zlib level 6 and ``np.pad``); with level 1
and the slice assignment below, a spot check at load 8 gave 187 us against 3,072 us. The
encoder stays the larger cost.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import struct
import zipfile
import zlib
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import zxingcpp

from event_pipeline.files import atomic_writer
from event_pipeline.processes import die_with_owner, owner

__all__ = ["QR_ERROR_CORRECTION", "naive_qr_png", "qr_matrix", "render_qr_png", "render_qr_pngs", "write_qr_zip"]

QR_ERROR_CORRECTION: Final = "M"

# Fixed rather than chosen per code: see the module docstring for why and what it was measured against.
QR_MASK: Final = 4
_ECI_UTF8: Final = 26
# A few hundred codes per task keep pickling overhead small and still share short batches.
_CHUNK: Final = 256
# Level 1 is ~4x faster than the default 6 here and the PNG only ~120 bytes (~20 %) bigger.
_ZLIB_LEVEL: Final = 1
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"


def qr_matrix(payload: str) -> npt.NDArray[np.bool_]:
    """Module matrix of ``payload``'s level-M QR code (True = dark), without quiet zone."""
    try:
        size = len(payload.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("payload is not valid Unicode text (it holds a lone surrogate)") from None
    if not size:
        raise ValueError("payload is empty: a QR code needs at least one character")
    extra = {} if payload.isascii() else {"eci": _ECI_UTF8}
    try:
        barcode = zxingcpp.create_barcode(
            payload, zxingcpp.BarcodeFormat.QRCode, ec_level=QR_ERROR_CORRECTION, data_mask=QR_MASK, **extra
        )
    except ValueError as exc:
        # libzint's messages give lengths and codeword counts, never the data.
        raise ValueError(f"payload of {size} UTF-8 bytes does not fit a level-M QR code ({exc})") from None
    image = barcode.to_image(scale=1, add_quiet_zones=False)
    return np.asarray(image) == 0


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_PNG_IEND: Final = _png_chunk(b"IEND", b"")


def _pngs(matrices: npt.NDArray[np.bool_], scale: int, border: int) -> list[bytes]:
    """1-bit grayscale PNGs of a stack of same-sized matrices (True = dark): ``scale`` px per
    module, ``border`` light modules. The numpy work is done once for the whole stack (one code
    at a time it was ~60 us of small-array calls); the deflate, ~30 us a code, is what is left."""
    count, size = matrices.shape[0], matrices.shape[1]
    side = size + 2 * border
    light = np.ones((count, side, side), dtype=bool)  # np.pad costs 10x more
    light[:, border : border + size, border : border + size] = ~matrices
    packed = np.packbits(np.repeat(light, scale, axis=2), axis=2)
    # Each module row is one scanline with filter 0 (None) and scale-1 with filter 2 (Up) and all
    # zero bytes, i.e. "same as the row above": deflate squeezes those to almost nothing.
    lines = np.zeros((count, side, scale, packed.shape[2] + 1), dtype=np.uint8)
    lines[:, :, 0, 1:] = packed
    lines[:, :, 1:, 0] = 2
    width = side * scale
    head = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0))
    raw = lines.reshape(count, -1)
    return [head + _png_chunk(b"IDAT", zlib.compress(row.tobytes(), _ZLIB_LEVEL)) + _PNG_IEND for row in raw]


def render_qr_pngs(payloads: Iterable[str], *, scale: int = 6, border: int = 4) -> list[bytes]:
    """PNG bytes of each payload's QR code, in order: 1-bit grayscale, ``scale`` px per module,
    quiet zone ``border``. Codes of the same size are written together."""
    if scale < 1 or border < 0:
        raise ValueError(f"scale must be >= 1 and border >= 0, got scale={scale} border={border}")
    matrices = [qr_matrix(payload) for payload in payloads]
    by_size: dict[int, list[int]] = {}
    for i, matrix in enumerate(matrices):
        by_size.setdefault(matrix.shape[0], []).append(i)
    out: list[bytes] = [b""] * len(matrices)
    for indexes in by_size.values():
        for i, png in zip(indexes, _pngs(np.stack([matrices[i] for i in indexes]), scale, border), strict=True):
            out[i] = png
    return out


def render_qr_png(payload: str, *, scale: int = 6, border: int = 4) -> bytes:
    """PNG bytes of ``payload``'s QR code: 1-bit grayscale, ``scale`` px per module, quiet zone ``border``."""
    return render_qr_pngs([payload], scale=scale, border=border)[0]


def _render_chunk(chunk: list[tuple[str, str]]) -> list[tuple[str, bytes]]:
    return list(zip((name for name, _ in chunk), render_qr_pngs(payload for _, payload in chunk), strict=True))


def _chunks(items: Iterable[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, _CHUNK)):
        yield chunk


def _rendered(items: Iterable[tuple[str, str]], processes: int) -> Generator[tuple[str, bytes], None, None]:
    """(name, PNG) in input order; with several processes at most two chunks per process are in flight."""
    if processes <= 1:
        for name, payload in items:
            yield name, render_qr_png(payload)
        return
    # forkserver/spawn rather than fork: callers (Dagster) have threads, and forking a threaded
    # process can deadlock the child.
    context = get_context("forkserver" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(
        max_workers=processes, mp_context=context, initializer=die_with_owner, initargs=owner()
    ) as pool:
        pending: deque[Future[list[tuple[str, bytes]]]] = deque()
        try:
            for chunk in _chunks(items):
                pending.append(pool.submit(_render_chunk, chunk))
                if len(pending) >= 2 * processes:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BaseException:
            # Otherwise the pool would first render every chunk already queued.
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def write_qr_zip(items: Iterable[tuple[str, str]], target: Path, *, processes: int = 1) -> int:
    """Writes one ZIP of ``(member name, payload)`` QR PNGs to ``target``; returns how many.

    The file is 0600 and appears whole or not at all (``files.atomic_writer``): an error from
    ``items``, the encoder or the disk leaves any earlier ``target`` as it was. Members are
    stored, not deflated again (PNGs are compressed already). ``processes`` > 1 renders in that
    many worker processes (forkserver), so a script calling it needs the ``__main__`` guard.
    """
    written = 0
    seen: set[str] = set()
    with (
        atomic_writer(target) as fh,
        zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as archive,
        # Closed at once on an error here too, so the worker pool stops with it.
        contextlib.closing(_rendered(items, processes)) as rendered,
    ):
        for name, png in rendered:
            if name in seen:
                # Extractors disagree on which of two same-named members wins.
                raise ValueError(f"member {written + 1} repeats an earlier member's name")
            seen.add(name)
            archive.writestr(name, png)
            written += 1
    return written


def naive_qr_png(payload: str) -> bytes:
    """The ``qrcode`` package's default path (pure Python, Pillow image); the benchmark's baseline."""
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    buffer = io.BytesIO()
    qrcode.make(payload, error_correction=ERROR_CORRECT_M).save(buffer)
    return buffer.getvalue()
