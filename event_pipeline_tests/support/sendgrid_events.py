"""SendGrid's Event Webhook as the sender side, for tests: events signed like SendGrid signs them
(ECDSA P-256 over timestamp + body, SHA-256, base64 DER signature, key shown as base64 DER) and
POSTed in batches from a thread of their own, as ``FakeSendGrid(events_url=...)`` does::

    poster = EventPoster(url).start()
    poster.enqueue([{"event": "processed", ...}])
    poster.wait_idle()
    status, answer = poster.post([...], timestamp=stale)      # one request, answered at once
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def new_signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid's settings page shows it (base64 DER, no PEM armour)."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def event_for(
    kind: str, message_id: str, mail: dict[str, Any], *, index: int = 0, **fields: Any
) -> list[dict[str, Any]]:
    """One event per recipient of an accepted mail/send body, as SendGrid reports them: the
    message's custom_args (body level, then the personalization's) as top-level keys."""
    events: list[dict[str, Any]] = []
    for p in mail.get("personalizations") or []:
        args = {**(mail.get("custom_args") or {}), **(p.get("custom_args") or {})}
        for to in p.get("to") or []:
            events.append(
                {
                    **args,
                    "email": to.get("email"),
                    "timestamp": int(time.time()),
                    "event": kind,
                    "sg_event_id": secrets.token_urlsafe(16),
                    "sg_message_id": f"{message_id}.recvd-{index}-{len(events)}",
                    **fields,
                }
            )
    return events


class EventPoster:
    """Posts queued events to ``url`` in batches (up to ``batch_max``, after ``linger_s``),
    retrying a batch the receiver did not answer 2xx, like SendGrid (here: a few times, quickly)."""

    def __init__(
        self,
        url: str,
        key: ec.EllipticCurvePrivateKey | None = None,
        *,
        batch_max: int = 100,
        linger_s: float = 0.05,
        retries: int = 50,
    ) -> None:
        self.url, self.key = url, key or new_signing_key()
        self.batch_max, self.linger_s, self.retries = batch_max, linger_s, retries
        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._held = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.statuses: Counter[int] = Counter()  # answers to batches posted by the thread
        self.events_posted = 0  # events in batches answered 2xx

    @property
    def public_key(self) -> str:
        return public_key_b64(self.key)

    def start(self) -> EventPoster:
        self._thread = threading.Thread(target=self._run, name="fake-sendgrid-events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def enqueue(self, events: list[dict[str, Any]]) -> None:
        with self._cond:
            self._queue.extend(events)
            self._cond.notify_all()

    def hold(self) -> None:
        """Queue events without posting them until ``release()`` (events late after a crash)."""
        with self._cond:
            self._held = True

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until every queued event has been posted and answered; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._queue and not self._busy, timeout_s):
                raise TimeoutError(f"{len(self._queue)} event(s) still queued")

    def post(
        self,
        events: Any,
        *,
        body: bytes | None = None,
        timestamp: int | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        signed_body: bytes | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request now: ``events`` as JSON (or ``body`` as given), signed with ``key`` (default
        this poster's) over ``signed_body`` (default the body sent: a different one is a tampered
        request) at ``timestamp`` (default now). Returns (status, decoded JSON answer or None)."""
        data = body if body is not None else json.dumps(events).encode()
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        sig = signature if signature is not None else sign(key or self.key, signed_body or data, stamp)
        sent_headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sig, TIMESTAMP_HEADER: stamp}
        request = urllib.request.Request(
            self.url, data=data, method="POST", headers={**sent_headers, **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self._queue and not self._held))
                if self._stopping:
                    return
                self._busy = True
            time.sleep(self.linger_s)  # let a burst of accepted messages share one batch
            with self._cond:
                batch = [self._queue.popleft() for _ in range(min(self.batch_max, len(self._queue)))]
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        for attempt in range(self.retries):
            try:
                status, _ = self.post(batch)
            except OSError:  # receiver not up (yet), or gone: try again, as SendGrid would
                status = 0
            with self._cond:
                self.statuses[status] += 1
                if 200 <= status < 300:
                    self.events_posted += len(batch)
                    return
                if self._stopping:
                    return
            time.sleep(min(0.05 * (attempt + 1), 0.5))
