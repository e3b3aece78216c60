"""The JSON body of SendGrid's ``POST /v3/mail/send`` for one message, shaped by the ``sendgrid`` helpers.

``helper_payload`` builds it the documented way (``Mail``, ``Attachment``, ``CustomArg``...). That
costs ~65 us a message in helper objects plus ~17 us in ``json.dumps``, a tenth of the client's
CPU per message at provider speed. So ``mail_send_body`` lets the helpers build each message
*shape* once (which fields are set, how many images and attachments, which custom_args keys) with
placeholder values, encodes that, and cuts it at the placeholders; a message's body is those
pieces with its own values JSON-encoded in between. The result is byte for byte
``json.dumps(helper_payload(message))`` (``test_sendgrid_body.py`` compares them), including the
helpers' quirks, such as listing attachments and custom_args in reverse.

Two things the helpers do to values, not to the shape, are kept per message: the API-key check
of the text and HTML (the helpers' own ``ValidateApiKey``), and ``Email.parse_email``, which
reads an address given without a name as ``Name <address>``. Only plain dot-atom addresses,
which it leaves as they are, take the fast path; any other message is built by the helpers.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring_ascii  # what json.dumps uses for str (ensure_ascii)

from sendgrid.helpers.mail import (
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
    ValidateApiKey,
)

from event_pipeline.mail.message import Attachment as MessageAttachment
from event_pipeline.mail.message import InlineImage, OutgoingMessage
from event_pipeline.mail.mime import sendable_address

__all__ = ["helper_payload", "mail_send_body"]

# An address ``email.utils.parseaddr`` returns unchanged with no name: dot-atoms of these
# characters only. Anything else (quotes, comments, UTF-8 local parts) goes through the helpers.
_ATOM = r"[A-Za-z0-9_+-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# Placeholders: a plain address for every text (parse_email keeps it as it is) and, for file
# contents, base64 whose decoding encodes back to the same text (12 characters: no padding bits).
_SLOT = "slot{:08d}"
_SLOT_IN_JSON = re.compile(r'"slot(\d{8})(?:@slot\.invalid)?"')
_API_KEYS = ValidateApiKey()


def helper_payload(message: OutgoingMessage) -> dict[str, object]:
    """The request body as the ``sendgrid`` helpers build it (``Mail.get()``)."""
    mail = Mail(
        from_email=From(message.from_email, message.from_name or None),
        to_emails=To(sendable_address(message.to)),
        subject=Subject(message.subject),
        plain_text_content=PlainTextContent(message.text),
        html_content=HtmlContent(message.html),
    )
    if message.custom_args:
        mail.custom_arg = [CustomArg(k, str(v)) for k, v in message.custom_args.items()]
    files = [
        Attachment(
            FileContent(base64.b64encode(img.data).decode("ascii")),
            FileName(img.filename),
            FileType(img.mime_type),
            Disposition("inline"),
            ContentId(img.content_id),
        )
        for img in message.inline_images
    ]
    files += [
        Attachment(
            FileContent(base64.b64encode(a.data).decode("ascii")),
            FileName(a.filename),
            FileType(a.mime_type),
            Disposition("attachment"),
        )
        for a in message.attachments
    ]
    if files:
        mail.attachment = files
    body: dict[str, object] = mail.get()
    return body


@dataclass(frozen=True)
class _Shape:
    """What decides the body's structure; every other value is a slot."""

    from_name: bool
    # Empty strings stay literal: the helpers may treat an empty value unlike any other.
    subject: bool
    text: bool
    html: bool
    images: int
    attachments: int
    arg_keys: tuple[str, ...]


def _shape(message: OutgoingMessage) -> _Shape:
    return _Shape(
        from_name=bool(message.from_name),
        subject=bool(message.subject),
        text=bool(message.text),
        html=bool(message.html),
        images=len(message.inline_images),
        attachments=len(message.attachments),
        arg_keys=tuple(message.custom_args),
    )


def _values(message: OutgoingMessage, to: str) -> list[str]:
    """The slot values in slot order (``_template`` numbers the placeholders the same way)."""
    values = [message.from_email, message.from_name or "", to, message.subject, message.text, message.html]
    for img in message.inline_images:
        values += [base64.b64encode(img.data).decode("ascii"), img.filename, img.mime_type, img.content_id]
    for a in message.attachments:
        values += [base64.b64encode(a.data).decode("ascii"), a.filename, a.mime_type]
    values += [str(v) for v in message.custom_args.values()]
    return values


@lru_cache(maxsize=64)
def _template(shape: _Shape) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(literal pieces, slot numbers between them): the encoded body with placeholders cut out."""
    numbers = iter(range(1 << 20))

    def text(present: bool = True) -> str:
        number = next(numbers)  # taken even when absent: the numbers match _values' indexes
        return _SLOT.format(number) + "@slot.invalid" if present else ""

    def data() -> bytes:
        return base64.b64decode(_SLOT.format(next(numbers)))

    # Arguments are evaluated left to right: the numbering follows _values' order.
    sample = OutgoingMessage(
        from_email=text(),
        from_name=text(shape.from_name) or None,
        to=text(),
        subject=text(shape.subject),
        text=text(shape.text),
        html=text(shape.html),
        inline_images=tuple(_image(data(), text(), text(), text()) for _ in range(shape.images)),
        attachments=tuple(
            MessageAttachment(data=data(), filename=text(), mime_type=text()) for _ in range(shape.attachments)
        ),
        custom_args={key: text() for key in shape.arg_keys},
    )
    pieces = _SLOT_IN_JSON.split(json.dumps(helper_payload(sample)))
    literals, slots = tuple(pieces[0::2]), tuple(int(s) for s in pieces[1::2])
    expected = 6 + 4 * shape.images + 3 * shape.attachments + len(shape.arg_keys)
    present = [shape.from_name, shape.subject, shape.text, shape.html]
    skipped = {i for i, p in zip((1, 3, 4, 5), present, strict=True) if not p}
    if sorted(slots) != [i for i in range(expected) if i not in skipped]:
        return (), ()  # the helpers dropped, repeated or rewrote a value: no template for this shape
    return literals, slots


def _image(data: bytes, filename: str, mime_type: str, content_id: str) -> InlineImage:
    return InlineImage(content_id=content_id, filename=filename, data=data, mime_type=mime_type)


def mail_send_body(message: OutgoingMessage) -> bytes:
    """``json.dumps(helper_payload(message)).encode()``, at a fraction of the cost.

    Raises ``ApiKeyIncludedException`` as the helpers do when the text or HTML starts with
    something shaped like a SendGrid API key.
    """
    to = sendable_address(message.to)
    plain = bool(_PLAIN_ADDRESS.fullmatch(to)) and bool(
        message.from_name or _PLAIN_ADDRESS.fullmatch(message.from_email)
    )
    literals, slots = _template(_shape(message)) if plain else ((), ())
    if not literals:
        return json.dumps(helper_payload(message)).encode("utf-8")
    _API_KEYS.validate_message_text(message.text)
    _API_KEYS.validate_message_text(message.html)
    values = _values(message, to)
    out = [literals[0]]
    for slot, literal in zip(slots, literals[1:], strict=True):
        out.append(encode_basestring_ascii(values[slot]))
        out.append(literal)
    return "".join(out).encode("ascii")
