"""Senders: the outbox folder (embedded default) and SendGrid (official client).

Senders only classify failures; when to try again is decided by ``mail.policy`` and the
dispatcher. Error texts end up in ``email_deliveries.last_error`` and in logs, so they never
carry a recipient address (SendGrid's own messages sometimes quote one: it is redacted).
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid
from http.client import HTTPException
from pathlib import Path
from typing import Protocol

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    ApiKeyIncludedException,
    Attachment,
    ContentId,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    HtmlContent,
    Mail,
    PlainTextContent,
    Subject,
    To,
)

from event_pipeline.files import private_dir
from event_pipeline.mail.message import OutgoingMessage

DEFAULT_TIMEOUT_S = 15.0
_EMAIL_RE = re.compile(r"[^\s<>()\[\]{},;:\"'@]+@[^\s<>()\[\]{},;:\"'@]+")


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
    return _EMAIL_RE.sub("<address>", text)


def build_mime(message: OutgoingMessage) -> Message:
    """multipart/alternative(text, multipart/related(html, inline images)): what mail clients
    expect for an HTML body whose ``<img src="cid:...">`` points at a part of the same message.

    Built with the compat32 ``email.mime`` classes: the same MIME as ``EmailMessage`` with the
    default policy, at a quarter of the CPU (1.8 ms -> 0.5 ms a message), which is what bounds the
    outbox on big uploads.
    """
    html: Message = MIMEText(message.html, "html", "utf-8")
    if message.inline_images:
        related = MIMEMultipart("related")
        related.attach(html)
        for image in message.inline_images:
            maintype, subtype = image.mime_type.split("/", 1)
            part = MIMEImage(image.data, subtype) if maintype == "image" else MIMEApplication(image.data, subtype)
            part.add_header("Content-ID", f"<{image.content_id}>")
            part.add_header("Content-Disposition", "inline", filename=image.filename)
            related.attach(part)
        html = related
    mime = MIMEMultipart("alternative")
    mime.attach(MIMEText(message.text, "plain", "utf-8"))
    mime.attach(html)
    mime["Subject"] = Header(message.subject, "utf-8").encode()
    mime["From"] = formataddr((message.from_name or "", message.from_email), charset="utf-8")
    mime["To"] = message.to
    mime["Date"] = formatdate(localtime=False)
    mime["Message-ID"] = make_msgid(domain="event-pipeline.invalid")
    for key, value in message.custom_args.items():
        mime[f"X-Event-Pipeline-{key.replace('_', '-').title()}"] = value
    return mime


class OutboxSender:
    """Writes one ``.eml`` per message: readable by any mail client, nothing leaves the machine.

    The file is named after the message key, so sending the same logical message twice
    replaces the file instead of adding a second one.
    """

    name = "outbox"
    idempotent = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._ready = False

    def path_for(self, message: OutgoingMessage) -> Path:
        stem = message.key.replace(":", "-").replace("/", "-") or uuid.uuid4().hex
        return self.directory / f"{stem}.eml"

    def send(self, message: OutgoingMessage) -> SendResult:
        if not self._ready:  # once per sender: this runs for every message of a big upload
            private_dir(self.directory)
            self._ready = True
        target = self.path_for(message)
        data = build_mime(message).as_bytes()
        # Write-then-rename: a reader (or a crash) never sees half a message.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return SendResult(message_id=target.stem)


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
    """Official ``sendgrid`` client, one ``POST /v3/mail/send`` per message.

    The client has no retries of its own (wanted: the dispatcher decides) and no timeout
    unless given one (set in ``sendgrid_client``).
    """

    name = "sendgrid"
    idempotent = False

    def __init__(self, api_key: str, *, host: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.client = sendgrid_client(api_key, host=host, timeout_s=timeout_s)

    @staticmethod
    def payload(message: OutgoingMessage) -> dict[str, object]:
        mail = Mail(
            from_email=From(message.from_email, message.from_name or None),
            to_emails=To(message.to),
            subject=Subject(message.subject),
            plain_text_content=PlainTextContent(message.text),
            html_content=HtmlContent(message.html),
        )
        if message.custom_args:
            mail.custom_arg = [CustomArg(k, str(v)) for k, v in message.custom_args.items()]
        if message.inline_images:
            mail.attachment = [
                Attachment(
                    FileContent(base64.b64encode(img.data).decode("ascii")),
                    FileName(img.filename),
                    FileType(img.mime_type),
                    Disposition("inline"),
                    ContentId(img.content_id),
                )
                for img in message.inline_images
            ]
        body: dict[str, object] = mail.get()
        return body

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            body = self.payload(message)
        except ApiKeyIncludedException:
            # The helper refuses bodies that start with something shaped like an API key.
            raise PermanentSendError("message body looks like it contains a SendGrid API key") from None
        try:
            response = self.client.client.mail.send.post(request_body=body)
        except HTTPError as exc:
            raise classify_http_error(exc.status_code, exc.headers, exc.body) from None
        except (OSError, HTTPException) as exc:
            # urllib wraps connect failures in URLError, but a read timeout arrives as a bare
            # TimeoutError, a dropped connection as RemoteDisconnected / ConnectionResetError /
            # IncompleteRead, and TLS trouble as ssl.SSLError: all OSError or HTTPException.
            # The request may have reached SendGrid, so this is the ambiguous case (docs/email.md).
            raise TransientSendError(f"network error: {type(exc).__name__}") from None
        headers = response.headers
        message_id = (headers.get("X-Message-Id") if headers is not None else None) or ""
        return SendResult(message_id=str(message_id))


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
