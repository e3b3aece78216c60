"""What a sender needs to know about one message, independent of the provider."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InlineImage:
    content_id: str
    filename: str
    data: bytes
    mime_type: str = "image/png"


@dataclass(frozen=True)
class Attachment:
    """A file the recipient saves or opens (Content-Disposition: attachment), not shown inline."""

    filename: str
    data: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True)
class OutgoingMessage:
    to: str
    from_email: str
    subject: str
    text: str
    html: str
    # Delivery bookkeeping ids only; providers echo these back in webhooks, so never PII.
    custom_args: dict[str, str] = field(default_factory=dict)
    inline_images: tuple[InlineImage, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    from_name: str | None = None
    # Stable per logical message: the outbox file name, and a header providers keep.
    key: str = ""
