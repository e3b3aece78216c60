"""Check-in QR codes: every generated image is decoded back with zxing-cpp.

The encoder is our own (for speed), so besides round-trips the matrices are compared module for
module with ``qrcode`` at the same version and mask, and the mask choice with ``segno``'s
implementation of the ISO penalty rules. Both references are used through internals
(``QRCode.makeImpl``, ``segno.encoder``), which is acceptable for a test oracle.
"""

from __future__ import annotations

import io
import os
import random
import secrets
import string
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qrcode
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from qrcode.util import MODE_8BIT_BYTE, QRData
from segno import encoder as segno_encoder

from event_pipeline.access import qr
from event_pipeline.access.qr import (
    QR_ERROR_CORRECTION,
    QR_MAX_PAYLOAD_BYTES,
    naive_qr_png,
    qr_matrix,
    render_qr_png,
    write_qr_pngs,
)

URL_SAFE = string.ascii_letters + string.digits + "-_"
CHECKIN_PREFIX = "https://checkin.invalid/t/"
NON_ASCII = "https://checkin.invalid/t/café-Grüße-日本-😀"


def checkin_url() -> str:
    return CHECKIN_PREFIX + secrets.token_urlsafe(32)


def decode(image: Image.Image) -> Any:
    results = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    assert len(results) == 1, f"expected exactly one QR code, found {len(results)}"
    return results[0]


def decode_png(png: bytes | Path) -> Any:
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        image.load()
        return decode(image)


def reference_qrcode(payload: str, version: int, mask: int) -> qrcode.QRCode:
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, version=version, mask_pattern=mask, border=0
    )
    code.add_data(QRData(payload.encode("utf-8"), mode=MODE_8BIT_BYTE))
    code.make(fit=False)
    return code


def url_safe(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(URL_SAFE) for _ in range(length))


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# -- encoder against reference implementations ---------------------------------------------------


@pytest.mark.parametrize("version", range(1, 41))
def test_full_capacity_payload_matches_qrcode_module_for_module(version: int) -> None:
    # The largest payload of each version pins capacity, block layout, placement, alignment
    # patterns, version info and format info for all 40 versions at once.
    length = qr._MAX_PAYLOAD[False][version - 1]
    payload = url_safe(random.Random(version), length)
    matrix, got_version, mask = qr._encode_many([payload])[0]
    assert got_version == version
    expected = np.array(reference_qrcode(payload, version, mask).modules, dtype=bool)
    np.testing.assert_array_equal(matrix.astype(bool), expected)
    if version < 40:
        assert qr._choose_version(length + 1, False) == version + 1


@pytest.mark.parametrize("length", [1, 2, 13, 14, 15, 26, 27, 42, 69, 70, 84, 85, 120, 180, 181, 200])
def test_url_safe_payloads_match_qrcode_module_for_module(length: int) -> None:
    payload = url_safe(random.Random(length), length)
    _matrix, version, mask = qr._encode_many([payload])[0]
    expected = np.array(reference_qrcode(payload, version, mask).modules, dtype=bool)
    np.testing.assert_array_equal(qr_matrix(payload), expected)


@pytest.mark.parametrize(
    "payload",
    [
        "x",
        CHECKIN_PREFIX + "A" * 43 + "x",
        *(checkin_url() for _ in range(6)),
        url_safe(random.Random(7), 150),
        url_safe(random.Random(8), 260),  # > 64 modules wide: the Python-int penalty path
    ],
)
def test_chosen_mask_has_lowest_reference_penalty(payload: str) -> None:
    _matrix, version, mask = qr._encode_many([payload])[0]
    code = reference_qrcode(payload, version, mask)
    scores = []
    for candidate in range(8):
        # test=True leaves format/version areas light, as both references evaluate masks.
        code.makeImpl(True, candidate)
        rows = tuple(bytearray(int(bool(m)) for m in row) for row in code.modules)
        scores.append(segno_encoder.evaluate_mask(rows, len(rows), len(rows)))
    assert mask == int(np.argmin(scores)), scores


@pytest.mark.parametrize("size", [21, 37, 57, 61, 64, 65, 101])
def test_penalty_rules_match_segno_on_random_matrices(size: int) -> None:
    rng = np.random.default_rng(size)
    for density in (0.1, 0.3, 0.5, 0.7, 0.9):
        matrix = (rng.random((size, size)) < density).astype(np.uint8)
        ours = qr._penalties(qr._pack_lines(matrix[None]), qr._pack_lines(matrix.T[None]), size)[0]
        reference = segno_encoder.mask_scores(tuple(bytearray(r) for r in matrix), size, size)
        assert tuple(int(x) for x in ours) == tuple(reference)


@pytest.mark.parametrize(
    "line",
    [
        "000010111011101000000",  # two overlapping finder-like patterns: only the first counts
        "101110111011101110111",  # a chain of them touching both edges
        "000010111010111010000",  # overlap at offset 6
        "111101110101011111100",  # pattern with dark modules right before it: no penalty
        "101110100001011101000",
    ],
)
def test_finder_like_pattern_rule_matches_segno_on_overlaps(line: str) -> None:
    size = len(line)
    matrix = np.zeros((size, size), dtype=np.uint8)
    matrix[3] = [int(c) for c in line]
    matrix[:, 11] = [int(c) for c in line]
    ours = qr._penalties(qr._pack_lines(matrix[None]), qr._pack_lines(matrix.T[None]), size)[0]
    reference = segno_encoder.mask_scores(tuple(bytearray(r) for r in matrix), size, size)
    assert tuple(int(x) for x in ours) == tuple(reference)


def test_alignment_positions_and_block_table_match_qrcode() -> None:
    for version in range(1, 41):
        assert qr._alignment_positions(version) == list(qrcode.util.PATTERN_POSITION_TABLE[version - 1])
        blocks = qrcode.base.rs_blocks(version, qrcode.constants.ERROR_CORRECT_M)
        layout = qr._layout(version)
        assert [b.data_count for b in blocks] == [k for n, k in layout.blocks for _ in range(n)]
        assert {b.total_count - b.data_count for b in blocks} == {layout.ec_len}


def test_non_ascii_payload_gets_utf8_eci_header() -> None:
    data, eci = qr._payload_bytes(NON_ASCII)
    assert eci
    codewords = qr._data_codeword_bytes(data, eci, 5, qr._layout(5).capacity)
    # 0111 (ECI) 00011010 (UTF-8 = 26) 0100 (byte mode), then the 8-bit length
    assert codewords[:3] == bytes([0x71, 0xA4, len(data)])
    assert not qr._payload_bytes(CHECKIN_PREFIX + "abc")[1]


# -- rendered images decode back -----------------------------------------------------------------


def check_png(png: bytes | Path, payload: str, scale: int = 6, border: int = 4) -> None:
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        assert image.format == "PNG"
        assert image.mode == "1"
        modules = qr_matrix(payload).shape[0]
        assert image.size == ((modules + 2 * border) * scale,) * 2
        image.load()
        result = decode(image)
    assert result.text == payload
    assert result.bytes == payload.encode("utf-8")
    assert result.ec_level == QR_ERROR_CORRECTION == "M"


def test_checkin_urls_decode() -> None:
    for _ in range(40):
        payload = checkin_url()
        assert len(payload) == len(CHECKIN_PREFIX) + 43
        check_png(render_qr_png(payload), payload)


def test_every_length_up_to_200_decodes() -> None:
    rng = random.Random(200)
    for length in range(1, 201):
        payload = url_safe(rng, length)
        check_png(render_qr_png(payload), payload)


def test_decoder_sees_our_version_and_mask() -> None:
    for payload in (checkin_url(), url_safe(random.Random(3), 200), "a"):
        _matrix, version, mask = qr._encode_many([payload])[0]
        result = decode_png(render_qr_png(payload))
        assert result.extra["Version"] == str(version)
        assert result.extra["DataMask"] == mask
        assert result.extra["ECLevel"] == "M"


def test_non_ascii_payload_decodes() -> None:
    check_png(render_qr_png(NON_ASCII), NON_ASCII)


@pytest.mark.parametrize(("scale", "border"), [(1, 0), (2, 1), (4, 4), (6, 4), (8, 2), (11, 6)])
def test_png_pixels_are_the_scaled_matrix(scale: int, border: int) -> None:
    payload = checkin_url()
    matrix = qr_matrix(payload)
    with Image.open(io.BytesIO(render_qr_png(payload, scale=scale, border=border))) as image:
        pixels = np.asarray(image.convert("L"))
    expected_dark = np.kron(np.pad(matrix, border), np.ones((scale, scale), dtype=bool))
    np.testing.assert_array_equal(pixels == 0, expected_dark)
    assert set(np.unique(pixels)) == {0, 255}


@pytest.mark.parametrize(("scale", "border"), [(0, 4), (6, -1)])
def test_invalid_geometry_is_rejected(scale: int, border: int, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scale"):
        render_qr_png("x", scale=scale, border=border)
    with pytest.raises(ValueError, match="scale"):
        write_qr_pngs([("x", tmp_path / "x.png")], scale=scale, border=border)
    assert files_under(tmp_path) == set()


def test_too_long_payload_is_rejected_before_anything_is_written(tmp_path: Path) -> None:
    assert qr_matrix("a" * QR_MAX_PAYLOAD_BYTES).shape == (177, 177)
    with pytest.raises(ValueError, match="does not fit"):
        qr_matrix("a" * (QR_MAX_PAYLOAD_BYTES + 1))
    items = [(checkin_url(), tmp_path / f"{i}.png") for i in range(10)]
    items.append(("a" * (QR_MAX_PAYLOAD_BYTES + 1), tmp_path / "long.png"))
    with pytest.raises(ValueError, match="does not fit"):
        write_qr_pngs(items, workers=1)
    assert files_under(tmp_path) == set()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=URL_SAFE, min_size=1, max_size=80))
def test_url_safe_payloads_round_trip(payload: str) -> None:
    assert decode_png(render_qr_png(payload)).text == payload


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30))
def test_any_text_round_trips_as_utf8_bytes(payload: str) -> None:
    # Compares bytes: zxing's text for control characters is not the input string.
    assert decode_png(render_qr_png(payload)).bytes == payload.encode("utf-8")


# -- writing files -------------------------------------------------------------------------------


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Records the worker count of every process pool write_qr_pngs starts."""
    started: list[int | None] = []

    class RecordingPool(ProcessPoolExecutor):
        def __init__(self, max_workers: int | None = None, **kwargs: Any) -> None:
            started.append(max_workers)
            super().__init__(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(qr, "ProcessPoolExecutor", RecordingPool)
    return started


def mixed_payloads(count: int) -> list[str]:
    rng = random.Random(count)
    payloads = [checkin_url() for _ in range(count - 20)]
    payloads += [url_safe(rng, rng.randint(1, 200)) for _ in range(19)]
    return [*payloads, NON_ASCII]


def test_in_process_write(tmp_path: Path, pools: list[int | None]) -> None:
    payloads = mixed_payloads(60)
    items = [(p, tmp_path / f"event-{i % 3}" / "codes" / f"{i:04d}.png") for i, p in enumerate(payloads)]
    assert write_qr_pngs(items, workers=4) == len(items)  # below the process threshold
    assert pools == []
    assert files_under(tmp_path) == {str(path.relative_to(tmp_path)) for _, path in items}
    for payload, path in items:
        check_png(path, payload)


def test_multi_process_write(tmp_path: Path, pools: list[int | None]) -> None:
    payloads = mixed_payloads(600)
    items = [(p, tmp_path / f"{i:04d}.png") for i, p in enumerate(payloads)]
    assert write_qr_pngs(items, scale=4, border=4, workers=2) == 600
    assert pools == [2]
    assert files_under(tmp_path) == {f"{i:04d}.png" for i in range(600)}
    for payload, path in items:
        check_png(path, payload, scale=4, border=4)


def test_workers_one_stays_in_process_for_large_batches(tmp_path: Path, pools: list[int | None]) -> None:
    items = [(f"{CHECKIN_PREFIX}{i}", tmp_path / f"{i}.png") for i in range(600)]
    assert write_qr_pngs(items, workers=1) == 600
    assert pools == []
    check_png(tmp_path / "599.png", f"{CHECKIN_PREFIX}599")


def test_existing_file_is_replaced_and_no_temp_files_remain(tmp_path: Path) -> None:
    target = tmp_path / "code.png"
    target.write_bytes(b"stale")
    payload = checkin_url()
    assert write_qr_pngs([(payload, target), (payload, tmp_path / "other.png")], workers=1) == 2
    assert files_under(tmp_path) == {"code.png", "other.png"}
    check_png(target, payload)


@pytest.mark.parametrize("failing", ["write", "replace"])
def test_failed_write_keeps_old_file_and_leaves_no_temp_file(
    failing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "code.png"
    target.write_bytes(b"previous content")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    class DiskFullOs:
        """The real os module for the code under test, except one call fails like a full disk."""

        def __getattr__(self, name: str) -> Any:
            return disk_full if name == failing else getattr(os, name)

    monkeypatch.setattr(qr, "os", DiskFullOs())
    with pytest.raises(OSError, match="No space left"):
        write_qr_pngs([(checkin_url(), target)], workers=1)
    monkeypatch.undo()
    assert target.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["code.png"]


def test_naive_baseline_writes_a_decodable_level_m_png(tmp_path: Path) -> None:
    payload = checkin_url()
    naive_qr_png(payload, tmp_path / "naive.png")
    result = decode_png(tmp_path / "naive.png")
    assert result.text == payload
    assert result.ec_level == "M"
