"""Check-in QR codes: every generated image is decoded back with zxing-cpp's reader.

The encoder is zxing-cpp's (libzint); ``segno`` and ``qrcode`` are oracles: their codes for the
same payload must read back the same, and ours must be no larger. Modules are not compared one
for one: libzint segments modes and picks masks on its own terms.
"""

from __future__ import annotations

import io
import os
import random
import secrets
import stat
import string
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import qrcode
import segno
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

from event_pipeline.access.qr import (
    QR_ERROR_CORRECTION,
    naive_qr_png,
    qr_matrix,
    render_qr_png,
    render_qr_pngs,
    write_qr_zip,
)
from event_pipeline.access.tokens import DEFAULT_CHECKIN_BASE_URL, TOKEN_LEN, TokenCodec, checkin_url
from event_pipeline.store.tokens import new_public_id

BASE_URLS = (DEFAULT_CHECKIN_BASE_URL, "https://checkin.example.com/t/", "https://tickets.example.org/e/2026/seoul/")
# ISO/IEC 18004 table 7: version 40 at level M holds 2,331 bytes in byte mode.
MAX_BYTES_M = 2331
NON_ASCII = (
    "https://checkin.invalid/t/café-Grüße-日本-😀",
    "https://체크인.example/t/참가자",
    # Fits Shift JIS: without an explicit UTF-8 ECI the yen sign reads back as a backslash.
    "¥日本",
)
URL_SAFE = string.ascii_letters + string.digits + "-_"


@pytest.fixture(scope="module")
def codec() -> TokenCodec:
    return TokenCodec.from_secret(secrets.token_urlsafe(48))


def real_checkin_url(codec: TokenCodec, base_url: str = DEFAULT_CHECKIN_BASE_URL) -> str:
    token = codec.token_for(new_public_id())
    assert len(token) == TOKEN_LEN
    return checkin_url(base_url, token)


def decode(image: Image.Image | np.ndarray[Any, Any]) -> Any:
    result = zxingcpp.read_barcode(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    assert result is not None, "no QR code found"
    return result


def open_png(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def check_png(png: bytes, payload: str, *, scale: int = 6, border: int = 4) -> None:
    """A 1-bit PNG of the expected size that reads back as exactly ``payload`` at level M."""
    with open_png(png) as image:
        assert image.format == "PNG"
        assert image.mode == "1"
        modules = qr_matrix(payload).shape[0]
        assert image.size == ((modules + 2 * border) * scale,) * 2
        result = decode(image)
    assert result.text == payload
    assert result.ec_level == QR_ERROR_CORRECTION == "M"


def symbol_size(payload: str) -> int:
    return int(qr_matrix(payload).shape[0])


# -- round trips ---------------------------------------------------------------------------------


def test_real_checkin_urls_decode_exactly(codec: TokenCodec) -> None:
    for i in range(300):
        payload = real_checkin_url(codec, BASE_URLS[i % len(BASE_URLS)])
        check_png(render_qr_png(payload), payload)


@pytest.mark.parametrize("payload", NON_ASCII)
def test_non_ascii_payload_decodes_exactly(payload: str) -> None:
    check_png(render_qr_png(payload), payload)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=URL_SAFE + "/:.?=&%~", min_size=1, max_size=200))
def test_url_like_payloads_round_trip(payload: str) -> None:
    check_png(render_qr_png(payload), payload)


def test_a_batch_of_mixed_sizes_renders_each_code_as_alone(codec: TokenCodec) -> None:
    # Codes are written a batch at a time (one numpy pass per symbol size): sizes interleaved
    # must come back in order, each the same bytes as rendered alone, each decoding to its payload.
    payloads = [real_checkin_url(codec, BASE_URLS[i % len(BASE_URLS)]) for i in range(12)]
    payloads[3::4] = ["x" * 300, "https://e.example/t/" + "A" * 44, "한국어 체크인"]
    assert len({symbol_size(p) for p in payloads}) >= 3
    batch = render_qr_pngs(payloads)
    assert batch == [render_qr_png(p) for p in payloads]
    for png, payload in zip(batch, payloads, strict=True):
        check_png(png, payload)
    assert render_qr_pngs([]) == []


@pytest.mark.parametrize(("scale", "border"), [(1, 0), (2, 1), (4, 4), (6, 4), (11, 6)])
def test_png_pixels_are_the_scaled_matrix(scale: int, border: int, codec: TokenCodec) -> None:
    payload = real_checkin_url(codec)
    matrix = qr_matrix(payload)
    assert matrix.dtype == np.bool_
    png = render_qr_png(payload, scale=scale, border=border)
    with open_png(png) as image:
        assert image.mode == "1"
        pixels = np.asarray(image.convert("L"))
    expected_dark = np.kron(np.pad(matrix, border), np.ones((scale, scale), dtype=bool))
    np.testing.assert_array_equal(pixels == 0, expected_dark)
    if border:
        check_png(png, payload, scale=scale, border=border)


def test_matrix_alone_decodes_and_has_no_quiet_zone(codec: TokenCodec) -> None:
    payload = real_checkin_url(codec)
    matrix = qr_matrix(payload)
    # A finder pattern's dark ring touches the symbol's corner when there is no quiet zone.
    assert matrix[0, 0] and matrix[0, -1] and matrix[-1, 0]
    gray = np.where(np.kron(np.pad(matrix, 4), np.ones((4, 4), dtype=bool)), 0, 255).astype(np.uint8)
    assert decode(gray).text == payload


# -- oracles -------------------------------------------------------------------------------------


def oracle_images(payload: str) -> dict[str, Image.Image]:
    segno_png = io.BytesIO()
    # Left to itself segno writes "¥日本" as Shift JIS, which reads back with a backslash.
    ascii_only = payload.isascii()
    symbol = segno.make_qr(
        payload, error="m", boost_error=False, encoding=None if ascii_only else "utf-8", eci=not ascii_only
    )
    symbol.save(segno_png, kind="png", scale=4, border=4)
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=4, border=4)
    code.add_data(payload)
    code.make(fit=True)
    return {"segno": open_png(segno_png.getvalue()), "qrcode": code.make_image().get_image()}


@pytest.mark.parametrize("kind", ["checkin", "long", "non_ascii"])
def test_reads_back_like_segno_and_qrcode_and_is_no_larger(kind: str, codec: TokenCodec) -> None:
    rng = random.Random(kind)
    for i in range(20):
        if kind == "checkin":
            payload = real_checkin_url(codec, BASE_URLS[i % len(BASE_URLS)])
        elif kind == "long":
            payload = real_checkin_url(codec) + "?" + "".join(rng.choice(URL_SAFE) for _ in range(rng.randint(1, 400)))
        else:
            payload = NON_ASCII[i % len(NON_ASCII)] + str(i)
        ours = decode(open_png(render_qr_png(payload)))
        for name, image in oracle_images(payload).items():
            theirs = decode(image)
            assert (theirs.text, theirs.ec_level) == (ours.text, ours.ec_level) == (payload, "M"), name
            assert symbol_size(payload) <= 17 + 4 * int(theirs.extra["Version"]), name


# -- limits --------------------------------------------------------------------------------------


def test_longest_payload_fits_and_one_byte_more_is_refused() -> None:
    longest = "a" * MAX_BYTES_M
    assert symbol_size(longest) == 177  # version 40
    check_png(render_qr_png(longest, scale=2), longest, scale=2)
    with pytest.raises(ValueError, match=rf"payload of {MAX_BYTES_M + 1} UTF-8 bytes does not fit a level-M QR") as err:
        render_qr_png(longest + "a")
    assert "aaaa" not in str(err.value)


def test_longest_checkin_url_shaped_payload() -> None:
    # Fixed key and id: a long enough run of digits or capitals in a random token would move to a
    # denser mode and let one more byte fit. Lowercase padding stays in byte mode.
    codec = TokenCodec.from_secret("fixed-test-secret-for-the-capacity-test-0123")
    url = checkin_url(DEFAULT_CHECKIN_BASE_URL, codec.token_for("capacitytestpublicid00"))
    padded = url + "/" + "x" * (MAX_BYTES_M - len(url) - 1)
    assert len(padded) == MAX_BYTES_M
    assert decode(open_png(render_qr_png(padded, scale=2))).text == padded
    with pytest.raises(ValueError, match="does not fit") as err:
        qr_matrix(padded + "x")
    assert url not in str(err.value)
    assert url.rsplit("/", 1)[1] not in str(err.value)


def test_non_ascii_capacity_is_counted_in_utf8_bytes() -> None:
    with pytest.raises(ValueError, match=r"payload of 2334 UTF-8 bytes does not fit") as err:
        qr_matrix("가" * 778)  # 3 bytes each
    assert "가" not in str(err.value)


@pytest.mark.parametrize(("payload", "message"), [("", "empty"), ("a\ud800b", "lone surrogate")])
def test_payloads_that_are_not_text_are_refused(payload: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_qr_png(payload)


@pytest.mark.parametrize(("scale", "border"), [(0, 4), (6, -1)])
def test_invalid_geometry_is_refused(scale: int, border: int) -> None:
    with pytest.raises(ValueError, match="scale"):
        render_qr_png("x", scale=scale, border=border)


# -- ZIP -----------------------------------------------------------------------------------------


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert {info.compress_type for info in archive.infolist()} <= {zipfile.ZIP_STORED}
        return {info.filename: archive.read(info) for info in archive.infolist()}


def badge_items(codec: TokenCodec, count: int) -> list[tuple[str, str]]:
    items = [(f"{i}.png", real_checkin_url(codec, BASE_URLS[i % len(BASE_URLS)])) for i in range(count - 1)]
    return [*items, (f"{count - 1}.png", NON_ASCII[0])]


def test_zip_holds_every_member_decodable_and_is_private(tmp_path: Path, codec: TokenCodec) -> None:
    items = badge_items(codec, 40)
    target = tmp_path / "badges" / "codes.zip"
    assert write_qr_zip(iter(items), target) == 40
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    members = zip_members(target)
    assert list(members) == [name for name, _ in items]
    for name, payload in items:
        check_png(members[name], payload)
    assert os.listdir(target.parent) == ["codes.zip"]


def test_two_processes_write_the_same_members_as_one(tmp_path: Path, codec: TokenCodec) -> None:
    items = badge_items(codec, 600)  # more than two chunks, so both workers render
    assert write_qr_zip(items, tmp_path / "one.zip", processes=1) == 600
    assert write_qr_zip(items, tmp_path / "two.zip", processes=2) == 600
    one, two = zip_members(tmp_path / "one.zip"), zip_members(tmp_path / "two.zip")
    assert list(two) == list(one) == [name for name, _ in items]
    assert two == one
    for name, payload in random.Random(2).sample(items, 30):
        check_png(two[name], payload)
    assert stat.S_IMODE((tmp_path / "two.zip").stat().st_mode) == 0o600


class SourceFailed(RuntimeError):
    pass


def failing_items(items: list[tuple[str, str]], after: int) -> Iterator[tuple[str, str]]:
    yield from items[:after]
    raise SourceFailed("the participant query broke")


@pytest.mark.parametrize("processes", [1, 2])
def test_interrupted_write_leaves_no_target(processes: int, tmp_path: Path, codec: TokenCodec) -> None:
    items = badge_items(codec, 400)
    target = tmp_path / "codes.zip"
    with pytest.raises(SourceFailed):
        write_qr_zip(failing_items(items, 300), target, processes=processes)
    assert not target.exists()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("processes", [1, 2])
def test_payload_too_long_keeps_the_previous_zip(processes: int, tmp_path: Path, codec: TokenCodec) -> None:
    target = tmp_path / "codes.zip"
    assert write_qr_zip(badge_items(codec, 3), target) == 3
    before = target.read_bytes()
    items = [*badge_items(codec, 300), ("long.png", "a" * (MAX_BYTES_M + 1))]
    with pytest.raises(ValueError, match="does not fit"):
        write_qr_zip(items, target, processes=processes)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["codes.zip"]


def test_repeated_member_name_is_refused(tmp_path: Path, codec: TokenCodec) -> None:
    items = [("7.png", real_checkin_url(codec)), ("8.png", real_checkin_url(codec)), ("7.png", real_checkin_url(codec))]
    with pytest.raises(ValueError, match="member 3 repeats"):
        write_qr_zip(items, tmp_path / "codes.zip")
    assert os.listdir(tmp_path) == []


def test_empty_items_give_an_empty_zip(tmp_path: Path) -> None:
    assert write_qr_zip([], tmp_path / "codes.zip", processes=2) == 0
    assert zip_members(tmp_path / "codes.zip") == {}


# -- baseline ------------------------------------------------------------------------------------


def test_naive_baseline_is_a_decodable_level_m_png(codec: TokenCodec) -> None:
    payload = real_checkin_url(codec)
    with open_png(naive_qr_png(payload)) as image:
        assert image.format == "PNG"
        result = decode(image)
    assert result.text == payload
    assert result.ec_level == "M"


def test_every_code_uses_the_one_fixed_mask() -> None:
    """The mask is fixed (see access/qr.py for the measurement behind it), not chosen per code."""
    import zxingcpp

    from event_pipeline.access.qr import QR_MASK

    for payload in ("https://checkin.invalid/t/" + "A1b2" * 11, "https://tickets.example.com/c/xyz"):
        ours = qr_matrix(payload)
        by_mask = {
            mask: np.asarray(
                zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode, ec_level="M", data_mask=mask).to_image(
                    scale=1, add_quiet_zones=False
                )
            )
            == 0
            for mask in range(8)
        }
        assert [m for m, matrix in by_mask.items() if np.array_equal(matrix, ours)] == [QR_MASK]
