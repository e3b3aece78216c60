"""Senders: the outbox folder (embedded default) and SendGrid (official client).

Senders classify failures; retry timing is decided by ``mail.policy``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import tempfile
import urllib.error
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from http.client import HTTPException
from pathlib import Path
from typing import Protocol

from event_pipeline.mail.message import OutgoingMessage


@dataclass(frozen=True)
class SendResult:
    message_id: str


class SendError(Exception):
    """Base for classified send failures. ``str(e)`` must not contain recipient addresses."""


class PermanentSendError(SendError):
    """Retrying cannot help (bad request, rejected address, bad key)."""


class TransientSendError(SendError):
    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class Sender(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...


def build_mime(message: OutgoingMessage) -> EmailMessage:
    mime = EmailMessage()
    mime["Subject"] = message.subject
    mime["From"] = formataddr((message.from_name or "", message.from_email))
    mime["To"] = message.to
    mime["Date"] = formatdate(localtime=False)
    mime["Message-ID"] = make_msgid(domain="event-pipeline.invalid")
    for key, value in message.custom_args.items():
        mime[f"X-Event-Pipeline-{key.replace('_', '-').title()}"] = value
    mime.set_content(message.text, charset="utf-8")
    mime.add_alternative(message.html, subtype="html", charset="utf-8")
    if message.inline_images:
        html_part = mime.get_payload()[1]  # type: ignore[index]
        for image in message.inline_images:
            maintype, subtype = image.mime_type.split("/", 1)
            html_part.add_related(
                image.data, maintype=maintype, subtype=subtype, cid=f"<{image.content_id}>", filename=image.filename
            )
            related = html_part.get_payload()[-1]
            related.replace_header("Content-Disposition", f'inline; filename="{image.filename}"')
    return mime


class OutboxSender:
    """Writes one ``.eml`` per message: readable by any mail client, nothing leaves the machine."""

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: OutgoingMessage) -> SendResult:
        self.directory.mkdir(parents=True, exist_ok=True)
        message_id = uuid.uuid4().hex
        stem = message.key.replace(":", "-").replace("/", "-") or message_id
        target = self.directory / f"{stem}.eml"
        data = build_mime(message).as_bytes()
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return SendResult(message_id=message_id)


class SendGridSender:
    """Official ``sendgrid`` client. It has no timeout and no retries of its own."""

    name = "sendgrid"

    def __init__(self, api_key: str, *, host: str | None = None, timeout_s: float = 15.0) -> None:
        from sendgrid import SendGridAPIClient

        kwargs = {"host": host.rstrip("/").removesuffix("/v3")} if host else {}
        self.client = SendGridAPIClient(api_key=api_key, **kwargs)
        self.client.client.timeout = timeout_s

    @staticmethod
    def payload(message: OutgoingMessage) -> dict[str, object]:
        sender: dict[str, str] = {"email": message.from_email}
        if message.from_name:
            sender["name"] = message.from_name
        body: dict[str, object] = {
            "personalizations": [{"to": [{"email": message.to}]}],
            "from": sender,
            "subject": message.subject,
            "content": [
                {"type": "text/plain", "value": message.text},
                {"type": "text/html", "value": message.html},
            ],
        }
        if message.custom_args:
            body["custom_args"] = {k: str(v) for k, v in message.custom_args.items()}
        if message.inline_images:
            body["attachments"] = [
                {
                    "content": base64.b64encode(img.data).decode("ascii"),
                    "type": img.mime_type,
                    "filename": img.filename,
                    "disposition": "inline",
                    "content_id": img.content_id,
                }
                for img in message.inline_images
            ]
        return body

    def send(self, message: OutgoingMessage) -> SendResult:
        from python_http_client.exceptions import HTTPError

        try:
            response = self.client.client.mail.send.post(request_body=self.payload(message))
        except HTTPError as exc:
            raise classify_http_error(exc.status_code, exc.headers, exc.body) from None
        except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError, HTTPException) as exc:
            raise TransientSendError(f"network error: {type(exc).__name__}") from None
        headers = response.headers
        message_id = (headers.get("X-Message-Id") if headers else None) or ""
        return SendResult(message_id=message_id)


def classify_http_error(status: int, headers: object, body: object) -> SendError:
    detail = _error_summary(body)
    if status == 429:
        reset = _header(headers, "X-RateLimit-Reset")
        retry_at = datetime.fromtimestamp(int(reset), UTC) if reset and reset.isdigit() else None
        return TransientSendError(f"HTTP 429 rate limited{detail}", retry_at=retry_at)
    if status >= 500 or status == 408:
        return TransientSendError(f"HTTP {status}{detail}")
    return PermanentSendError(f"HTTP {status}{detail}")


def _header(headers: object, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    return str(value) if value is not None else None


def _error_summary(body: object) -> str:
    """SendGrid's error messages and fields, which name problems but not addresses."""
    try:
        raw = body.decode("utf-8") if isinstance(body, bytes) else str(body or "")
        errors = json.loads(raw).get("errors", []) if raw else []
    except (ValueError, AttributeError):
        return ""
    parts = [f"{e.get('field') or '-'}: {e.get('message', '')}" for e in errors[:3] if isinstance(e, dict)]
    return (" (" + "; ".join(parts) + ")") if parts else ""
