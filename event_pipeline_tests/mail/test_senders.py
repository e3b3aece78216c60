"""SendGrid on real messages: payload by the official helpers, sent over a pooled urllib3
connection to FakeSendGrid (plain HTTP and TLS); how each answer is classified. The outbox has
its own tests (test_outbox.py)."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from python_http_client.exceptions import BadRequestsError

from event_pipeline.mail.dispatch import DispatchAborted
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.outbox import MboxOutbox
from event_pipeline.mail.senders import (
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
    return messages.build_messages(world.engine, world.ctx(MboxOutbox(world.paths.outbox)), claimed)


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


def test_forbidden_means_the_sender_is_unavailable(fake: FakeSendGrid) -> None:
    fake.fail_next(1, 403)  # what SendGrid answers for an unverified sender identity

    with pytest.raises(SenderUnavailableError, match="HTTP 403"):
        sendgrid(fake).send(plain())


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

    sender = sendgrid(fake)
    with pytest.raises(TransientSendError, match="network error: RemoteDisconnected"):
        sender.send(plain())

    # The pool drops the dead connection: the same sender's next request goes through.
    assert sender.send(plain()).message_id
    assert len(fake.messages) == 1


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


def test_a_silent_server_times_out_on_every_request(silent_server: str) -> None:
    sender = SendGridSender("SG.key", host=silent_server, timeout_s=0.2)

    for _ in range(2):  # the read timeout holds for each request, not just the first
        started = time.monotonic()
        with pytest.raises(TransientSendError, match="network error: TimeoutError"):
            sender.send(plain())
        assert time.monotonic() - started < 5


def test_a_slow_answer_is_a_read_timeout_and_transient(fake: FakeSendGrid) -> None:
    sender = sendgrid(fake, timeout_s=0.3)
    fake.slow_next(1, 10)

    with pytest.raises(TransientSendError, match="network error: TimeoutError") as excinfo:
        sender.send(plain())

    assert not isinstance(excinfo.value, RateLimitedError)
    assert sender.send(plain()).message_id  # a fresh connection for the next message


def test_connection_refused_is_transient() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now

    with pytest.raises(TransientSendError, match="network error: ConnectionRefusedError"):
        SendGridSender("SG.key", host=f"http://127.0.0.1:{port}", timeout_s=2).send(plain())


def test_a_dispatch_reuses_one_connection_per_worker(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory([f"Person {i}" for i in range(100)])
    world.enqueue()
    # The first 8 sends are answered only once all 8 are on the wire at once, so 8 connections
    # are really open together; afterwards every send must ride one of them.
    fake.rendezvous(8)

    stats = messages.dispatch(
        world.engine,
        world.ctx(SendGridSender(fake.api_key, host=fake.host, timeout_s=15, pool_size=8), workers=8),
    )

    assert stats.sent == 100 and len(fake.messages) == 100
    assert fake.max_in_flight == 8
    assert fake.connections_total == 8


@pytest.fixture
def tls_fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(tls=True) as server:
        yield server


def test_tls_with_the_trust_from_ssl_cert_file(tls_fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", tls_fake.ca_file)
    sender = SendGridSender(tls_fake.api_key, host=tls_fake.host, timeout_s=5, pool_size=4)
    assert sender.url.startswith("https://")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: sender.send(plain(custom_args={"delivery_id": str(i)})), range(20)))

    assert len({r.message_id for r in results}) == 20
    assert sorted(int(custom_args(m.body)["delivery_id"]) for m in tls_fake.messages) == list(range(20))
    assert tls_fake.connections_total <= 4  # one handshake per pooled connection, not per message


def test_an_untrusted_certificate_means_the_sender_is_unavailable(
    tls_fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    with pytest.raises(SenderUnavailableError, match="TLS verification of the mail provider failed"):
        SendGridSender(tls_fake.api_key, host=tls_fake.host, timeout_s=5).send(plain())

    assert tls_fake.messages == []


def test_an_untrusted_certificate_stops_the_dispatch_and_costs_no_attempt(
    world_factory: Callable[..., MailWorld], tls_fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    world = world_factory(NAMES)
    world.enqueue()

    with pytest.raises(DispatchAborted, match="SSLCertVerificationError"):
        messages.dispatch(world.engine, world.ctx(SendGridSender(tls_fake.api_key, host=tls_fake.host), workers=2))

    rows = world.rows()
    assert len(rows) == 3 and tls_fake.messages == []
    # Put back, not failed: every delivery waits for the certificate to be fixed.
    assert all(r["status"] in ("queued", "awaiting_retry") and r["attempts"] == 0 for r in rows)


def test_build_skips_deliveries_that_are_no_longer_deliverable(world_factory: Callable[..., MailWorld]) -> None:
    import sqlalchemy as sa

    from event_pipeline.store.tables import participants

    world = world_factory(NAMES)
    world.enqueue()
    with world.engine.begin() as conn:
        conn.execute(sa.update(participants).where(participants.c.name == "김민준").values(email_status="bounced"))

    assert len(built(world)) == 2
