"""One message as MIME: what the outbox stores and any mail client reads."""

from __future__ import annotations

import base64
import secrets
from email._policybase import Compat32
from email.encoders import encode_base64
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid
from functools import lru_cache
from io import BytesIO

from event_pipeline.identity import address_for_sending
from event_pipeline.mail.message import Attachment, InlineImage, OutgoingMessage


def _boundary() -> str:
    """A random boundary. Left to itself the generator picks one by compiling a regex per part
    and scanning the whole body for it; every part here is base64, whose alphabet has no ``_``,
    so ``=_`` + random hex cannot occur in any part."""
    return "=_" + secrets.token_hex(8)


def build_mime(message: OutgoingMessage) -> Message:
    """multipart/alternative(text, multipart/related(html, inline images)), inside
    multipart/mixed with the attachments if there are any: what mail clients expect for an HTML
    body whose ``<img src="cid:...">`` points at a part of the same message.

    Built with the compat32 ``email.mime`` classes: the same MIME as ``EmailMessage`` with the
    default policy, at a quarter of the CPU.
    """
    html: Message = MIMEText(message.html, "html", "utf-8")
    if message.inline_images:
        related = MIMEMultipart("related", boundary=_boundary())
        related.attach(html)
        for image in message.inline_images:
            part = _binary_part(image.data, image.mime_type)
            part.add_header("Content-ID", f"<{image.content_id}>")
            part.add_header("Content-Disposition", "inline", filename=image.filename)
            related.attach(part)
        html = related
    mime = MIMEMultipart("alternative", boundary=_boundary())
    mime.attach(MIMEText(message.text, "plain", "utf-8"))
    mime.attach(html)
    if message.attachments:
        mixed = MIMEMultipart("mixed", boundary=_boundary())
        mixed.attach(mime)
        for attachment in message.attachments:
            part = _binary_part(attachment.data, attachment.mime_type)
            part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
            mixed.attach(part)
        mime = mixed
    for name, value in _top_headers(message):
        mime[name] = value
    return mime


def _binary_part(data: bytes, mime_type: str) -> Message:
    maintype, subtype = mime_type.split("/", 1)
    part = MIMEBase(maintype, subtype)
    part.set_payload(data)
    encode_base64(part)
    return part


def sendable_address(address: str) -> str:
    try:
        return address_for_sending(address)
    except ValueError:  # checked when it was loaded; the provider has the last word
        return address


def _top_headers(message: OutgoingMessage) -> list[tuple[str, str]]:
    return [*_sender_headers(message.subject, message.from_name or "", message.from_email), *_own_headers(message)]


@lru_cache(maxsize=256)
def _sender_headers(subject: str, from_name: str, from_email: str) -> tuple[tuple[str, str], ...]:
    """Subject and From, encoded once: a mailing repeats them in every message (the welcome
    subject names the event, not the person), and encoding and folding a Korean subject was
    most of ``mime_bytes`` (~300 of its ~350 us a message)."""
    return (
        ("Subject", Header(subject, "utf-8").encode()),
        ("From", formataddr((from_name, from_email), charset="utf-8")),
    )


@lru_cache(maxsize=256)
def _folded_sender_headers(subject: str, from_name: str, from_email: str) -> bytes:
    return b"".join(
        VERBATIM.fold_binary(name, value) for name, value in _sender_headers(subject, from_name, from_email)
    )


def _own_headers(message: OutgoingMessage) -> list[tuple[str, str]]:
    """The headers that differ from one message to the next."""
    headers = [
        # The domain as A-labels: an encoded word there (what compat32 makes of `bücher.de`)
        # is undeliverable. The local part stays as the person wrote it.
        ("To", sendable_address(message.to)),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", make_msgid(domain="event-pipeline.invalid")),
    ]
    headers += [(f"X-Event-Pipeline-{k.replace('_', '-').title()}", v) for k, v in message.custom_args.items()]
    return headers


class _Compat32Verbatim(Compat32):
    """compat32, except that a header that needs no folding is written as it is.

    Folding goes through ``email.header.Header`` for every header of every part (about 20 a
    message), which was half the cost of writing a welcome mail; for a short single-line ASCII
    value its result is the value itself, so only those skip it.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if isinstance(value, str) and value.isascii() and len(name) + len(value) < 76 and not _BREAKS & set(value):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_BREAKS = frozenset("\r\n")
VERBATIM = _Compat32Verbatim()


def mime_bytes(message: OutgoingMessage) -> bytes:
    """The message as bytes, the same as generating ``build_mime(message)``, at a fraction of
    the cost: the part structure (boundaries, part headers) is generated by the email package
    once per message shape and cached; per message only the top-level headers are folded
    (by the same policy) and the leaf payloads base64-encoded into it. Every leaf is base64, so
    no body line can start with "From " and the bytes can go into an mbox as they are.
    """
    segments = _skeleton(_shape(message))
    payloads = [message.text.encode("utf-8"), message.html.encode("utf-8")]
    payloads += [image.data for image in message.inline_images]
    payloads += [attachment.data for attachment in message.attachments]
    out = [
        _folded_sender_headers(message.subject, message.from_name or "", message.from_email),
        *(VERBATIM.fold_binary(name, value) for name, value in _own_headers(message)),
    ]
    for segment, payload in zip(segments, payloads, strict=False):
        out += (segment, base64.encodebytes(payload))
    out.append(segments[-1])
    return b"".join(out)


def _shape(message: OutgoingMessage) -> tuple[tuple[tuple[str, str, str], ...], tuple[tuple[str, str], ...]]:
    images = tuple((i.content_id, i.filename, i.mime_type) for i in message.inline_images)
    return images, tuple((a.filename, a.mime_type) for a in message.attachments)


_TOP_HEADER_NAMES = ("Subject", "From", "To", "Date", "Message-ID")
_PLACEHOLDER = "\x00payload\x00"


@lru_cache(maxsize=64)
def _skeleton(shape: tuple[tuple[tuple[str, str, str], ...], tuple[tuple[str, str], ...]]) -> list[bytes]:
    """The generated message of this shape, without top-level headers, cut where each leaf's
    payload goes (in the order of ``Message.walk``: text, html, images, attachments)."""
    images, attachments = shape
    template = build_mime(
        OutgoingMessage(
            to="x@x.invalid",
            from_email="x@x.invalid",
            subject="",
            text="",
            html="",
            inline_images=tuple(InlineImage(cid, name, b"", mime) for cid, name, mime in images),
            attachments=tuple(Attachment(name, b"", mime) for name, mime in attachments),
        )
    )
    for name in _TOP_HEADER_NAMES:
        del template[name]
    for part in template.walk():
        if not part.is_multipart():
            part.set_payload(_PLACEHOLDER)
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=VERBATIM).flatten(template)
    return buffer.getvalue().split(_PLACEHOLDER.encode("ascii"))
