"""The cached MIME skeleton gives the same message as the email package's own rendering."""

from __future__ import annotations

import email
from email.header import decode_header, make_header
from email.message import Message

import pytest

from event_pipeline.access.qr import render_qr_png
from event_pipeline.mail.message import Attachment, InlineImage, OutgoingMessage
from event_pipeline.mail.mime import build_mime, mime_bytes

QR = render_qr_png("https://checkin.invalid/t/" + "Ab3" * 14)


def _message(**overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "to": "kim@example.com",
        "from_email": "events@example.com",
        "from_name": "행사 사무국",
        "subject": "[데브콘 2026] 등록이 완료되었습니다 " * 3,  # long enough to need folding
        "text": "안녕하세요 홍길동님\nFrom the door: show this code.\n",
        "html": "<p>안녕하세요 <b>홍길동</b>님</p><img src='cid:checkin-qr'>",
        "custom_args": {"delivery_id": "42", "kind": "welcome"},
        "inline_images": (InlineImage("checkin-qr", "checkin-qr.png", QR),),
        "key": "welcome:42",
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def _leaves(message: Message) -> list[tuple[str, object, str | None, str | None, str | None]]:
    return [
        (
            p.get_content_type(),
            p.get_payload(decode=True),
            p.get("Content-Disposition"),
            p.get("Content-ID"),
            p.get_content_charset(),
        )
        for p in message.walk()
        if not p.is_multipart()
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"inline_images": ()},
        {"attachments": (Attachment("report.csv", "\ufeffrow,reason\n2,x\n".encode(), "text/csv"),)},
        {"to": "kim@bücher.de", "custom_args": {}},
    ],
    ids=["welcome", "no-image", "with-attachment", "idn-no-args"],
)
def test_skeleton_matches_the_email_package(overrides: dict[str, object]) -> None:
    message = _message(**overrides)
    ours = email.message_from_bytes(mime_bytes(message))
    reference = email.message_from_bytes(build_mime(message).as_bytes())

    assert [p.get_content_type() for p in ours.walk()] == [p.get_content_type() for p in reference.walk()]
    assert _leaves(ours) == _leaves(reference)
    for header in ("From", "To", "X-Event-Pipeline-Delivery-Id", "X-Event-Pipeline-Kind", "MIME-Version"):
        assert ours[header] == reference[header]
    assert str(make_header(decode_header(ours["Subject"]))) == message.subject
    assert ours["Date"] and ours["Message-ID"] and ours["Message-ID"] != reference["Message-ID"]


def test_two_messages_of_one_shape_differ_only_where_they_should() -> None:
    a = email.message_from_bytes(mime_bytes(_message(text="first\n", to="a@example.com")))
    b = email.message_from_bytes(mime_bytes(_message(text="second\n", to="b@example.com")))
    assert (a["To"], b["To"]) == ("a@example.com", "b@example.com")
    assert _leaves(a)[0][1] == b"first\n" and _leaves(b)[0][1] == b"second\n"
    assert _leaves(a)[1:] == _leaves(b)[1:]


def test_idn_domain_goes_out_as_a_labels() -> None:
    sent = email.message_from_bytes(mime_bytes(_message(to="kim@bücher.de")))
    assert sent["To"] == "kim@xn--bcher-kva.de"
