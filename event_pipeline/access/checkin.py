"""What a scan at the door means: verify (read-only), check in (recorded), reissue.

Outcomes follow pretix's check-in reasons: a scan is ``valid`` or says exactly why not. Checks run
in a fixed order, most specific to the door staff first: a forged or unknown code says nothing
about any participant; a genuine code for another event says so before anything else about it.

Tokens arrive as the scanned text (bare token or check-in URL) and go no further than this
module: verdicts, scan rows and CLI output carry participant ids and public ids only.
"""

from __future__ import annotations

import os
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy.engine import Engine

from event_pipeline.access.qr import render_qr_png
from event_pipeline.access.signed import SignedClaims, TokenSigner, TokenVerifier, is_signed_form
from event_pipeline.access.tokens import TOKEN_KEY_ENV, TOKEN_LEN, TokenCodec, checkin_url, token_from_scan
from event_pipeline.files import write_private
from event_pipeline.store import tokens as tokens_store
from event_pipeline.store.events import get_event
from event_pipeline.store.tokens import LIVE, TokenRecord

# A lost race re-reads and re-judges; more than a few rounds would mean something else is wrong.
_MAX_CHECKIN_ROUNDS = 3


class ScanResult(StrEnum):
    VALID = "valid"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    WRONG_EVENT = "wrong_event"
    ALREADY_CHECKED_IN = "already_checked_in"
    PARTICIPANT_INACTIVE = "participant_inactive"


MESSAGES: Mapping[ScanResult, str] = {
    ScanResult.VALID: "valid ticket",
    ScanResult.UNKNOWN: "not a ticket issued here (unknown or forged code)",
    ScanResult.REVOKED: "this code was replaced by a newer one; ask for the current ticket",
    ScanResult.WRONG_EVENT: "ticket for a different event",
    ScanResult.ALREADY_CHECKED_IN: "already checked in",
    ScanResult.PARTICIPANT_INACTIVE: "registration is not active",
}


class UnknownEventError(LookupError):
    pass


@dataclass(frozen=True)
class Verdict:
    result: ScanResult
    participant_id: int | None = None
    event: str | None = None  # slug of the event the token belongs to, when the token is genuine
    checked_in_at: datetime | None = None
    offline: bool = False

    @property
    def ok(self) -> bool:
        return self.result is ScanResult.VALID

    @property
    def message(self) -> str:
        text = MESSAGES[self.result]
        if self.offline and self.ok:
            text += " (signature only: revocation and earlier check-ins not checked offline)"
        return text

    def as_json(self) -> dict[str, object]:
        """What a scan may reveal: never the token, no email or phone."""
        return {
            "result": self.result.value,
            "participant_id": self.participant_id,
            "event": self.event,
            "checked_in_at": self.checked_in_at.isoformat() if self.checked_in_at else None,
            "offline": self.offline,
            "message": self.message,
        }


@dataclass(frozen=True)
class ScanKeys:
    """What the server needs to authenticate a scan: the HMAC key, and the Ed25519 public key if
    signed tokens are in use."""

    codec: TokenCodec
    verifier: TokenVerifier | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScanKeys:
        env = os.environ if environ is None else environ
        signer = TokenSigner.from_env(env)
        return cls(
            codec=TokenCodec.from_secret(env.get(TOKEN_KEY_ENV, "")),
            verifier=signer.verifier if signer is not None else None,
        )


@dataclass(frozen=True)
class _Authentic:
    public_id: str
    claims: SignedClaims | None  # set for the signed form


def authenticate(scanned: str, keys: ScanKeys) -> _Authentic | None:
    """The public id behind a scan if the code is genuine (MAC or signature checked), else None."""
    text = token_from_scan(scanned)
    if len(text) == TOKEN_LEN:
        public_id = keys.codec.public_id_of(text)  # constant-time MAC comparison
        return _Authentic(public_id, None) if public_id is not None else None
    if keys.verifier is not None and is_signed_form(text):
        claims = keys.verifier.claims_of(text)
        return _Authentic(claims.public_id, claims) if claims is not None else None
    return None


def _judge(record: TokenRecord | None, auth: _Authentic | None, station: str | None) -> Verdict:
    if record is None or auth is None:
        return Verdict(ScanResult.UNKNOWN)
    if auth.claims is not None and not auth.claims.is_for_event(record.event_slug):
        # Validly signed, yet not what we issued for this public id: treat as not ours.
        return Verdict(ScanResult.UNKNOWN)
    seen = Verdict(ScanResult.VALID, participant_id=record.participant_id, event=record.event_slug)
    if station is not None and record.event_slug != station:
        return replace(seen, result=ScanResult.WRONG_EVENT)
    if record.status != LIVE:
        return replace(seen, result=ScanResult.REVOKED)
    if record.participant_status != "active":
        return replace(seen, result=ScanResult.PARTICIPANT_INACTIVE)
    if record.checked_in_at is not None:
        return replace(seen, result=ScanResult.ALREADY_CHECKED_IN, checked_in_at=record.checked_in_at)
    return seen


def verify_scan(engine: Engine, scanned: str, keys: ScanKeys, *, event_slug: str | None = None) -> Verdict:
    """What a check-in of ``scanned`` would say right now. Reads only; records nothing."""
    auth = authenticate(scanned, keys)
    with engine.connect() as conn:
        if event_slug is not None and get_event(conn, event_slug) is None:
            raise UnknownEventError(f"no event {event_slug!r}")
        record = tokens_store.token_by_public_id(conn, auth.public_id) if auth is not None else None
    return _judge(record, auth, event_slug)


def check_in(engine: Engine, scanned: str, keys: ScanKeys, *, event_slug: str) -> Verdict:
    """Check ``scanned`` in at ``event_slug``'s door. Every attempt is recorded with its outcome.

    Only the conditional UPDATE decides who gets in (see ``mark_checked_in``), so two devices
    scanning the same code at the same moment get one ``valid`` and one ``already_checked_in``.
    """
    auth = authenticate(scanned, keys)  # crypto before the transaction keeps the write lock short
    now = datetime.now(UTC)
    with engine.begin() as conn:
        station = get_event(conn, event_slug)
        if station is None:
            raise UnknownEventError(f"no event {event_slug!r}")
        record = tokens_store.token_by_public_id(conn, auth.public_id) if auth is not None else None
        verdict = _judge(record, auth, event_slug)
        for _ in range(_MAX_CHECKIN_ROUNDS):
            if not verdict.ok or record is None:
                break
            if tokens_store.mark_checked_in(conn, record.id, now):
                verdict = replace(verdict, checked_in_at=now)
                break
            # Someone else changed the row first (checked in, revoked, deactivated): say what.
            record = tokens_store.token_by_id(conn, record.id)
            verdict = _judge(record, auth, event_slug)
        else:
            if verdict.ok:  # the row kept changing under us; admitting twice is the worse error
                verdict = replace(verdict, result=ScanResult.ALREADY_CHECKED_IN)
        tokens_store.record_scan(
            conn,
            result=verdict.result.value,
            event_id=station.id,
            public_id=record.public_id if record is not None else None,
            participant_id=record.participant_id if record is not None else None,
            at=now,
        )
    return verdict


def verify_offline(
    scanned: str,
    verifier: TokenVerifier,
    *,
    event_slug: str | None = None,
    revoked_public_ids: Container[str] = frozenset(),
) -> Verdict:
    """A check-in device's view with only the public key (and, if synced, the revoked public ids).

    "Already checked in" and revocations after the last sync are invisible offline; devices should
    sync and confirm with the server when they can.
    """
    claims = verifier.claims_of(token_from_scan(scanned))
    if claims is None:
        return Verdict(ScanResult.UNKNOWN, offline=True)
    if event_slug is not None and not claims.is_for_event(event_slug):
        return Verdict(ScanResult.WRONG_EVENT, offline=True)
    if claims.public_id in revoked_public_ids:
        return Verdict(ScanResult.REVOKED, event=event_slug, offline=True)
    return Verdict(ScanResult.VALID, event=event_slug, offline=True)


def signed_token_for(signer: TokenSigner, record: TokenRecord) -> str:
    """The signed form of a stored token (deterministic: same record, same string)."""
    return signer.sign(event_slug=record.event_slug, public_id=record.public_id, issued_at=record.issued_at)


@dataclass(frozen=True)
class ReissueOutcome:
    participant_id: int
    event: str
    revoked_previous: bool
    qr_path: Path | None
    # Working credentials: for the person who asked, never for a log line (hence repr=False).
    checkin_url: str = field(repr=False)
    signed_token: str | None = field(default=None, repr=False)


def reissue(
    engine: Engine,
    codec: TokenCodec,
    participant_id: int,
    *,
    base_url: str,
    signer: TokenSigner | None = None,
    qr_out: Path | None = None,
) -> ReissueOutcome:
    """Revoke the participant's live token and issue a new one. Mail renders its QR when it is
    sent; ``qr_out`` also writes the PNG there (0600) for the operator who asked for it."""
    result = tokens_store.reissue_token(engine, participant_id)
    new = result.token
    url = checkin_url(base_url, codec.token_for(new.public_id))
    if qr_out is not None:
        write_private(qr_out, render_qr_png(url))
    if result.old_qr_path:
        # A PNG from before codes were rendered at send time: it encodes the revoked code.
        Path(result.old_qr_path).unlink(missing_ok=True)
    return ReissueOutcome(
        participant_id=participant_id,
        event=new.event_slug,
        revoked_previous=result.revoked is not None,
        qr_path=qr_out,
        checkin_url=url,
        signed_token=signed_token_for(signer, new) if signer is not None else None,
    )
