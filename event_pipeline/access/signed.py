"""Offline-verifiable access tokens: an Ed25519-signed compact payload, base64url.

A check-in device holding only the public key can tell a genuine ticket for its event from a
forged one without reaching the server. What it cannot know offline is anything that changed
after issue: revocation and "already checked in" need the server's list (or a synced copy of the
revoked public ids), exactly like the HMAC form.

Layout (93 bytes, 124 base64url characters, no padding)::

    version (1) | event tag (8) | public id (16) | issued-at, Unix seconds, big-endian (4) | signature (64)

The signature covers a domain string plus the first 29 bytes. The event tag is an unkeyed BLAKE2b
of the event slug, so a device is configured with the slug it guards, and the tag stays the same
across database restores (an integer row id would not). Ed25519 signatures are deterministic, so
the server recomputes a participant's signed token from the stored public id and issued-at whenever
it needs it: like the HMAC half, the signature itself is never stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from event_pipeline.access.tokens import PUBLIC_ID_BYTES, PUBLIC_ID_LEN

SIGNING_KEY_ENV: Final = "EVENT_PIPELINE_SIGNING_KEY"
VERSION: Final = 1
EVENT_TAG_BYTES: Final = 8
SIGNATURE_BYTES: Final = 64
_BODY: Final = struct.Struct(f">B{EVENT_TAG_BYTES}s{PUBLIC_ID_BYTES}sI")
SIGNED_TOKEN_BYTES: Final = _BODY.size + SIGNATURE_BYTES
SIGNED_TOKEN_LEN: Final = 124  # 93 bytes is a multiple of 3: base64 without padding
_DOMAIN: Final = b"event-pipeline/signed-token/v1:"
_EVENT_TAG_PERSON: Final = b"ep-event-tag"

assert SIGNED_TOKEN_BYTES * 4 // 3 == SIGNED_TOKEN_LEN


class SigningKeyError(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (keys get pasted from many tools)."""
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def event_tag(event_slug: str) -> bytes:
    return hashlib.blake2b(event_slug.encode("utf-8"), digest_size=EVENT_TAG_BYTES, person=_EVENT_TAG_PERSON).digest()


def _public_id_bytes(public_id: str) -> bytes:
    if len(public_id) != PUBLIC_ID_LEN:
        raise ValueError("not a public id")
    raw = base64.urlsafe_b64decode(public_id + "==")
    # Only the canonical spelling: two strings for one id would let one signature cover both.
    if len(raw) != PUBLIC_ID_BYTES or _b64(raw) != public_id:
        raise ValueError("not a canonical public id")
    return raw


@dataclass(frozen=True)
class SignedClaims:
    event_tag: bytes
    public_id: str
    issued_at: datetime

    def is_for_event(self, event_slug: str) -> bool:
        return hmac.compare_digest(self.event_tag, event_tag(event_slug))


def is_signed_form(text: str) -> bool:
    """Cheap shape test (length), to route a scan to the right verifier before any crypto."""
    return len(text) == SIGNED_TOKEN_LEN


class TokenVerifier:
    """Checks signed tokens with the public key alone: what a check-in device holds."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    @classmethod
    def from_text(cls, text: str) -> TokenVerifier:
        """A PEM public key, or base64 of the raw 32-byte key (or of its DER SubjectPublicKeyInfo)."""
        stripped = text.strip()
        try:
            if stripped.startswith("-----BEGIN"):
                key = serialization.load_pem_public_key(stripped.encode("ascii"))
            else:
                raw = _unb64(stripped)
                key = (
                    Ed25519PublicKey.from_public_bytes(raw)
                    if len(raw) == 32
                    else serialization.load_der_public_key(raw)
                )
        except (ValueError, binascii.Error, TypeError) as exc:
            raise SigningKeyError(f"not an Ed25519 public key (PEM or base64): {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("the public key is not an Ed25519 key")
        return cls(key)

    def public_key_pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def public_key_b64(self) -> str:
        raw = self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")

    def claims_of(self, token: str) -> SignedClaims | None:
        """The claims if ``token`` is a well-formed signed token under this key, else None."""
        if not is_signed_form(token) or not token.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(token)
        except (binascii.Error, ValueError):
            return None
        # Canonical spelling only, so one signature maps to exactly one accepted string.
        if len(raw) != SIGNED_TOKEN_BYTES or _b64(raw) != token:
            return None
        body, signature = raw[: _BODY.size], raw[_BODY.size :]
        version, tag, public_id_raw, issued = _BODY.unpack(body)
        if version != VERSION:
            return None
        try:
            self._key.verify(signature, _DOMAIN + body)
        except InvalidSignature:
            return None
        return SignedClaims(event_tag=tag, public_id=_b64(public_id_raw), issued_at=datetime.fromtimestamp(issued, UTC))

    def __repr__(self) -> str:
        return f"TokenVerifier({self.public_key_b64()})"


class TokenSigner:
    """Holds the Ed25519 private key (from the environment) and makes signed tokens."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = TokenVerifier(private_key.public_key())

    @classmethod
    def generate(cls) -> TokenSigner:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_text(cls, text: str) -> TokenSigner:
        """Base64 of the raw 32-byte private key (what ``gen-signing-key`` prints), of a PKCS#8 DER
        key, or a PKCS#8 PEM."""
        stripped = text.strip()
        try:
            if stripped.startswith("-----BEGIN"):
                key = serialization.load_pem_private_key(stripped.encode("ascii"), password=None)
            else:
                raw = _unb64(stripped)
                key = (
                    Ed25519PrivateKey.from_private_bytes(raw)
                    if len(raw) == 32
                    else serialization.load_der_private_key(raw, password=None)
                )
        except (ValueError, binascii.Error, TypeError):
            # The exception text could quote key material; say what is wrong without it.
            raise SigningKeyError(
                f"{SIGNING_KEY_ENV} is not a base64 Ed25519 private key "
                "(create one with `event-pipeline gen-signing-key`)"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{SIGNING_KEY_ENV} is not an Ed25519 key")
        return cls(key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TokenSigner | None:
        """The signer configured in the environment, or None when no signing key is set."""
        value = (os.environ if environ is None else environ).get(SIGNING_KEY_ENV, "").strip()
        return cls.from_text(value) if value else None

    def private_key_b64(self) -> str:
        raw = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return base64.b64encode(raw).decode("ascii")

    def sign(self, *, event_slug: str, public_id: str, issued_at: datetime) -> str:
        seconds = int(issued_at.timestamp())
        if not 0 <= seconds < 2**32:
            raise ValueError("issued_at must fall between 1970 and 2106")
        body = _BODY.pack(VERSION, event_tag(event_slug), _public_id_bytes(public_id), seconds)
        return _b64(body + self._key.sign(_DOMAIN + body))

    def __repr__(self) -> str:
        return f"TokenSigner(public={self.verifier.public_key_b64()})"
