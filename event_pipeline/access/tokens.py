"""Access tokens: a random public id plus an HMAC of it under a server key.

Only the public id is stored. The secret half is recomputed from the key whenever a QR code or
email needs the token, so a database leak alone hands out no working token, and no step has to
pass raw tokens to the next through Dagster's storage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets  # noqa: F401 - not used here since new_public_id moved; tests patch tokens.secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# The public id is a row id, made by the store; re-exported for the token code and its callers.
from event_pipeline.store.tokens import PUBLIC_ID_BYTES as PUBLIC_ID_BYTES
from event_pipeline.store.tokens import new_public_id as new_public_id

MAC_BYTES = 16
PUBLIC_ID_LEN = 22  # base64url of 16 bytes, unpadded
TOKEN_LEN = 44
MIN_KEY_LEN = 32
TOKEN_KEY_ENV = "EVENT_PIPELINE_TOKEN_KEY"  # noqa: S105 - the variable name, not a secret
DEFAULT_CHECKIN_BASE_URL = "https://checkin.invalid/t/"
CHECKIN_BASE_URL_ENV = "CHECKIN_BASE_URL"
_DOMAIN = b"event-pipeline/access-token/v1:"


class TokenKeyError(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class TokenCodec:
    # Out of repr: a codec that ends up in a log line or a traceback must not carry the key along.
    key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str) -> TokenCodec:
        if len(secret) < MIN_KEY_LEN:
            raise TokenKeyError(
                f"token signing key must be at least {MIN_KEY_LEN} characters "
                f"(set {TOKEN_KEY_ENV}; `event-pipeline init` writes one for local use)"
            )
        # Hashing lets any high-entropy string serve as a key without a fixed encoding.
        return cls(hashlib.sha256(secret.encode("utf-8")).digest())

    def _mac(self, public_id: str) -> str:
        digest = hmac.new(self.key, _DOMAIN + public_id.encode("ascii"), hashlib.sha256).digest()
        return _b64(digest[:MAC_BYTES])

    def token_for(self, public_id: str) -> str:
        return public_id + self._mac(public_id)

    def public_id_of(self, token: str) -> str | None:
        """The public id if ``token`` is authentic under this key, else None (constant-time MAC check)."""
        if len(token) != TOKEN_LEN or not token.isascii():
            return None
        public_id, mac = token[:PUBLIC_ID_LEN], token[PUBLIC_ID_LEN:]
        if not hmac.compare_digest(self._mac(public_id), mac):
            return None
        return public_id


def checkin_base_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get(CHECKIN_BASE_URL_ENV) or DEFAULT_CHECKIN_BASE_URL


def checkin_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/{token}"


def token_from_scan(scanned: str) -> str:
    """Accept a bare token or a check-in URL (what a scanner reads from the QR)."""
    text = scanned.strip()
    if "://" in text:
        path = urlsplit(text).path
        text = path.rstrip("/").rsplit("/", 1)[-1]
    return text
