"""Senders: SendGrid (payload by the official package, pooled HTTPS); the outbox is ``mail.outbox``.

Senders only classify failures; when to try again is decided by ``mail.policy`` and the
dispatcher. Error texts end up in ``email_deliveries.last_error`` and in logs, so they never
carry a recipient address (SendGrid's own messages sometimes quote one: it is redacted).
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sendgrid
import urllib3
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import ApiKeyIncludedException
from urllib3.exceptions import SSLError
from urllib3.util import parse_url

from event_pipeline.identity import EMAIL_IN_TEXT
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.sendgrid_body import helper_payload, mail_send_body

DEFAULT_TIMEOUT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
SENDGRID_API = "https://api.sendgrid.com"


@dataclass(frozen=True)
class SendResult:
    message_id: str


class SendError(Exception):
    """Base for classified send failures. ``str(e)`` must not contain recipient addresses."""


class PermanentSendError(SendError):
    """Retrying this message cannot help (bad request, rejected address, payload too large)."""


class SenderUnavailableError(PermanentSendError):
    """The provider refuses *us*, not this message (bad API key, unverified sender, no credits).

    Every other message would fail the same way, so the dispatcher stops and puts its claims
    back instead of marking thousands of deliveries failed because of one configuration error.
    """


class TransientSendError(SendError):
    """5xx, timeouts and dropped connections: the same request may well succeed later."""

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class RateLimitedError(TransientSendError):
    """HTTP 429: nothing was sent; ``retry_at`` is the provider's X-RateLimit-Reset, if given."""


class Sender(Protocol):
    name: str
    # True when sending the same message twice has no visible effect (the outbox replaces the
    # file): the dispatcher may then batch its bookkeeping widely, as a crash costs nothing.
    idempotent: bool

    def send(self, message: OutgoingMessage) -> SendResult: ...


def redact(text: str) -> str:
    return EMAIL_IN_TEXT.sub("<address>", text)


def sendgrid_client(
    api_key: str, *, host: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> SendGridAPIClient:
    """A ``SendGridAPIClient`` that is safe to share between threads and never waits forever."""
    kwargs = {"host": host.rstrip("/").removesuffix("/v3")} if host else {}
    client = SendGridAPIClient(api_key=api_key, **kwargs)
    # python_http_client has no default timeout; the value is copied into every child client
    # built by attribute access (client.client.mail.send...), so setting it here covers all calls.
    client.client.timeout = timeout_s
    # Every child client shares this headers dict, and the first POST does setdefault() on it
    # while other threads may be copying it into urllib Requests ("dictionary changed size
    # during iteration"). Setting the key up front means nobody mutates the dict afterwards.
    client.client.request_headers["Content-Type"] = "application/json"
    return client


class SendGridSender:
    """``POST /v3/mail/send`` over a pooled keep-alive HTTPS connection.

    The payload is built with the official ``sendgrid`` helpers (``Mail``, ``Attachment``...),
    but it is sent with urllib3 instead of the package's python_http_client: that client opens
    a new connection (and, against the real endpoint, a new TLS handshake) for every request,
    which capped us at ~114 messages/s over TLS with 50 ms latency. The pool keeps one
    connection per worker thread alive (``pool_size`` should match the dispatcher's workers).

    No retries here (the dispatcher decides), explicit connect and read timeouts, and the
    system trust store (``SSL_CERT_FILE`` is honoured, as by Python's default SSL context).
    """

    name = "sendgrid"
    idempotent = False

    def __init__(
        self,
        api_key: str,
        *,
        host: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        pool_size: int = 16,
    ) -> None:
        base = (host or SENDGRID_API).rstrip("/").removesuffix("/v3")
        self.url = f"{base}/v3/mail/send"
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": f"event-pipeline (sendgrid-python/{sendgrid.__version__})",
        }
        # One host only: its connection pool directly, not a PoolManager, which parses the URL
        # and looks the pool up again on every request.
        self._path = parse_url(self.url).request_uri
        self._pool = urllib3.connection_from_url(
            self.url,
            maxsize=max(1, pool_size),
            block=True,  # more threads than connections wait for one instead of opening extras
            retries=False,
            timeout=urllib3.Timeout(connect=min(connect_timeout_s, timeout_s), read=timeout_s),
        )

    @staticmethod
    def payload(message: OutgoingMessage) -> dict[str, object]:
        """The request body as the ``sendgrid`` helpers build it; ``send`` posts the same bytes."""
        return helper_payload(message)

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            body = mail_send_body(message)
        except ApiKeyIncludedException:
            # The helper refuses bodies that start with something shaped like an API key.
            raise PermanentSendError("message body looks like it contains a SendGrid API key") from None
        try:
            response = self._pool.urlopen(
                "POST",
                self._path,
                body=body,
                headers=self._headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=True,
            )
        except SSLError as exc:
            if isinstance(_innermost(exc), ssl.SSLEOFError | ssl.SSLZeroReturnError):
                # The peer closed mid-handshake or mid-record: a dropped connection, not a
                # certificate problem, so it must not pause mail for everyone.
                raise TransientSendError(f"network error: {_root_cause(exc)}") from None
            # A certificate we cannot verify will not verify on the next message either: stop
            # the dispatch (claims go back) instead of burning every delivery's attempts.
            raise SenderUnavailableError(f"TLS verification of the mail provider failed: {_root_cause(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # Connect/read timeouts, resets, a connection dropped mid-response. The request may
            # have reached SendGrid, so this is the ambiguous case (docs/email.md).
            raise TransientSendError(f"network error: {_root_cause(exc)}") from None
        if response.status != 202 and not 200 <= response.status < 300:
            raise classify_http_error(response.status, response.headers, response.data)
        return SendResult(message_id=str(response.headers.get("X-Message-Id") or ""))

    def close(self) -> None:
        self._pool.close()


def _root_cause(exc: BaseException) -> str:
    return type(_innermost(exc)).__name__


def _innermost(exc: BaseException) -> BaseException:
    """The exception urllib3 wrapped (``ProtocolError(RemoteDisconnected)``, ``SSLError(SSLEOFError)``)."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nested = [a for a in exc.args if isinstance(a, BaseException)]
        inner = getattr(exc, "reason", None) or (nested[0] if nested else None) or exc.__cause__
        if not isinstance(inner, BaseException):
            break
        exc = inner
    return exc


def classify_http_error(status: int, headers: object, body: object) -> SendError:
    detail = _error_summary(body)
    if status == 429:
        reset = _header(headers, "X-RateLimit-Reset")
        retry_at = datetime.fromtimestamp(int(reset), UTC) if reset and reset.isdigit() else None
        return RateLimitedError(f"HTTP 429 rate limited{detail}", retry_at=retry_at)
    if status >= 500 or status == 408:
        return TransientSendError(f"HTTP {status}{detail}")
    if status in (401, 403):
        return SenderUnavailableError(f"HTTP {status}{detail}")
    return PermanentSendError(f"HTTP {status}{detail}")


def _header(headers: object, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    return str(value).strip() if value is not None else None


def _error_summary(body: object) -> str:
    """SendGrid's error fields and messages, addresses redacted (the duplicate-recipient error
    quotes the address)."""
    try:
        raw = body.decode("utf-8") if isinstance(body, bytes) else str(body or "")
        errors = json.loads(raw).get("errors", []) if raw else []
    except (ValueError, AttributeError):
        return ""
    if not isinstance(errors, list):
        return ""
    parts = [
        f"{e['field']}: {e.get('message', '')}" if e.get("field") else str(e.get("message", ""))
        for e in errors[:3]
        if isinstance(e, dict)
    ]
    return redact(" (" + "; ".join(parts) + ")")[:400] if parts else ""
