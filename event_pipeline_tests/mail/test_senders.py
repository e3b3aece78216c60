"""Both senders on real messages: SendGrid over HTTP (real client, FakeSendGrid) and the outbox."""

from __future__ import annotations

import base64
import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from python_http_client.exceptions import BadRequestsError

from event_pipeline.mail.message import InlineImage, OutgoingMessage
from event_pipeline.mail.senders import (
    OutboxSender,
    PermanentSendError,
    RateLimitedError,
    SenderUnavailableError,
    SendGridSender,
    TransientSendError,
    classify_http_error,
    sendgrid_client,
)
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline_tests.mail.helpers import (
    MailWorld,
    checkin_url_of,
    custom_args,
    qr_text,
    sendgrid,
)
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

NAMES = ["Ada Lovelace", "<script>alert('x')</script> & Co", "김민준"]


def plain(to: str = "ada@example.org", **kwargs: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "to": to,
        "from_email": "events@example.com",
        "subject": "Hi",
        "text": "Hello",
        "html": "<p>Hello</p>",
        "custom_args": {"delivery_id": "1"},
        "key": "welcome:1",
    }
    fields.update(kwargs)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def built(world: MailWorld) -> dict[int, OutgoingMessage]:
    """The messages the pipeline would send for every queued welcome (claimed, as dispatch does)."""
    world.enqueue()
    claimed = deliveries_store.claim_due(world.engine, limit=100)
    return messages.build_messages(world.engine, world.ctx(OutboxSender(world.paths.outbox)), claimed)


def test_welcome_over_sendgrid_has_inline_qr_and_only_ids_in_custom_args(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES)
    world.enqueue()

    stats = messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    assert stats.sent == 3 and len(fake.messages) == 3
    for sent in fake.messages:
        body = sent.body
        args = custom_args(body)
        assert set(args) == {"delivery_id", "participant_id", "event_id", "kind"}
        assert not any("@" in v for v in args.values())
        [attachment] = body["attachments"]
        assert attachment["disposition"] == "inline" and attachment["type"] == "image/png"
        html = body["content"][1]["value"]
        assert f'src="cid:{attachment["content_id"]}"' in html
        png = base64.b64decode(attachment["content"])
        assert qr_text(png) == checkin_url_of(world.engine, int(args["participant_id"]))
        assert qr_text(png) in body["content"][0]["value"]  # the link is in the text part too
    assert sorted(m.body["personalizations"][0]["to"][0]["email"] for m in fake.messages) == sorted(world.emails)


def test_names_are_escaped_in_html_and_literal_in_text(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory([NAMES[1]])
    world.enqueue()

    messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    [sent] = fake.messages
    text, html = (c["value"] for c in sent.body["content"])
    assert "<script>alert('x')</script> & Co" in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co" in html
    assert "<script>" not in html


def test_korean_event_gets_korean_mail(world_factory: Callable[..., MailWorld], fake: FakeSendGrid) -> None:
    world = world_factory(["김민준"], language="ko")
    world.enqueue()

    messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    [sent] = fake.messages
    assert sent.body["subject"] == "[Dev Conference] 참가 등록이 완료되었습니다"
    assert "김민준님, 안녕하세요." in sent.body["content"][0]["value"]
    assert '<html lang="ko">' in sent.body["content"][1]["value"]


def _eml(path_glob: Iterator[object]) -> list[EmailMessage]:
    out = []
    for p in path_glob:
        with open(str(p), "rb") as fh:
            msg = email.message_from_binary_file(fh, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def test_outbox_eml_has_alternative_parts_and_a_decodable_inline_qr(world_factory: Callable[..., MailWorld]) -> None:
    world = world_factory(NAMES)
    world.enqueue()

    stats = messages.dispatch(world.engine, world.ctx(OutboxSender(world.paths.outbox)))

    assert stats.sent == 3
    mails = _eml(world.paths.outbox.glob("welcome-*.eml"))
    assert len(mails) == 3
    for mail in mails:
        assert mail.get_content_type() == "multipart/alternative"
        text = mail.get_body(preferencelist=("plain",))
        html = mail.get_body(preferencelist=("html",))
        assert text is not None and html is not None
        related = [p for p in mail.walk() if p.get_content_type() == "multipart/related"]
        assert len(related) == 1
        [image] = [p for p in mail.walk() if p.get_content_type() == "image/png"]
        assert image.get_content_disposition() == "inline"
        cid = str(image["Content-ID"]).strip("<>")
        assert f'src="cid:{cid}"' in html.get_content()
        participant_id = int(str(mail["X-Event-Pipeline-Participant-Id"]))
        assert qr_text(image.get_content()) == checkin_url_of(world.engine, participant_id)
        headers = {k: str(v) for k, v in mail.items() if k.startswith("X-Event-Pipeline")}
        assert headers and not any("@" in v for v in headers.values())
    by_name = {str(m["X-Event-Pipeline-Participant-Id"]): m for m in mails}
    script = next(m for m in by_name.values() if "script" in (m.get_body(("plain",)) or m).get_content())
    assert "<script>alert('x')</script>" in script.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;" in script.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_outbox_writes_one_file_per_message_key(tmp_path: object) -> None:
    from pathlib import Path

    outbox = OutboxSender(Path(str(tmp_path)) / "outbox")
    image = InlineImage("qr", "qr.png", b"\x89PNG fake")
    outbox.send(plain(inline_images=(image,)))
    outbox.send(plain(inline_images=(image,)))

    assert [p.name for p in (Path(str(tmp_path)) / "outbox").iterdir()] == ["welcome-1.eml"]


def test_sendgrid_accepts_and_returns_the_message_id(fake: FakeSendGrid) -> None:
    result = sendgrid(fake).send(plain())

    [sent] = fake.messages
    assert result.message_id == sent.message_id
    assert sent.body["custom_args"] == {"delivery_id": "1"}


@pytest.mark.parametrize("status", [400, 404, 413])
def test_client_errors_other_than_429_are_permanent(fake: FakeSendGrid, status: int) -> None:
    fake.fail_next(1, status)

    with pytest.raises(PermanentSendError) as excinfo:
        sendgrid(fake).send(plain())

    assert not isinstance(excinfo.value, SenderUnavailableError)
    assert f"HTTP {status}" in str(excinfo.value)


def test_invalid_recipient_is_permanent_and_the_error_names_no_address(fake: FakeSendGrid) -> None:
    with pytest.raises(PermanentSendError) as excinfo:
        sendgrid(fake).send(plain(to="not an address@example.org"))

    assert "personalizations.0.to.0.email" in str(excinfo.value)
    assert "@" not in str(excinfo.value)


def test_addresses_quoted_by_sendgrid_errors_are_redacted(fake: FakeSendGrid) -> None:
    # SendGrid's duplicate-recipient error quotes the address; take the real response body.
    client = sendgrid_client(fake.api_key, host=fake.host, timeout_s=5)
    body = {
        "personalizations": [{"to": [{"email": "ada@example.org"}], "cc": [{"email": "ADA@example.org"}]}],
        "from": {"email": "events@example.com"},
        "subject": "x",
        "content": [{"type": "text/plain", "value": "x"}],
    }
    with pytest.raises(BadRequestsError) as excinfo:
        client.client.mail.send.post(request_body=body)
    assert b"[ADA@example.org]" in excinfo.value.body

    error = classify_http_error(excinfo.value.status_code, excinfo.value.headers, excinfo.value.body)

    assert isinstance(error, PermanentSendError)
    assert "@" not in str(error) and "<address>" in str(error)


def test_wrong_api_key_means_the_sender_is_unavailable(fake: FakeSendGrid) -> None:
    with pytest.raises(SenderUnavailableError, match="HTTP 401"):
        SendGridSender("SG.wrong", host=fake.host, timeout_s=5).send(plain())


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(fake: FakeSendGrid, status: int) -> None:
    fake.fail_next(1, status)

    with pytest.raises(TransientSendError) as excinfo:
        sendgrid(fake).send(plain())

    assert not isinstance(excinfo.value, RateLimitedError)
    assert fake.messages == []


def test_429_carries_the_rate_limit_reset(fake: FakeSendGrid) -> None:
    fake.fail_next(1, 429, retry_after_s=30)
    before = datetime.now(UTC).timestamp()

    with pytest.raises(RateLimitedError) as excinfo:
        sendgrid(fake).send(plain())

    assert excinfo.value.retry_at is not None
    assert before + 29 <= excinfo.value.retry_at.timestamp() <= before + 32


def test_dropped_connection_is_transient(fake: FakeSendGrid) -> None:
    fake.drop_next(1)

    with pytest.raises(TransientSendError, match="network error: RemoteDisconnected"):
        sendgrid(fake).send(plain())

    assert sendgrid(fake).send(plain()).message_id  # the next request goes through


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: what a hung provider looks like."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_client_timeout_applies_to_every_request(silent_server: str) -> None:
    sender = SendGridSender("SG.key", host=silent_server, timeout_s=0.2)

    # The timeout is copied into the child clients the library builds per call.
    assert sender.client.client.mail.send.timeout == 0.2
    with pytest.raises(TransientSendError, match="network error: TimeoutError"):
        sender.send(plain())


def test_connection_refused_is_transient() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now

    with pytest.raises(TransientSendError, match="network error: URLError"):
        SendGridSender("SG.key", host=f"http://127.0.0.1:{port}", timeout_s=2).send(plain())


def test_build_skips_deliveries_that_are_no_longer_deliverable(world_factory: Callable[..., MailWorld]) -> None:
    import sqlalchemy as sa

    from event_pipeline.store.tables import participants

    world = world_factory(NAMES)
    world.enqueue()
    with world.engine.begin() as conn:
        conn.execute(sa.update(participants).where(participants.c.name == "김민준").values(email_status="bounced"))

    assert len(built(world)) == 2
