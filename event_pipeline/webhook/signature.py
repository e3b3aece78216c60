"""Is a webhook request really from SendGrid? Its ECDSA signature over timestamp + body, checked
with the ``sendgrid`` package's ``EventWebhook``, and a timestamp close to now."""

from __future__ import annotations

import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader

SIGNATURE_HEADER = EventWebhookHeader.SIGNATURE
TIMESTAMP_HEADER = EventWebhookHeader.TIMESTAMP
# A captured request replayed later is refused: SendGrid signs each delivery attempt anew.
MAX_SKEW_S = 5 * 60


class BadPublicKey(ValueError):
    """The configured key is not a base64 DER (SubjectPublicKeyInfo) EC public key."""


@dataclass(frozen=True)
class Verifier:
    webhook: EventWebhook

    @classmethod
    def from_public_key(cls, public_key: str) -> Verifier:
        try:
            webhook = EventWebhook(public_key.strip())
        except (ValueError, TypeError):
            webhook = None
        if webhook is None or not isinstance(webhook.public_key, ec.EllipticCurvePublicKey):
            raise BadPublicKey(
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not an EC verification key as SendGrid shows it (base64 DER)"
            )
        return cls(webhook)

    def refusal(self, body: bytes, signature: str | None, timestamp: str | None, *, now: float) -> str | None:
        """Why the request is not accepted as SendGrid's (None: it is). Reasons name no content."""
        if not signature or not timestamp:
            return "signature or timestamp header missing"
        if not timestamp.isascii() or not timestamp.strip().isdigit():
            return "timestamp is not unix seconds"
        if abs(now - int(timestamp)) > MAX_SKEW_S:
            return "timestamp more than 5 minutes from now"
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            return "body is not UTF-8, so it cannot carry a valid signature"
        try:
            valid = self.webhook.verify_signature(payload, signature, timestamp)
        except (binascii.Error, ValueError, InvalidSignature):
            valid = False
        return None if valid else "signature does not match"
