"""Check-in QR codes, fast enough to render a whole event (hundreds of thousands) in minutes.

``qrcode``/``segno`` spend milliseconds per symbol in pure-Python loops (mask evaluation alone is
most of it), so this module is a small QR encoder specialised for one job: byte mode, error
correction level M, model 2 symbols. Everything per symbol is batched through numpy:

* Reed-Solomon parity is linear in the data, so a block's parity is the XOR of one precomputed
  table row per data byte: a gather and a reduction over the whole batch.
* Codeword interleaving and zig-zag placement are precomputed as one index array per version.
* The eight ISO/IEC 18004 mask penalties are evaluated on rows/columns packed into uint64 words,
  so each rule is a handful of shifts, ands and popcounts instead of a per-module loop.
* The PNG is written by hand (1-bit grayscale, one IDAT), skipping PIL entirely.

``qrcode`` (with a fixed mask) is the reference the test-suite compares whole matrices with, and
``segno``'s penalty function is the reference for mask selection; ``segno`` itself is not used to
encode because it inserts a spurious 0x00 codeword before the pad codewords whenever the data ends
on a byte boundary, which every short byte-mode payload does (heuer/segno#123, #148).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from event_pipeline.files import private_dir

__all__ = [
    "QR_ERROR_CORRECTION",
    "QR_MAX_PAYLOAD_BYTES",
    "naive_qr_png",
    "qr_matrix",
    "render_qr_png",
    "write_qr_pngs",
]

QR_ERROR_CORRECTION: Final = "M"

U8 = npt.NDArray[np.uint8]
# Packed module lines: uint64, or Python ints (object dtype) for symbols wider than 64 modules.
Words = npt.NDArray[Any]

# Error correction level M, ISO/IEC 18004:2015 table 9, per version 1..40:
# (EC codewords per block, blocks in group 1, data codewords per group-1 block[, group 2 likewise]).
_M_BLOCKS: Final[tuple[tuple[int, ...], ...]] = (
    (10, 1, 16), (16, 1, 28), (26, 1, 44), (18, 2, 32), (24, 2, 43),
    (16, 4, 27), (18, 4, 31), (22, 2, 38, 2, 39), (22, 3, 36, 2, 37), (26, 4, 43, 1, 44),
    (30, 1, 50, 4, 51), (22, 6, 36, 2, 37), (22, 8, 37, 1, 38), (24, 4, 40, 5, 41), (24, 5, 41, 5, 42),
    (28, 7, 45, 3, 46), (28, 10, 46, 1, 47), (26, 9, 43, 4, 44), (26, 3, 44, 11, 45), (26, 3, 41, 13, 42),
    (26, 17, 42), (28, 17, 46), (28, 4, 47, 14, 48), (28, 6, 45, 14, 46), (28, 8, 47, 13, 48),
    (28, 19, 46, 4, 47), (28, 22, 45, 3, 46), (28, 3, 45, 23, 46), (28, 21, 45, 7, 46),
    (28, 19, 47, 10, 48), (28, 2, 46, 29, 47), (28, 10, 46, 23, 47), (28, 14, 46, 21, 47),
    (28, 14, 46, 23, 47), (28, 12, 47, 26, 48), (28, 6, 47, 34, 48), (28, 29, 46, 14, 47),
    (28, 13, 46, 32, 47), (28, 40, 47, 7, 48), (28, 18, 47, 31, 48),
)  # fmt: skip

_EC_LEVEL_BITS_M: Final = 0b00  # level M is 00 in the format information, not 01
_MODE_BYTE: Final = 0b0100
_MODE_ECI: Final = 0b0111
_ECI_UTF8: Final = 26
_PAD_CODEWORDS: Final = b"\xec\x11"

# Processes cost ~0.1-0.3 s each to start; below this many items one core is faster end to end.
_MIN_ITEMS_FOR_PROCESSES: Final = 500
_MAX_CHUNK: Final = 4000
# Bounds the numpy temporaries of one encode/render step to a few MB.
_BATCH: Final = 64
_ZLIB_LEVEL: Final = 1


def _cc_bits(version: int) -> int:
    return 8 if version <= 9 else 16


def _data_codewords(version: int) -> int:
    _ec, *groups = _M_BLOCKS[version - 1]
    return sum(groups[i] * groups[i + 1] for i in range(0, len(groups), 2))


def _max_payload(version: int, eci: bool) -> int:
    header_bits = (16 if eci else 4) + _cc_bits(version)
    return (_data_codewords(version) * 8 - header_bits) // 8


# Largest payload (bytes) per version 1..40, without / with the UTF-8 ECI header.
_MAX_PAYLOAD: Final = {eci: [_max_payload(v, eci) for v in range(1, 41)] for eci in (False, True)}
QR_MAX_PAYLOAD_BYTES: Final = _MAX_PAYLOAD[False][-1]


def _payload_bytes(payload: str) -> tuple[bytes, bool]:
    """UTF-8 bytes of ``payload`` and whether it needs a UTF-8 ECI header.

    Byte mode is ISO-8859-1 unless an ECI says otherwise; ASCII is the same in both, so only
    non-ASCII payloads pay for the 12-bit ECI (and scanners that ignore ECIs still see ASCII right).
    """
    data = payload.encode("utf-8")
    return data, not data.isascii()


def _choose_version(n_bytes: int, eci: bool) -> int:
    """Smallest version whose level-M capacity holds the payload."""
    limits = _MAX_PAYLOAD[eci]
    version = bisect.bisect_left(limits, n_bytes) + 1
    if version > 40:
        raise ValueError(f"payload of {n_bytes} bytes does not fit a level-M QR code (max {limits[-1]})")
    return version


def _by_version(encoded: Sequence[tuple[bytes, bool]]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for idx, (data, eci) in enumerate(encoded):
        groups.setdefault(_choose_version(len(data), eci), []).append(idx)
    return groups


def _data_codeword_bytes(data: bytes, eci: bool, version: int, capacity: int) -> bytes:
    """Mode header + data + terminator + padding as the ``capacity`` data codewords."""
    cc = _cc_bits(version)
    header = (_MODE_BYTE << cc) | len(data)
    header_bits = 4 + cc
    if eci:
        header |= ((_MODE_ECI << 8) | _ECI_UTF8) << header_bits
        header_bits += 12
    used = header_bits + 8 * len(data)
    # The terminator is up to four zero bits, then zero bits up to the next codeword boundary;
    # shifting left by both at once yields exactly those zeros.
    ended = used + min(4, capacity * 8 - used)
    n_bytes = -(-ended // 8)
    value = ((header << (8 * len(data))) | int.from_bytes(data, "big")) << (8 * n_bytes - used)
    pad = _PAD_CODEWORDS * ((capacity - n_bytes + 1) // 2)
    return value.to_bytes(n_bytes, "big") + pad[: capacity - n_bytes]


# -- GF(256) and BCH helpers --------------------------------------------------------------------


def _gf_tables() -> tuple[list[int], list[int]]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


_GF_EXP, _GF_LOG = _gf_tables()


def _rs_generator(degree: int) -> list[int]:
    """Coefficients (highest first, monic term dropped) of prod_{i<degree} (x - a^i)."""
    poly = [1]
    for i in range(degree):
        nxt = [0] * (len(poly) + 1)
        for j, c in enumerate(poly):
            nxt[j] ^= c
            if c:
                nxt[j + 1] ^= _GF_EXP[_GF_LOG[c] + i]
        poly = nxt
    return poly[1:]


def _rs_parity(block: bytes, degree: int) -> bytes:
    """Scalar Reed-Solomon remainder, only used to derive the linear maps below."""
    gen = _rs_generator(degree)
    rem = [0] * degree
    for byte in block:
        factor = byte ^ rem[0]
        rem = [*rem[1:], 0]
        if factor:
            lf = _GF_LOG[factor]
            for j, g in enumerate(gen):
                if g:
                    rem[j] ^= _GF_EXP[lf + _GF_LOG[g]]
    return bytes(rem)


@cache
def _parity_table(n_data: int, degree: int) -> npt.NDArray[np.uint64]:
    """(n_data, 256, words) table with parity(block) = XOR_j table[j, block[j]].

    RS parity is linear over GF(256), so it is the XOR of each data byte's contribution, and the
    contribution of byte value v at position j is v times that of value 1 there. Parity bytes are
    stored in uint64 words so the per-symbol work is a gather plus an XOR reduction; this keeps the
    hot path off BLAS, whose threads oversubscribe the cores when several worker processes run.
    """
    unit = np.zeros((n_data, degree), dtype=np.intp)
    for j in range(n_data):
        block = bytearray(n_data)
        block[j] = 1
        unit[j] = np.frombuffer(_rs_parity(bytes(block), degree), dtype=np.uint8)
    exp = np.asarray(_GF_EXP, dtype=np.uint8)
    log = np.asarray(_GF_LOG, dtype=np.intp)
    values = np.arange(256)
    products = exp[log[values][None, :, None] + log[unit][:, None, :]]
    products[:, values == 0, :] = 0
    products[np.broadcast_to((unit == 0)[:, None, :], products.shape)] = 0
    words = -(-degree // 8)
    table = np.zeros((n_data, 256, words * 8), dtype=np.uint8)
    table[..., :degree] = products
    return table.view("<u8")


def _bch(value: int, generator: int) -> int:
    gen_len = generator.bit_length()
    rem = value << (gen_len - 1)
    while rem.bit_length() >= gen_len:
        rem ^= generator << (rem.bit_length() - gen_len)
    return (value << (gen_len - 1)) | rem


def _format_bits(mask: int) -> int:
    return _bch((_EC_LEVEL_BITS_M << 3) | mask, 0b10100110111) ^ 0b101010000010010


def _alignment_positions(version: int) -> list[int]:
    if version == 1:
        return []
    size = 17 + 4 * version
    count = version // 7 + 2
    step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
    return [6, *sorted(size - 7 - i * step for i in range(count - 1))]


# -- per-version layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    version: int
    size: int
    capacity: int  # data codewords
    blocks: tuple[tuple[int, int], ...]  # (number of blocks, data codewords per block), in order
    ec_len: int
    codeword_order: npt.NDArray[np.intp]  # interleaved sequence, as indices into data ++ parity
    place: npt.NDArray[np.intp]  # flat module index of each final bit, in placement order
    base: U8  # function patterns; format/version areas and the dark module left light
    mask_data: U8  # (8, S, S): mask pattern restricted to the data region
    overlay: U8  # (8, S, S): format info (+ dark module, version info) for each mask
    mask_rows: Words  # (8, S) mask_data packed per row, bit j = column j
    mask_cols: Words  # (8, S) mask_data packed per column, bit i = row i


def _mask_pattern(mask: int, size: int) -> npt.NDArray[np.bool_]:
    i, j = np.indices((size, size))
    patterns = (
        (i + j) % 2 == 0,
        i % 2 == 0,
        j % 3 == 0,
        (i + j) % 3 == 0,
        (i // 2 + j // 3) % 2 == 0,
        (i * j) % 2 + (i * j) % 3 == 0,
        ((i * j) % 2 + (i * j) % 3) % 2 == 0,
        ((i + j) % 2 + (i * j) % 3) % 2 == 0,
    )
    return patterns[mask]


def _pack_lines(bits: U8) -> Words:
    """Packs the last axis into one word per line, module j -> bit j.

    Lines of up to 64 modules (version <= 11, i.e. payloads up to ~250 bytes) become uint64 so the
    penalty rules run as native vector ops; longer lines fall back to Python ints in an object
    array, which supports the same operators, just slower.
    """
    length = bits.shape[-1]
    if length <= 64:
        padded = np.zeros((*bits.shape[:-1], 64), dtype=np.uint8)
        padded[..., :length] = bits
        return np.packbits(padded, axis=-1, bitorder="little").view("<u8").reshape(bits.shape[:-1])
    packed = np.packbits(bits, axis=-1, bitorder="little")
    flat = packed.reshape(-1, packed.shape[-1])
    words = np.empty(flat.shape[0], dtype=object)
    words[:] = [int.from_bytes(line.tobytes(), "little") for line in flat]
    return words.reshape(bits.shape[:-1])


@cache
def _layout(version: int) -> _Layout:
    size = 17 + 4 * version
    base = np.zeros((size, size), dtype=np.uint8)
    reserved = np.zeros((size, size), dtype=bool)

    for r, c in ((0, 0), (0, size - 7), (size - 7, 0)):
        # Finder plus its light separator; clipping the 9x9 box at the edges keeps the slicing simple.
        reserved[max(r - 1, 0) : r + 8, max(c - 1, 0) : c + 8] = True
        base[r : r + 7, c : c + 7] = 1
        base[r + 1 : r + 6, c + 1 : c + 6] = 0
        base[r + 2 : r + 5, c + 2 : c + 5] = 1

    positions = _alignment_positions(version)
    first, last = 6, size - 7  # alignment centres that would sit on a finder pattern
    for r, c in itertools.product(positions, repeat=2):
        if (r, c) in ((first, first), (first, last), (last, first)):
            continue
        reserved[r - 2 : r + 3, c - 2 : c + 3] = True
        base[r - 2 : r + 3, c - 2 : c + 3] = 1
        base[r - 1 : r + 2, c - 1 : c + 2] = 0
        base[r, c] = 1

    timing = (np.arange(size) % 2 == 0).astype(np.uint8)
    reserved[6, :] = True
    reserved[:, 6] = True
    base[6, 8 : size - 8] = timing[8 : size - 8]
    base[8 : size - 8, 6] = timing[8 : size - 8]

    # Format areas (and the dark module at (size-8, 8)) stay light in ``base``: the mask penalty is
    # evaluated before format information is known, matching the qrcode/segno reference encoders.
    reserved[8, :9] = True
    reserved[:9, 8] = True
    reserved[8, size - 8 :] = True
    reserved[size - 8 :, 8] = True
    overlay = np.zeros((8, size, size), dtype=np.uint8)
    for mask in range(8):
        fmt = _format_bits(mask)
        for i in range(15):
            bit = (fmt >> i) & 1
            row = i if i < 6 else i + 1 if i < 8 else size - 15 + i
            col = size - 1 - i if i < 8 else 7 if i == 8 else 14 - i
            overlay[mask, row, 8] = bit
            overlay[mask, 8, col] = bit
        overlay[mask, size - 8, 8] = 1
    if version >= 7:
        reserved[:6, size - 11 : size - 8] = True
        reserved[size - 11 : size - 8, :6] = True
        info = _bch(version, 0b1111100100101)
        for i in range(18):
            bit = (info >> i) & 1
            overlay[:, i // 3, size - 11 + i % 3] = bit
            overlay[:, size - 11 + i % 3, i // 3] = bit

    # Zig-zag placement: two-module columns from the right, alternating up/down, skipping column 6.
    order: list[int] = []
    upward = True
    right = size - 1
    while right > 0:
        if right == 6:
            right -= 1
        rows = range(size - 1, -1, -1) if upward else range(size)
        for r in rows:
            for c in (right, right - 1):
                if not reserved[r, c]:
                    order.append(r * size + c)
        upward = not upward
        right -= 2

    ec_len, *groups = _M_BLOCKS[version - 1]
    blocks = tuple((groups[i], groups[i + 1]) for i in range(0, len(groups), 2))
    lengths = [k for n, k in blocks for _ in range(n)]
    capacity = sum(lengths)
    # Interleave: data codeword i of every block in turn, then parity codeword i of every block.
    starts = np.cumsum([0, *lengths[:-1]])
    codewords = [int(starts[b]) + i for i in range(max(lengths)) for b in range(len(lengths)) if i < lengths[b]]
    codewords += [capacity + b * ec_len + i for i in range(ec_len) for b in range(len(lengths))]
    # Remainder modules (0, 3, 4 or 7 of them) get no bits: they stay light before masking.
    place = np.asarray(order[: 8 * len(codewords)], dtype=np.intp)

    data_region = ~reserved
    mask_data = np.stack([(_mask_pattern(m, size) & data_region) for m in range(8)]).astype(np.uint8)
    return _Layout(
        version=version,
        size=size,
        capacity=capacity,
        blocks=blocks,
        ec_len=ec_len,
        codeword_order=np.asarray(codewords, dtype=np.intp),
        place=place,
        base=base,
        mask_data=mask_data,
        overlay=overlay,
        mask_rows=_pack_lines(mask_data),
        mask_cols=_pack_lines(mask_data.transpose(0, 2, 1)),
    )


# -- mask penalty (ISO/IEC 18004:2015 7.8.3.1) --------------------------------------------------

_BYTE_POPCOUNT: Final = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_bit_count: Final = np.frompyfunc(int.bit_count, 1, 1)


def _popcount(words: Words) -> npt.NDArray[np.int64]:
    if words.dtype == object:
        return np.asarray(_bit_count(words), dtype=np.int64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).astype(np.int64)
    as_bytes = np.ascontiguousarray(words).view(np.uint8).reshape(*words.shape, 8)
    return _BYTE_POPCOUNT[as_bytes].sum(axis=-1, dtype=np.int64)


def _n3_exact(candidates: int) -> int:
    """Greedy left-to-right count of finder-like patterns, as the reference scanners do.

    1011101 can overlap itself at offsets 4 and 6; once a pattern is counted the scan resumes after
    it, so an overlapping one is not counted too. Only lines with such overlaps come here.
    """
    count = 0
    blocked = 0
    while candidates:
        low = candidates & -candidates
        if not blocked & low:
            count += 1
            blocked |= (low << 4) | (low << 6)
        candidates ^= low
    return count


def _line_penalties(lines: Words, size: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Rule 1 (runs) and rule 3 (1:1:3:1:1 with 4 light modules) summed over the last axis."""
    # Constants must match the word type: numpy 1.x would turn uint64-with-Python-int into float.
    word: Callable[[int], Any] = np.uint64 if lines.dtype == np.uint64 else int
    full = word((1 << size) - 1)

    def shr(x: Words, n: int) -> Words:
        return x >> word(n)

    def shl(x: Words, n: int) -> Words:
        return (x << word(n)) & full

    # Rule 1: a run of L >= 5 scores L - 2 = (L - 4 windows of five equal modules) + 2 per run.
    same = ~(lines ^ shr(lines, 1)) & word((1 << (size - 1)) - 1)  # bit p: m[p] == m[p+1]
    five = same & shr(same, 1) & shr(same, 2) & shr(same, 3)
    run_start = five & ~shl(same, 1)
    n1 = _popcount(five).sum(axis=-1) + 2 * _popcount(run_start).sum(axis=-1)

    # Rule 3: dark-light-dark-dark-dark-light-dark at p, with four light modules before or after;
    # modules outside the symbol count as light (the quiet zone).
    inv = ~lines & full
    pattern = lines & shr(inv, 1) & shr(lines, 2) & shr(lines, 3) & shr(lines, 4) & shr(inv, 5) & shr(lines, 6)
    dark_ahead = lines | shr(lines, 1) | shr(lines, 2) | shr(lines, 3)  # bit p: dark in p..p+3
    dark_behind = lines | shl(lines, 1) | shl(lines, 2) | shl(lines, 3)  # bit p: dark in p-3..p
    light_before = ~shl(dark_behind, 1)
    light_after = ~shr(dark_ahead, 7)
    candidates = pattern & (light_before | light_after)
    n3 = np.asarray(_popcount(candidates).sum(axis=-1))  # 0-d for one line, still indexable
    overlapping = candidates & (shl(candidates, 4) | shl(candidates, 6))
    for idx in zip(*np.nonzero(overlapping), strict=True):
        line_idx = tuple(int(i) for i in idx)
        found = int(candidates[line_idx])
        n3[line_idx[:-1]] += _n3_exact(found) - found.bit_count()
    return n1, n3


def _penalties(rows: Words, cols: Words, size: int) -> npt.NDArray[np.int64]:
    """(..., 4) penalty scores N1..N4 of matrices given as packed rows and packed columns."""
    row_n1, row_n3 = _line_penalties(rows, size)
    col_n1, col_n3 = _line_penalties(cols, size)
    # Rule 2: every 2x2 block of one colour scores 3 (overlapping blocks all count).
    word: Callable[[int], Any] = np.uint64 if rows.dtype == np.uint64 else int
    top, bottom = rows[..., :-1], rows[..., 1:]
    one = word(1)
    pairs = word((1 << (size - 1)) - 1)
    block = ~(top ^ (top >> one)) & ~(bottom ^ (bottom >> one)) & ~(top ^ bottom) & pairs
    n2 = 3 * _popcount(block).sum(axis=-1)
    # Rule 4: 10 points per full 5 % the dark share deviates from 50 %; same float steps as the
    # reference so boundary cases truncate identically.
    dark = _popcount(rows).sum(axis=-1)
    n4 = 10 * np.floor(np.abs(dark / float(size * size) * 100 - 50) / 5).astype(np.int64)
    return np.stack([row_n1 + col_n1, n2, 40 * (row_n3 + col_n3), n4], axis=-1)


# -- encoding ------------------------------------------------------------------------------------


def _encode_group(payloads: Sequence[tuple[bytes, bool]], layout: _Layout) -> tuple[U8, npt.NDArray[np.intp]]:
    """Matrices (N, S, S; 1 = dark) and chosen masks for payloads that all use ``layout``'s version."""
    n = len(payloads)
    size = layout.size
    stream = b"".join(_data_codeword_bytes(data, eci, layout.version, layout.capacity) for data, eci in payloads)
    codewords = np.frombuffer(stream, dtype=np.uint8).reshape(n, layout.capacity)
    parts = [codewords]
    offset = 0
    for count, length in layout.blocks:
        blocks = codewords[:, offset : offset + count * length].reshape(n * count, length)
        table = _parity_table(length, layout.ec_len)
        parity = np.bitwise_xor.reduce(table[np.arange(length), blocks], axis=1)
        parts.append(parity.view(np.uint8)[:, : layout.ec_len].reshape(n, count * layout.ec_len))
        offset += count * length
    bits = np.unpackbits(np.concatenate(parts, axis=1)[:, layout.codeword_order], axis=1)

    flat = np.broadcast_to(layout.base.ravel(), (n, size * size)).copy()
    flat[:, layout.place] = bits
    unmasked = flat.reshape(n, size, size)

    rows = _pack_lines(unmasked)[:, None, :] ^ layout.mask_rows[None]
    cols = _pack_lines(unmasked.transpose(0, 2, 1))[:, None, :] ^ layout.mask_cols[None]
    # argmin keeps the lowest-numbered mask on ties, like the reference encoders.
    masks = _penalties(rows, cols, size).sum(axis=-1).argmin(axis=1)
    return unmasked ^ layout.mask_data[masks] | layout.overlay[masks], masks


def _encode_many(payloads: Sequence[str]) -> list[tuple[U8, int, int]]:
    """(matrix, version, mask) per payload, in input order; batches by version for numpy."""
    encoded = [_payload_bytes(p) for p in payloads]
    out: list[tuple[U8, int, int] | None] = [None] * len(payloads)
    for version, indices in _by_version(encoded).items():
        layout = _layout(version)
        for start in range(0, len(indices), _BATCH):
            chunk = indices[start : start + _BATCH]
            matrices, masks = _encode_group([encoded[i] for i in chunk], layout)
            for k, i in enumerate(chunk):
                out[i] = (matrices[k], version, int(masks[k]))
    return [o for o in out if o is not None]


def qr_matrix(payload: str) -> npt.NDArray[np.bool_]:
    """Module matrix of ``payload`` (True = dark), level M, byte mode, without quiet zone."""
    matrix, _version, _mask = _encode_many([payload])[0]
    return matrix.astype(bool)


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
    light = np.ones((n, modules, modules), dtype=np.uint8)
    light[:, border : border + size, border : border + size] ^= matrices
    packed = np.packbits(np.repeat(light, scale, axis=2), axis=2)  # (N, modules, row bytes)
    # Each module row becomes one "None"-filtered scanline followed by scale-1 "Up"-filtered
    # all-zero ones (identical to the row above): deflate squeezes those to almost nothing and is
    # several times faster than matching repeated literal rows.
    scanlines = np.zeros((n, modules, scale, packed.shape[2] + 1), dtype=np.uint8)
    scanlines[:, :, 0, 1:] = packed
    scanlines[:, :, 1:, 0] = 2
    raw = scanlines.reshape(n, -1)
    head = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, width, 1, 0, 0, 0, 0))
    return [head + _png_chunk(b"IDAT", zlib.compress(row.tobytes(), _ZLIB_LEVEL)) + _PNG_IEND for row in raw]


def render_qr_png(payload: str, *, scale: int = 6, border: int = 4) -> bytes:
    """PNG bytes of ``payload``'s QR code; each module is ``scale`` px, quiet zone ``border`` modules."""
    matrix, _version, _mask = _encode_many([payload])[0]
    return _png_images(matrix[None], scale, border)[0]


# -- writing files -------------------------------------------------------------------------------


def _write_atomic(path: str, content: bytes) -> None:
    # Same directory so os.replace is a rename within one filesystem; pid+thread keeps concurrent
    # writers of the same target from sharing a temp file.
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    # 0600: the code is a working check-in token.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
    encoded = [_payload_bytes(payload) for payload, _ in items]
    written = 0
    for version, indices in sorted(_by_version(encoded).items()):
        layout = _layout(version)
        for start in range(0, len(indices), _BATCH):
            chunk = indices[start : start + _BATCH]
            matrices, _masks = _encode_group([encoded[i] for i in chunk], layout)
            for i, png in zip(chunk, _png_images(matrices, scale, border), strict=True):
                path = items[i][1]
                parent = os.path.dirname(path)
                if parent and parent not in made_dirs:
                    private_dir(Path(parent))
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
        data, eci = _payload_bytes(payload)
        _choose_version(len(data), eci)  # raises before any file is touched
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
