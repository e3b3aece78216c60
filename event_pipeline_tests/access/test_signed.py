"""The offline form: Ed25519-signed compact tokens a device checks with the public key alone."""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from event_pipeline.access.checkin import ScanResult, verify_offline
from event_pipeline.access.qr import render_qr_png
from event_pipeline.access.signed import (
    SIGNED_TOKEN_LEN,
    SIGNING_KEY_ENV,
    SigningKeyError,
    TokenSigner,
    TokenVerifier,
    event_tag,
)
from event_pipeline.access.tokens import TokenCodec, checkin_url, new_public_id
from event_pipeline_tests.access._support import decode_qr

ISSUED = datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner.generate()


def _device(signer: TokenSigner) -> TokenVerifier:
    """What a check-in device gets: the exported PEM text and nothing else."""
    return TokenVerifier.from_text(signer.verifier.public_key_pem())


def test_signed_token_is_compact_url_safe_and_deterministic(signer: TokenSigner) -> None:
    public_id = new_public_id()
    token = signer.sign(event_slug="devcon-2026", public_id=public_id, issued_at=ISSUED)
    assert len(token) == SIGNED_TOKEN_LEN and re.fullmatch(r"[A-Za-z0-9_-]+", token)
    # Deterministic, so it is recomputed from the stored public id instead of being stored.
    assert signer.sign(event_slug="devcon-2026", public_id=public_id, issued_at=ISSUED) == token


def test_device_verifies_with_the_public_key_alone(signer: TokenSigner) -> None:
    public_id = new_public_id()
    token = signer.sign(event_slug="devcon-2026", public_id=public_id, issued_at=ISSUED)
    for exported in (signer.verifier.public_key_pem(), signer.verifier.public_key_b64()):
        claims = TokenVerifier.from_text(exported).claims_of(token)
        assert claims is not None
        assert claims.public_id == public_id
        assert claims.event_tag == event_tag("devcon-2026") and claims.is_for_event("devcon-2026")
        assert claims.issued_at == ISSUED.replace(microsecond=0)


def test_offline_outcomes(signer: TokenSigner) -> None:
    device = _device(signer)
    public_id = new_public_id()
    token = signer.sign(event_slug="devcon-2026", public_id=public_id, issued_at=ISSUED)
    url = checkin_url("https://checkin.example.com/t/", token)

    valid = verify_offline(url, device, event_slug="devcon-2026")
    assert valid.result is ScanResult.VALID and valid.offline
    assert "not checked offline" in valid.message  # the device says what it cannot know
    assert verify_offline(token, device, event_slug="other-2026").result is ScanResult.WRONG_EVENT
    revoked = verify_offline(token, device, event_slug="devcon-2026", revoked_public_ids={public_id})
    assert revoked.result is ScanResult.REVOKED

    stranger = TokenSigner.generate().sign(event_slug="devcon-2026", public_id=public_id, issued_at=ISSUED)
    assert verify_offline(stranger, device).result is ScanResult.UNKNOWN
    hmac_form = TokenCodec.from_secret(secrets.token_urlsafe(48)).token_for(public_id)
    assert verify_offline(hmac_form, device).result is ScanResult.UNKNOWN
    assert verify_offline("garbage", device).result is ScanResult.UNKNOWN


def test_any_changed_character_breaks_the_signature(signer: TokenSigner) -> None:
    device = _device(signer)
    token = signer.sign(event_slug="devcon-2026", public_id=new_public_id(), issued_at=ISSUED)
    for i in range(len(token)):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert device.claims_of(flipped) is None, i
    assert device.claims_of(token[:-1]) is None
    assert device.claims_of(token + "A") is None
    assert device.claims_of(token[:-1] + "=") is None
    assert device.claims_of(token[:-2] + "é") is None


def test_signing_key_from_environment(signer: TokenSigner) -> None:
    b64 = signer.private_key_b64()
    assert TokenSigner.from_env({}) is None
    loaded = TokenSigner.from_env({SIGNING_KEY_ENV: b64})
    assert loaded is not None and loaded.verifier.public_key_b64() == signer.verifier.public_key_b64()
    urlsafe = base64.urlsafe_b64encode(base64.b64decode(b64)).decode().rstrip("=")
    assert TokenSigner.from_text(urlsafe).private_key_b64() == b64

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert (
        TokenSigner.from_text(pem).private_key_b64()
        == TokenSigner.from_text(base64.b64encode(der).decode()).private_key_b64()
    )


def test_bad_signing_keys_are_refused_without_echoing_them() -> None:
    for bad in ("not-base64-at-all!!", base64.b64encode(b"x" * 31).decode(), "QUJD"):
        with pytest.raises(SigningKeyError) as info:
            TokenSigner.from_env({SIGNING_KEY_ENV: bad})
        assert bad not in str(info.value)
        assert "gen-signing-key" in str(info.value)


def test_private_key_never_in_repr(signer: TokenSigner) -> None:
    assert signer.private_key_b64() not in repr(signer)
    assert signer.verifier.public_key_b64() in repr(signer)


def test_issued_at_out_of_range_is_refused(signer: TokenSigner) -> None:
    with pytest.raises(ValueError, match="2106"):
        signer.sign(
            event_slug="e",
            public_id=new_public_id(),
            issued_at=datetime(1969, 1, 1, tzinfo=UTC) - timedelta(1),
        )


def test_signed_check_in_url_survives_a_qr_round_trip(signer: TokenSigner, tmp_path: Path) -> None:
    token = signer.sign(event_slug="devcon-2026", public_id=new_public_id(), issued_at=ISSUED)
    url = checkin_url("https://checkin.example.com/t/", token)
    png = tmp_path / "signed.png"
    png.write_bytes(render_qr_png(url))
    assert decode_qr(png) == url
    assert verify_offline(decode_qr(png), _device(signer), event_slug="devcon-2026").ok
