"""FakeSendGrid driven over HTTP and HTTPS by the real ``sendgrid`` client and by pooled urllib3."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any
from urllib.error import URLError

import pytest
import urllib3
from python_http_client.exceptions import (
    BadRequestsError,
    HTTPError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Attachment,
    ContentId,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    Mail,
)

from event_pipeline.mail.senders import sendgrid_client

from .sendgrid_server import INVALID_GRANT, MAX_BODY_BYTES, FakeSendGrid

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


Serve = Callable[..., FakeSendGrid]


@pytest.fixture(params=[False, True], ids=["http", "https"])
def serve(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Starts FakeSendGrids, over plain HTTP and over TLS, so every behaviour is checked on both.

    With TLS the clients (sendgrid, urllib, urllib3) trust the server only through
    SSL_CERT_FILE, which ``ssl.create_default_context()`` reads when a connection is made.
    """
    started: list[FakeSendGrid] = []

    def start(**kwargs: Any) -> FakeSendGrid:
        server = FakeSendGrid(tls=request.param, **kwargs).start()
        started.append(server)
        if server.tls:
            monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def fake(serve: Serve) -> FakeSendGrid:
    return serve()


def client_for(fake: FakeSendGrid, api_key: str | None = None) -> SendGridAPIClient:
    client = SendGridAPIClient(api_key=api_key or fake.api_key, host=fake.host)
    client.client.timeout = 5  # nothing may hang
    return client


def mail(**kwargs: Any) -> Mail:
    fields: dict[str, Any] = {
        "from_email": "events@example.com",
        "to_emails": "ada@example.org",
        "subject": "Your ticket",
        "plain_text_content": "Hello Ada",
        "html_content": "<p>Hello Ada</p>",
    }
    fields.update(kwargs)
    return Mail(**{k: v for k, v in fields.items() if v is not None})


def inline_logo(content_id: str | None) -> Mail:
    message = mail()
    attachment = Attachment(FileContent(PNG), FileName("logo.png"), FileType("image/png"), Disposition("inline"))
    if content_id is not None:
        attachment.content_id = ContentId(content_id)
    message.attachment = attachment
    return message


def status_of(client: SendGridAPIClient, body: Mail | dict[str, Any]) -> int:
    try:
        return int(client.send(body).status_code)
    except HTTPError as exc:
        return int(exc.status_code)


def inspect(fake: FakeSendGrid, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(fake.host + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw else response.status


def test_send_is_accepted_with_message_id(fake: FakeSendGrid) -> None:
    response = client_for(fake).send(mail())

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16,}", message_id)
    assert response.headers.get("X-RateLimit-Limit") is None  # no rate_limit configured
    [sent] = fake.messages
    assert sent.message_id == message_id and sent.api_key == fake.api_key
    assert sent.body["personalizations"][0]["to"] == [{"email": "ada@example.org"}]
    assert [c["type"] for c in sent.body["content"]] == ["text/plain", "text/html"]
    assert inspect(fake, "/__inspect/messages") == [{"message_id": message_id, "body": sent.body}]
    assert inspect(fake, "/__inspect/custom_args") == [{}]
    assert inspect(fake, "/__inspect/statuses") == {"202": 1}


def test_wrong_api_key_is_401_with_documented_body(fake: FakeSendGrid) -> None:
    with pytest.raises(UnauthorizedError) as excinfo:
        client_for(fake, api_key="SG.wrong").send(mail())

    assert excinfo.value.status_code == 401
    assert json.loads(excinfo.value.body) == {"errors": [{"message": INVALID_GRANT, "field": None, "help": None}]}
    assert fake.messages == []


TWO_RECIPIENTS = [{"to": [{"email": "ada@example.org"}], "cc": [{"email": "ADA@example.org"}]}]
INVALID_BODIES: dict[str, tuple[Callable[[], Any], list[str]]] = {
    "missing subject": (lambda: mail(subject=None), ["subject"]),
    "missing from": (lambda: mail(from_email=None), ["from"]),
    "custom_args not strings": (lambda: _with_custom_arg(mail(), "attempt", 3), ["custom_args.attempt"]),
    "inline attachment without content_id": (lambda: inline_logo(None), ["attachments.0.content_id"]),
    "bad recipient address": (
        lambda: {**mail().get(), "personalizations": [{"to": [{"email": "ada at example.org"}]}]},
        ["personalizations.0.to.0.email"],
    ),
    "html before plain text": (
        lambda: {
            **mail(plain_text_content=None).get(),
            "content": [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}],
        },
        ["content"],
    ),
    "several errors at once": (
        lambda: {"personalizations": [{"to": []}], "content": [{"type": "text/plain", "value": ""}]},
        ["personalizations.0.to", "from", "subject", "content.0.value"],
    ),
    "duplicate address across to and cc": (
        lambda: {**mail().get(), "personalizations": TWO_RECIPIENTS},
        ["personalizations.0"],
    ),
    "more than 1000 recipients": (
        lambda: {
            **mail().get(),
            "personalizations": [{"to": [{"email": f"p{i}@example.org"} for i in range(1001)]}],
        },
        ["personalizations"],
    ),
}


def _with_custom_arg(message: Mail, key: str, value: Any) -> Mail:
    message.custom_arg = CustomArg(key, value)
    return message


@pytest.mark.parametrize("case", list(INVALID_BODIES), ids=list(INVALID_BODIES))
def test_invalid_mail_is_400_naming_the_fields(fake: FakeSendGrid, case: str) -> None:
    build, expected_fields = INVALID_BODIES[case]

    with pytest.raises(BadRequestsError) as excinfo:
        client_for(fake).send(build())

    assert excinfo.value.status_code == 400
    errors = json.loads(excinfo.value.body)["errors"]
    assert [e["field"] for e in errors] == expected_fields
    for error in errors:
        assert set(error) == {"message", "field", "help"} and error["message"]
        assert error["help"].startswith("http://sendgrid.com/docs/")
    assert fake.messages == []


def test_custom_args_error_message_names_the_types(fake: FakeSendGrid) -> None:
    with pytest.raises(BadRequestsError) as excinfo:
        client_for(fake).send(_with_custom_arg(mail(), "attempt", 3))

    [error] = json.loads(excinfo.value.body)["errors"]
    assert error["message"] == "Invalid type. Expected: string, given: integer."


def test_subject_is_optional_with_personalization_subjects_or_template(fake: FakeSendGrid) -> None:
    client = client_for(fake)
    base = mail(subject=None).get()
    per_personalization = {
        **base,
        "personalizations": [{"to": [{"email": "a@example.org"}], "subject": "Hi"}],
    }
    templated = {"from": base["from"], "personalizations": base["personalizations"], "template_id": "d-0123"}

    assert status_of(client, per_personalization) == 202
    assert status_of(client, templated) == 202
    assert status_of(client, base) == 400


def test_inline_attachment_with_content_id_is_accepted(fake: FakeSendGrid) -> None:
    assert client_for(fake).send(inline_logo("logo")).status_code == 202

    [attachment] = fake.messages[0].body["attachments"]
    assert attachment == {
        "content": PNG,
        "filename": "logo.png",
        "type": "image/png",
        "disposition": "inline",
        "content_id": "logo",
    }


def test_payload_over_30_mb_is_413_and_server_keeps_working(fake: FakeSendGrid) -> None:
    client = client_for(fake)
    huge = mail()
    huge.attachment = Attachment(FileContent("A" * (31 * 1024 * 1024)), FileName("big.bin"))

    with pytest.raises(PayloadTooLargeError) as excinfo:
        client.send(huge)

    assert excinfo.value.status_code == 413
    assert json.loads(excinfo.value.body)["errors"][0]["message"]
    assert fake.messages == []
    assert client.send(mail()).status_code == 202


def test_rate_limit_answers_429_with_reset_in_the_future(serve: Serve) -> None:
    fake = serve(rate_limit=2, rate_window_s=60)
    client = client_for(fake)
    first, second = client.send(mail()), client.send(mail())
    with pytest.raises(TooManyRequestsError) as excinfo:
        client.send(mail())

    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert excinfo.value.status_code == 429
    assert json.loads(excinfo.value.body) == {"errors": [{"field": None, "message": "too many requests"}]}
    assert excinfo.value.headers["X-RateLimit-Remaining"] == "0"
    assert int(excinfo.value.headers["X-RateLimit-Reset"]) > time.time()
    assert len(fake.messages) == 2


def test_rate_limit_window_resets(serve: Serve) -> None:
    fake = serve(rate_limit=1, rate_window_s=0.3)
    client = client_for(fake)
    assert client.send(mail()).status_code == 202
    with pytest.raises(TooManyRequestsError) as refused:
        client.send(mail())
    # Waited on the server's own word, as a client should: the window it announced is over.
    reset = int(refused.value.headers["X-RateLimit-Reset"])
    wait_until(lambda: time.time() >= reset)

    assert status_of(client, mail()) == 202
    assert fake.statuses == Counter({202: 2, 429: 1})


def test_fail_next_answers_500_then_503_then_recovers(fake: FakeSendGrid) -> None:
    client = client_for(fake)
    fake.fail_next(1, 500)
    fake.fail_next(1, 503)

    with pytest.raises(InternalServerError):
        client.send(mail())
    with pytest.raises(ServiceUnavailableError):
        client.send(mail())
    assert client.send(mail()).status_code == 202

    assert fake.statuses == Counter({500: 1, 503: 1, 202: 1})
    assert len(fake.messages) == 1


def test_fail_next_429_sets_reset_from_retry_after(fake: FakeSendGrid) -> None:
    fake.fail_next(1, 429, retry_after_s=30)
    before = time.time()

    with pytest.raises(TooManyRequestsError) as excinfo:
        client_for(fake).send(mail())

    assert before + 29 <= int(excinfo.value.headers["X-RateLimit-Reset"]) <= time.time() + 31
    assert client_for(fake).send(mail()).status_code == 202


def test_drop_next_closes_the_connection_without_answer(fake: FakeSendGrid) -> None:
    client = client_for(fake)
    client.client.timeout = 60  # a silent server would surface as TimeoutError, asserted against below
    fake.drop_next(1)

    with pytest.raises((RemoteDisconnected, URLError, ConnectionError)) as excinfo:
        client.send(mail())

    # Closed, not timed out: the client sees the connection end, not a silence.
    assert not isinstance(excinfo.value, TimeoutError)
    assert not isinstance(getattr(excinfo.value, "reason", None), TimeoutError)
    assert client.send(mail()).status_code == 202
    assert fake.requests_total == 2 and fake.statuses == Counter({202: 1})


def test_fail_ratio_is_seeded_and_reproducible(serve: Serve) -> None:
    runs = []
    for _ in range(2):
        client = client_for(serve(fail_ratio=0.5, seed=7))
        runs.append([status_of(client, mail()) for _ in range(30)])

    assert runs[0] == runs[1]
    failures = [s for s in runs[0] if s != 202]
    assert 5 <= len(failures) <= 25
    assert set(failures) <= {429, 500, 503}


def test_suppression_lists_filter_by_time_and_page(fake: FakeSendGrid) -> None:
    for created, email in [(1000, "a@example.org"), (2000, "b@example.org"), (3000, "c@example.org")]:
        fake.add_bounce(email, created=created)
    fake.add_bounce("d@example.org", reason="blocked by policy", status="4.0.0", created=2000, kind="blocks")
    fake.add_bounce("e@example", reason="Bad Syntax", created=2000, kind="invalid_emails")
    suppression = client_for(fake).client.suppression

    def get(kind: str, **params: int) -> Any:
        return json.loads(suppression._(kind).get(query_params=params).body)

    window = get("bounces", start_time=1500, end_time=3000)
    assert window == [
        {"created": 2000, "email": "b@example.org", "reason": "550 5.1.1 unknown user", "status": "5.1.1"},
        {"created": 3000, "email": "c@example.org", "reason": "550 5.1.1 unknown user", "status": "5.1.1"},
    ]
    assert [b["email"] for b in get("bounces", end_time=1999)] == ["a@example.org"]
    assert [b["email"] for b in get("bounces", limit=1, offset=1)] == ["b@example.org"]
    assert [b["email"] for b in get("blocks")] == ["d@example.org"]
    assert get("invalid_emails") == [{"created": 2000, "email": "e@example", "reason": "Bad Syntax"}]
    with pytest.raises(UnauthorizedError):
        client_for(fake, api_key="SG.wrong").client.suppression.bounces.get()


def test_unknown_path_is_404_with_errors_body(fake: FakeSendGrid) -> None:
    with pytest.raises(NotFoundError) as excinfo:
        client_for(fake).client.no.such.endpoint.get()

    assert json.loads(excinfo.value.body)["errors"][0]["message"] == "not found"


def test_concurrent_sends_are_all_accepted_with_unique_ids(serve: Serve) -> None:
    fake = serve(latency_s=0.02)

    def send(i: int) -> str:
        response = client_for(fake).send(mail(to_emails=f"p{i}@example.org"))
        assert response.status_code == 202
        return str(response.headers["X-Message-Id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(send, range(200)))

    assert len(set(ids)) == 200
    assert {m.message_id for m in fake.messages} == set(ids)
    assert fake.statuses == Counter({202: 200})
    assert 1 <= fake.max_in_flight <= 16


def test_requests_are_handled_concurrently(fake: FakeSendGrid) -> None:
    # 16 requests that can only be answered once all 16 are inside the server at the same time:
    # a server handling one request at a time would answer them 503 when the rendezvous breaks.
    fake.rendezvous(16, timeout_s=30)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda i: status_of(client_for(fake), mail()), range(16)))
    after = status_of(client_for(fake), mail())  # the rendezvous applies to those 16 only

    assert statuses == [202] * 16 and after == 202
    assert fake.max_in_flight == 16


def test_a_broken_rendezvous_answers_503(fake: FakeSendGrid) -> None:
    fake.rendezvous(2, timeout_s=0.1)  # only one request will ever come

    assert status_of(client_for(fake), mail()) == 503
    assert fake.messages == []


def test_inspect_reset_over_http_clears_state(fake: FakeSendGrid) -> None:
    client_for(fake).send(mail())
    fake.add_bounce("a@example.org")

    assert inspect(fake, "/__inspect/reset", method="POST") == 204

    assert fake.messages == [] and fake.requests_total == 0 and fake.statuses == Counter()
    assert inspect(fake, "/__inspect/messages") == []
    assert json.loads(client_for(fake).client.suppression.bounces.get().body) == []


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def send_json(pool: urllib3.PoolManager, fake: FakeSendGrid, body: Any, **kwargs: Any) -> urllib3.BaseHTTPResponse:
    headers = {"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"}
    return pool.request("POST", fake.host + "/v3/mail/send", json=body, headers=headers, retries=False, **kwargs)


@pytest.fixture
def tls_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSendGrid]:
    with FakeSendGrid(tls=True) as server:
        monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)
        yield server


def test_project_client_sends_over_tls_trusting_only_ssl_cert_file(tls_fake: FakeSendGrid) -> None:
    client = sendgrid_client(tls_fake.api_key, host=tls_fake.host, timeout_s=5)

    response = client.send(mail())

    assert tls_fake.host.startswith("https://127.0.0.1:")
    assert response.status_code == 202 and len(tls_fake.messages) == 1
    folder = Path(tls_fake.ca_file).parent
    assert os.listdir(folder) == ["ca.pem"]  # the key was deleted as soon as it was loaded
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(tls_fake.ca_file).stat().st_mode) == 0o600
    tls_fake.stop()
    assert not folder.exists()


def test_certificate_passes_strict_verification_for_ip_and_name(tls_fake: FakeSendGrid) -> None:
    context = ssl.create_default_context(cafile=tls_fake.ca_file)
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default
    port = int(tls_fake.host.rsplit(":", 1)[1])

    for name in ("127.0.0.1", "localhost"):
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=name) as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="example.com")


def test_client_that_does_not_trust_the_certificate_is_refused(
    tls_fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    untrusting = sendgrid_client(tls_fake.api_key, host=tls_fake.host, timeout_s=5)

    with caplog.at_level(logging.INFO, logger="event_pipeline_tests.support.sendgrid_server"):
        with pytest.raises(URLError) as excinfo:
            untrusting.send(mail())
        with pytest.raises(RemoteDisconnected):  # plain HTTP to the TLS port: dropped too
            urllib.request.urlopen(tls_fake.host.replace("https", "http") + "/__inspect/statuses", timeout=5)
        wait_until(lambda: tls_fake.connections_open == 0)

    assert isinstance(excinfo.value.reason, ssl.SSLCertVerificationError)
    assert sum("TLS handshake failed" in r.getMessage() for r in caplog.records) == 2
    monkeypatch.setenv("SSL_CERT_FILE", tls_fake.ca_file)
    assert client_for(tls_fake).send(mail()).status_code == 202  # failed handshakes did not hurt the server
    assert tls_fake.statuses == Counter({202: 1})


def test_a_client_that_never_handshakes_holds_up_no_one(tls_fake: FakeSendGrid) -> None:
    port = int(tls_fake.host.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30):  # connects, then says nothing
        wait_until(lambda: tls_fake.connections_open == 1)

        # The handshake waits in that connection's thread, not in the accept loop.
        assert client_for(tls_fake).send(mail()).status_code == 202
        assert tls_fake.connections_total == 2


def test_client_env_lets_a_subprocess_send(tls_fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")  # the child gets it from client_env() alone
    code = (
        "import json, os, sys\n"
        "from event_pipeline.mail.senders import sendgrid_client\n"
        "client = sendgrid_client(os.environ['SENDGRID_API_KEY'], host=os.environ['SENDGRID_HOST'], timeout_s=10)\n"
        "print(client.client.mail.send.post(request_body=json.loads(sys.argv[1])).status_code)\n"
    )
    env = {**os.environ, **tls_fake.client_env()}

    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(mail().get())], env=env, capture_output=True, text=True, timeout=60
    )

    assert set(tls_fake.client_env()) == {"SENDGRID_HOST", "SSL_CERT_FILE", "SENDGRID_API_KEY"}
    assert (done.returncode, done.stdout.strip()) == (0, "202"), done.stderr
    assert len(tls_fake.messages) == 1


def test_pooled_client_reuses_its_connections(serve: Serve) -> None:
    fake = serve(latency_s=0.005)
    pool = urllib3.PoolManager(maxsize=16, block=True, timeout=30)
    body = mail().get()
    # The first 4 sends answer only once all 4 are in the server at once (a 503 otherwise):
    # concurrency shown by state, not by hoping 5 ms of latency overlaps on a loaded machine.
    fake.rendezvous(4, timeout_s=30)

    with ThreadPoolExecutor(max_workers=16) as workers:
        statuses = list(workers.map(lambda i: send_json(pool, fake, body).status, range(200)))

    assert statuses == [202] * 200
    assert 4 <= fake.connections_total <= 16  # the pooled connections were used at the same time
    report = pool.request("GET", fake.host + "/__inspect/connections").json()
    assert report["total"] == fake.connections_total  # the inspect request reused a pooled connection


def test_every_kind_of_answer_keeps_one_connection_in_step(serve: Serve) -> None:
    # One connection carries every reply path: if any answer were framed wrongly (missing
    # Content-Length, body left unread) the next one would be misparsed or need a new connection.
    fake = serve()
    pool = urllib3.PoolManager(maxsize=1, block=True, timeout=10)
    auth = {"Authorization": f"Bearer {fake.api_key}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: bytes | None = None, key: str | None = None) -> int:
        headers = {**auth, "Authorization": f"Bearer {key}"} if key else auth
        return pool.request(method, fake.host + path, body=body, headers=headers, retries=False).status

    valid = json.dumps(mail().get()).encode()
    fake.fail_next(1, 429, retry_after_s=5)
    fake.fail_next(1, 500)
    statuses = [
        call("POST", "/v3/mail/send", valid),  # 429
        call("POST", "/v3/mail/send", valid),  # 500
        call("POST", "/v3/mail/send", valid, key="SG.wrong"),
        call("POST", "/v3/mail/send", b"{not json"),
        call("POST", "/v3/mail/send", json.dumps({"personalizations": []}).encode()),
        call("POST", "/v3/mail/send", b"x" * (MAX_BODY_BYTES + 1)),
        call("GET", "/v3/mail/send"),
        call("POST", "/v3/nowhere", b"{}"),
        call("GET", "/v3/suppression/bounces?limit=x"),
        call("GET", "/v3/suppression/bounces"),
        call("POST", "/v3/mail/send", valid),
        call("GET", "/__inspect/statuses"),
    ]
    assert fake.connections_total == 1
    statuses += [call("POST", "/__inspect/reset"), call("GET", "/__inspect/messages")]

    assert statuses == [429, 500, 401, 400, 400, 413, 405, 404, 400, 200, 202, 200, 204, 200]
    assert fake.connections_total == 0  # reset() zeroes it, and nothing connected anew afterwards


@pytest.mark.parametrize(
    ("header", "value", "status"), [("Transfer-Encoding", "chunked", 411), ("Content-Length", "12x", 400)]
)
def test_a_body_of_unknown_length_is_refused_and_the_connection_closed(
    fake: FakeSendGrid, header: str, value: str, status: int
) -> None:
    url = urllib3.util.parse_url(fake.host)
    kind = http.client.HTTPSConnection if fake.tls else http.client.HTTPConnection
    connection = kind(str(url.host), url.port, timeout=5)
    connection.putrequest("POST", "/v3/mail/send")
    connection.putheader(header, value)
    connection.endheaders()  # and no body: the server must answer without knowing where it ends

    response = connection.getresponse()

    assert response.status == status and response.getheader("Connection") == "close"
    assert json.loads(response.read())["errors"][0]["message"] == "a body needs a valid Content-Length"
    wait_until(lambda: fake.connections_open == 0)  # the server closed its side
    connection.close()


def test_drop_next_on_a_pooled_connection_closes_that_connection(serve: Serve) -> None:
    fake = serve()
    pool = urllib3.PoolManager(maxsize=1, block=True, timeout=10)
    assert send_json(pool, fake, mail().get()).status == 202
    fake.drop_next(1)

    with pytest.raises(urllib3.exceptions.ProtocolError):
        send_json(pool, fake, mail().get())

    assert send_json(pool, fake, mail().get()).status == 202
    assert fake.connections_total == 2  # the dropped one was closed, the next send opened another
    assert fake.requests_total == 3 and fake.statuses == Counter({202: 2})


def test_slow_next_times_a_client_out_while_another_is_served(serve: Serve) -> None:
    fake = serve()
    fake.slow_next(1, 60)  # the test's end (stop) cuts this wait short
    pool = urllib3.PoolManager(maxsize=2, timeout=5)
    body = mail().get()

    with ThreadPoolExecutor(max_workers=1) as worker:
        slow = worker.submit(send_json, pool, fake, body, timeout=urllib3.Timeout(connect=5, read=0.5))
        wait_until(lambda: fake.requests_total == 1)  # the slow request is being held by the server
        quick = send_json(pool, fake, body, timeout=urllib3.Timeout(connect=5, read=5))
        with pytest.raises(urllib3.exceptions.ReadTimeoutError):
            slow.result()

    # Answered within 5 s although the slow request is held for 60: it did not wait behind it.
    assert quick.status == 202
    assert fake.statuses == Counter({202: 1})


def test_a_client_that_gave_up_leaves_the_server_quiet(serve: Serve, capsys: pytest.CaptureFixture[str]) -> None:
    fake = serve()
    fake.slow_next(1, 0.5)
    pool = urllib3.PoolManager(maxsize=1, timeout=5)

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        send_json(pool, fake, mail().get(), timeout=urllib3.Timeout(connect=5, read=0.1))
    # The server answers a client that is gone, then finds the connection closed.
    wait_until(lambda: fake.statuses == Counter({202: 1}) and fake.connections_open == 0)

    assert send_json(pool, fake, mail().get()).status == 202
    assert capsys.readouterr().err == ""  # socketserver prints handler tracebacks to stderr


def test_stop_closes_open_connections_and_leaves_no_thread(serve: Serve) -> None:
    before = set(threading.enumerate())
    fake = serve(latency_s=0.0)
    port = int(fake.host.rsplit(":", 1)[1])
    idle_pool, held_pool = urllib3.PoolManager(timeout=30), urllib3.PoolManager(timeout=30)
    assert send_json(idle_pool, fake, mail().get()).status == 202  # its connection now idles in the pool
    silent = socket.create_connection(("127.0.0.1", port), timeout=30)  # never sends (nor handshakes)
    fake.slow_next(1, 60)
    with ThreadPoolExecutor(max_workers=1) as worker:
        held = worker.submit(send_json, held_pool, fake, mail().get())  # waits in the server
        wait_until(lambda: fake.requests_total == 2 and fake.connections_open == 3)

        fake.stop()  # returns although every connection is busy or idle (pytest-timeout guards a hang)

        with pytest.raises(urllib3.exceptions.ProtocolError):
            held.result()
    assert silent.recv(1) == b""  # the server closed it
    silent.close()
    assert set(threading.enumerate()) - before == set()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    with pytest.raises(RuntimeError):
        _ = fake.host
