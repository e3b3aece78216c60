"""The templated mail/send body is byte for byte what the ``sendgrid`` helpers' ``Mail.get()`` encodes to."""

from __future__ import annotations

import json
from email.utils import parseaddr

import pytest
from sendgrid.helpers.mail import ApiKeyIncludedException

from event_pipeline.access.qr import render_qr_png
from event_pipeline.mail.message import Attachment, InlineImage, OutgoingMessage
from event_pipeline.mail.sendgrid_body import _PLAIN_ADDRESS, _shape, _template, helper_payload, mail_send_body

QR = render_qr_png("https://checkin.invalid/t/" + "Ab3" * 14)
REPORT = Attachment("report.csv", "\ufeffrow,reason\n2,x\n".encode(), "text/csv")


def _message(**overrides: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "to": "kim@example.com",
        "from_email": "events@example.com",
        "from_name": "행사 사무국",
        "subject": "[데브콘 2026] 등록이 완료되었습니다",
        "text": '안녕하세요 홍길동님\n"quoted" \\ back\tslash\n',
        "html": "<p>안녕하세요 <b>홍길동</b>님</p><img src='cid:checkin-qr'>\u2028",
        "custom_args": {"delivery_id": "42", "event_id": "7", "kind": "welcome", "participant_id": "9"},
        "inline_images": (InlineImage("checkin-qr", "checkin-qr.png", QR),),
        "key": "welcome:42",
    }
    fields.update(overrides)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


CASES = {
    "welcome": {},
    "no-image": {"inline_images": ()},
    "organiser-report": {"inline_images": (), "attachments": (REPORT,)},
    "image-and-two-attachments": {"attachments": (REPORT, Attachment("b.bin", b"\x00\xff" * 10))},
    "two-images": {"inline_images": (InlineImage("a", "a.png", QR), InlineImage("b", "b.gif", b"GIF89a", "image/gif"))},
    "no-from-name": {"from_name": None},
    "empty-from-name": {"from_name": ""},
    "no-args": {"custom_args": {}},
    "empty-subject-and-text": {"subject": "", "text": ""},
    "idn-domain": {"to": "kim@bücher.de"},
    "utf8-local-part": {"to": "김@example.com"},
    "name-in-address": {"to": "Kim <kim@example.com>", "from_name": None, "from_email": "Desk <e@x.com>"},
    "slot-lookalike-values": {"subject": '"slot00000003@slot.invalid"', "text": "slot00000004"},
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_body_is_what_the_helpers_encode(overrides: dict[str, object]) -> None:
    message = _message(**overrides)
    assert mail_send_body(message) == json.dumps(helper_payload(message)).encode("utf-8")


def test_welcome_takes_the_template() -> None:
    # Otherwise the equality above would only prove that the fallback is the helpers.
    literals, slots = _template(_shape(_message()))
    assert len(literals) == len(slots) + 1
    assert len(slots) == 6 + 4 + 4  # from, name, to, subject, text, html; one image; four args


@pytest.mark.parametrize("field", ["text", "html"])
def test_api_key_in_content_is_refused_as_by_the_helpers(field: str) -> None:
    message = _message(**{field: "SG.abcdef.ghijkl is our key"})
    with pytest.raises(ApiKeyIncludedException):
        helper_payload(message)
    with pytest.raises(ApiKeyIncludedException):
        mail_send_body(message)


PLAIN = ["p000001@example1.co.kr", "first.last+tag@sub.example.com", "a_b-c@x-y.io", "x@xn--bcher-kva.de"]
NOT_PLAIN = ["a..b@example.com", ".a@example.com", "a.@example.com", "a@example", '"a b"@example.com',
             "a(comment)@example.com", "Kim <kim@example.com>", "김@example.com"]  # fmt: skip


@pytest.mark.parametrize("address", PLAIN)
def test_plain_addresses_are_those_parse_email_keeps(address: str) -> None:
    # The fast path skips the helpers' Email.parse_email only where it would change nothing.
    assert _PLAIN_ADDRESS.fullmatch(address)
    assert parseaddr(address) == ("", address)


@pytest.mark.parametrize("address", NOT_PLAIN)
def test_other_addresses_go_through_the_helpers(address: str) -> None:
    assert not _PLAIN_ADDRESS.fullmatch(address)
