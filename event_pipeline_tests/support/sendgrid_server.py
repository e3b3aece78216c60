"""SendGrid v3-compatible HTTP(S) server for tests (``http.server``), spoken to by the real ``sendgrid`` client::

    with FakeSendGrid() as fake:
        SendGridAPIClient(api_key=fake.api_key, host=fake.host).send(mail)
        assert fake.messages[0].body["subject"] == "Hi"

``FakeSendGrid(tls=True)`` serves HTTPS with a certificate made at start (``support/tls.py``,
``cryptography``); clients trust it through ``SSL_CERT_FILE=fake.ca_file``, as they would a real
server, and ``fake.client_env()`` gives a subprocess everything it needs. Connections are HTTP/1.1
keep-alive: every answer is framed by Content-Length and every request body is read in full
first, so a pooled client's connection stays in step; ``connections_total`` counts accepted
TCP connections, which shows whether a client reused them.

Endpoints: ``POST /v3/mail/send``, ``GET /v3/suppression/{bounces,blocks,invalid_emails}``,
``GET /__inspect/messages``, ``GET /__inspect/custom_args``, ``GET /__inspect/statuses``,
``GET /__inspect/connections``, ``POST /__inspect/reset``.

Faults: ``fail_next`` (status codes, 429 with X-RateLimit-Reset), ``drop_next`` (connection
closed without an answer), ``drop_handshake_next`` (with TLS: a new connection closed in the
middle of its handshake, after the client's hello), ``cut_next`` (handled as usual, a valid
message accepted, then the connection closed after the status line and headers, before the body
they announce: a response dropped midway), ``slow_next`` (answer only after a delay, for client
read timeouts; the message is still accepted, as a provider would), ``reject`` (every send
carrying one ``delivery_id`` in its custom_args answers a given 4xx with a SendGrid-style errors
body), ``fail_ratio`` (seeded random 429/500/503), ``latency_s``, and ``rendezvous`` (the next n
sends answer only once all n are being handled at the same time, which proves concurrency
without measuring time). Delays wait on an event, never under a lock, so they overlap freely.
``wait_answered()`` waits until every API request received so far has been answered, dropped or
cut: a timed-out client does not wait for its slow request to be accepted, a test that counts
what arrived does. ``hold_answers(n)``: the next n accepted messages are recorded (and their
events queued) but their 202 waits until ``release_answers()``: a sender killed meanwhile never
learns that they were accepted.

Event Webhook: with ``events_url=``, every accepted message yields a signed ``processed`` event
per recipient (``support/sendgrid_events.py``: the message's custom_args at the top level,
``sg_event_id``, ``sg_message_id``, ``timestamp``, ``email``), POSTed in batches from the
poster's own thread, as SendGrid reports acceptance independently of whether our 202 reached the
client. ``events_public_key`` is the verification key; ``events.post(...)`` sends any batch at
once (bounces, duplicates, a tampered body, another key, a stale timestamp).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import random
import re
import secrets
import shutil
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import parse_qs, urlsplit

from .sendgrid_events import EventPoster, event_for, new_signing_key, public_key_b64
from .tls import server_context

MAX_BODY_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
SUPPRESSION_PAGE_MAX = 500
SUPPRESSION_KINDS = ("bounces", "blocks", "invalid_emails")
HELP_URL = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
INVALID_GRANT = "The provided authorization grant is invalid, expired, or revoked"
_NOT_EMAIL = r"@\s<>()\[\]\\,;:\""
_EMAIL_RE = re.compile(rf"^[^{_NOT_EMAIL}]+@[^{_NOT_EMAIL}.]+(\.[^{_NOT_EMAIL}.]+)+$")
_SUPPRESSION_RE = re.compile(r"/v3/suppression/(bounces|blocks|invalid_emails)")
_INDEX_RE = re.compile(r"\.\d+")  # personalizations.0.to -> personalizations.to (help anchors)
_INTEGER_RE = re.compile(r"-?\d+")


@dataclass
class SentMessage:
    message_id: str
    body: dict[str, Any]
    received_at: float
    api_key: str


_MESSAGES = {  # texts from SendGrid's "Mail Send errors" page
    "type": "Invalid type. Expected: {expected}, given: {given}.",
    "pers_required": "You must have at least one personalization.",
    "pers_max": "The personalization block is limited to 1000 personalizations per API request. You have"
    " provided {n} personalizations. Please consider splitting this into multiple requests and resending"
    " your request.",
    "recipients_max": "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
    "to_required": "The to array is required for all personalization objects, and must have at least one"
    " email object with a valid email address.",
    "list_empty": "The {kind} array must have at least one email object with a valid email address.",
    "address": "Does not contain a valid address.",
    "duplicate": "Each email address in the personalization block should be unique between to, cc, and bcc."
    " We found the first duplicate instance of [{email}] in the {where} field.",
    "from": "The from object must be provided for every email send. It is an object that requires the email"
    " parameter, but may also contain a name parameter.",
    "subject": "The subject is required. You can get around this requirement if you use a template with a"
    " subject defined or if every personalization has a subject defined.",
    "content": "Unless a valid template_id is provided, the content parameter is required. There must be at"
    " least one defined content block.",
    "content_type": "The content type must be a string at least one character in length.",
    "content_value": "The content value must be a string at least one character in length.",
    "content_order": "If present, text/plain content must be first, followed by text/html, followed by any"
    " other content.",
    "att_content": "The attachment content is required.",
    "att_base64": "The attachment content must be base64 encoded.",
    "att_filename": "The attachment filename parameter is required.",
    "att_disposition": 'The disposition of your attachment can be either "inline" or "attachment".',
    "att_content_id": "The content_id parameter is required if your attachment is inline",
}


def _err(message: str, field: str | None, help_url: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": help_url}


def _type_name(value: Any) -> str:
    names = [(bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array")]
    return "null" if value is None else next((n for t, n in names if isinstance(value, t)), "object")


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value != ""


def _is_email(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and _EMAIL_RE.match(value) is not None


class _Validator:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def add(self, key: str, field: str | None, **fmt: Any) -> None:
        anchor = HELP_URL + _INDEX_RE.sub("", field) if field else None
        self.errors.append(_err(_MESSAGES[key].format(**fmt), field, anchor))

    def typed(self, value: Any, expected: type, field: str | None) -> bool:
        if not isinstance(value, expected):
            self.add("type", field, expected=_type_name(expected()), given=_type_name(value))
        return isinstance(value, expected)

    def custom_args(self, value: Any, field: str) -> None:
        if self.typed(value, dict, field):
            for key, item in value.items():
                self.typed(item, str, f"{field}.{key}")

    def personalizations(self, pers: list[Any]) -> None:
        recipients = 0
        for i, p in enumerate(pers):
            if not self.typed(p, dict, field := f"personalizations.{i}"):
                continue
            seen: set[str] = set()
            for kind in ("to", "cc", "bcc"):
                addrs = p.get(kind)
                if not isinstance(addrs, list) or not addrs:
                    if kind == "to" or addrs is not None:
                        self.add("to_required" if kind == "to" else "list_empty", f"{field}.{kind}", kind=kind)
                    continue
                recipients += len(addrs)
                for j, addr in enumerate(addrs):
                    email = addr.get("email") if isinstance(addr, dict) else None
                    if not _is_email(email):
                        self.add("address", f"{field}.{kind}.{j}.email")
                    elif email.lower() in seen:
                        self.add("duplicate", field, email=email, where=f"{field}.{kind}")
                    seen.add(str(email).lower())
            if "custom_args" in p:
                self.custom_args(p["custom_args"], f"{field}.custom_args")
        if recipients > MAX_RECIPIENTS:
            self.add("recipients_max", "personalizations")

    def content(self, content: Any) -> None:
        ranks = []
        for i, item in enumerate(content if self.typed(content, list, "content") else []):
            if self.typed(item, dict, f"content.{i}"):
                ctype = item.get("type")
                if not _text(ctype):
                    self.add("content_type", f"content.{i}.type")
                if not _text(item.get("value")):
                    self.add("content_value", f"content.{i}.value")
                ranks.append({"text/plain": 0, "text/html": 1}.get(ctype, 2) if isinstance(ctype, str) else 2)
        if ranks != sorted(ranks):
            self.add("content_order", "content")

    def attachments(self, attachments: Any) -> None:
        for i, att in enumerate(attachments if self.typed(attachments, list, "attachments") else []):
            if not self.typed(att, dict, field := f"attachments.{i}"):
                continue
            if not _text(content := att.get("content")):
                self.add("att_content", f"{field}.content")
            else:
                try:
                    base64.b64decode(content, validate=True)
                except (binascii.Error, ValueError):
                    self.add("att_base64", f"{field}.content")
            if not _text(att.get("filename")):
                self.add("att_filename", f"{field}.filename")
            disposition = att.get("disposition", "attachment")
            if disposition not in ("inline", "attachment"):
                self.add("att_disposition", f"{field}.disposition")
            elif disposition == "inline" and not _text(att.get("content_id")):
                self.add("att_content_id", f"{field}.content_id")


def validate_mail(body: Any) -> list[dict[str, Any]]:
    """Return SendGrid-style error objects ``{message, field, help}`` for a mail/send body ([] if valid)."""
    v = _Validator()
    if not v.typed(body, dict, None):
        return v.errors
    templated = _text(body.get("template_id"))
    pers = body.get("personalizations")
    if not isinstance(pers, list) or not pers:
        v.add("pers_required", "personalizations")
        pers = []
    elif len(pers) > MAX_PERSONALIZATIONS:
        v.add("pers_max", "personalizations", n=len(pers))
    v.personalizations(pers)
    sender = body.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        v.add("from", "from")
    elif not _is_email(sender["email"]):
        v.add("address", "from.email")
    every_pers_subject = bool(pers) and all(isinstance(p, dict) and _text(p.get("subject")) for p in pers)
    if not templated and not _text(body.get("subject")) and not every_pers_subject:
        v.add("subject", "subject")
    if body.get("content") not in (None, []):
        v.content(body["content"])
    elif not templated:
        v.add("content", "content")
    if "attachments" in body:
        v.attachments(body["attachments"])
    if "custom_args" in body:
        v.custom_args(body["custom_args"], "custom_args")
    reply_to = body.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict) and _is_email(reply_to.get("email"))):
        v.add("address", "reply_to.email")
    return v.errors


def _errors_body(message: str, field: str | None = None) -> dict[str, Any]:
    return {"errors": [{"field": field, "message": message}]}


_Reply = tuple[int, Any, dict[str, str]]  # status, JSON payload (None: empty body), headers
_log = logging.getLogger(__name__)
HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 30.0  # an idle keep-alive connection is closed after this


class _Server(ThreadingHTTPServer):
    # Handler threads are started, tracked and joined here (process_request, FakeSendGrid.stop),
    # so stop() can bound the wait; ThreadingMixIn's own bookkeeping is not used.
    daemon_threads, block_on_close, request_queue_size = True, False, 1024
    fake: FakeSendGrid
    ssl_context: ssl.SSLContext | None = None

    def server_bind(self) -> None:  # HTTPServer.server_bind calls getfqdn(), slow without DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.ssl_context is None:
            return sock, address
        try:  # no I/O yet: the handshake runs in the connection's own thread (finish_request)
            return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address
        except OSError:
            sock.close()
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        fake = self.fake
        with fake._lock:
            fake._connections_total += 1
            name = f"fake-sendgrid-conn-{fake._connections_total}"
            thread = threading.Thread(
                target=self.process_request_thread, args=(request, client_address), name=name, daemon=True
            )
            fake._conns[request] = thread
        thread.start()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            if self.fake._take_handshake_drop():
                # The client's hello is read first: closing on unread data would send a reset,
                # not the orderly close (FIN) mid-handshake this fault is about.
                with contextlib.suppress(OSError):
                    request.settimeout(HANDSHAKE_TIMEOUT_S)
                    socket.socket.recv(request, 1 << 16)
                    socket.socket.shutdown(request, socket.SHUT_WR)
                return
            try:
                request.settimeout(HANDSHAKE_TIMEOUT_S)
                request.do_handshake()
            except OSError as exc:  # SSLError is one: untrusted certificate, plain HTTP, client gone
                _log.info("FakeSendGrid: TLS handshake failed, connection dropped: %s", exc)
                return
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        # Forget it before closing it: stop() shuts down only sockets still listed, under the
        # lock, so it never touches a closed socket whose file descriptor was reused.
        with self.fake._lock:
            self.fake._conns.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # client went away / timed out / stop()
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    _cut = False  # this request's answer stops after its headers (cut_next)
    protocol_version, timeout = "HTTP/1.1", IDLE_TIMEOUT_S
    # Headers and body leave in one write (flushed by handle_one_request), and without Nagle's
    # delay: a small answer split in two writes would otherwise wait for the client's delayed ACK.
    wbufsize, disable_nagle_algorithm = -1, True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_expect_100(self) -> bool:
        answered = super().handle_expect_100()
        self.wfile.flush()  # the client waits for this before it sends the body
        return answered

    def do_GET(self) -> None:
        self._cut = False
        url = urlsplit(self.path)
        api = not url.path.startswith("/__inspect/")
        length = self._content_length()
        if length is None:  # the body's end is unknown, so this connection cannot carry another request
            status = HTTPStatus.LENGTH_REQUIRED if "Transfer-Encoding" in self.headers else HTTPStatus.BAD_REQUEST
            self._send(status, _errors_body("a body needs a valid Content-Length"), {"Connection": "close"}, api)
            return
        raw = self._read_body(length)
        if raw is None:  # the client left mid-body
            self.close_connection = True
            return
        if not api:
            self._send(*self._inspect(url.path), record=False)
            return
        try:
            reply = self._api(url.path.rstrip("/"), url.query, raw, length)
            if reply is None:  # drop_next: close the connection without answering
                self.close_connection = True
            else:
                self._send(*reply, record=True)
        finally:
            self.server.fake._answered()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _content_length(self) -> int | None:
        if "Transfer-Encoding" in self.headers:
            return None  # SendGrid's clients always send Content-Length; chunked is not spoken here
        value = self.headers.get("Content-Length")
        if value is None:
            return 0
        value = value.strip()
        return int(value) if value.isascii() and value.isdigit() else None

    def _read_body(self, length: int) -> bytes | None:
        if length <= MAX_BODY_BYTES:
            raw = self.rfile.read(length) if length > 0 else b""
            return raw if len(raw) == length else None
        while length > 0:  # drain oversized bodies so the client reads the 413 instead of a reset
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return None
            length -= len(chunk)
        return b""

    def _send(self, status: int, payload: Any, headers: dict[str, str], record: bool) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        if self._cut:  # cut_next: the head announces a body that never comes
            data = data or b"{}"
        if record:
            with self.server.fake._lock:
                self.server.fake._statuses[status] += 1
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != HTTPStatus.NO_CONTENT:  # RFC 9110 8.6: a 204 carries no Content-Length
            self.send_header("Content-Length", str(len(data)))
        if data:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        if self._cut:
            self.close_connection = True
        elif data:
            self.wfile.write(data)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server.fake.api_key}"

    def _api(self, path: str, query: str, raw: bytes, length: int) -> _Reply | None:
        fake = self.server.fake
        with fake._lock:
            fake._requests_total += 1
            drop, fake._drops = fake._drops > 0, max(0, fake._drops - 1)
            cut = not drop and fake._cuts > 0
            fake._cuts -= cut
            delay = fake._slow.popleft() if fake._slow and not (drop or cut) else 0.0  # one fault each
        self._cut = cut
        if drop:
            return None
        match = _SUPPRESSION_RE.fullmatch(path)
        if path != "/v3/mail/send" and match is None:
            return 404, _errors_body("not found"), {}
        if self.command != ("POST" if match is None else "GET"):
            return 405, _errors_body("method not allowed"), {}
        if (wait := delay + fake.latency_s) > 0:
            fake._stopping.wait(wait)  # an event, not a lock: every request waits in parallel
        return self._mail_send(raw, length) if match is None else self._suppressions(match.group(1), query)

    def _mail_send(self, raw: bytes, length: int) -> _Reply:
        fake = self.server.fake
        with fake._lock:
            fake._in_flight += 1
            fake._max_in_flight = max(fake._max_in_flight, fake._in_flight)
        try:
            if not fake._meet():
                return 503, _errors_body("rendezvous broken: requests were not concurrent"), {}
            return self._mail_send_checked(raw, length)
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _mail_send_checked(self, raw: bytes, length: int) -> _Reply:
        fake = self.server.fake
        _, rate_headers = fake._rate(consume=False)
        if length > MAX_BODY_BYTES:
            msg = "The JSON payload you have included in your request is too large."
            return 413, _errors_body(msg), rate_headers
        failure = fake._take_failure()
        if failure is not None and failure[0] == 429:
            reset = time.time() + (fake.rate_window_s if failure[1] is None else failure[1])
            rate_headers["X-RateLimit-Remaining"] = "0"
            rate_headers["X-RateLimit-Reset"] = str(math.ceil(reset))
            return 429, _errors_body("too many requests"), rate_headers
        if failure is not None:
            return failure[0], _errors_body(HTTPStatus(failure[0]).phrase.lower()), rate_headers
        if not self._authorized():
            return 401, {"errors": [_err(INVALID_GRANT, None)]}, rate_headers
        allowed, rate_headers = fake._rate(consume=True)
        if not allowed:
            return 429, _errors_body("too many requests"), rate_headers
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {"errors": [_err("Bad Request", None)]}, rate_headers
        if (rejection := fake._rejection(body)) is not None:
            return rejection[0], {"errors": rejection[1]}, rate_headers
        if errors := validate_mail(body):
            return 400, {"errors": errors}, rate_headers
        message_id = secrets.token_urlsafe(16)
        with fake._lock:
            fake._messages.append(SentMessage(message_id, body, time.time(), fake.api_key))
            index = len(fake._messages)
            hold = fake._holds > 0
            fake._holds -= hold
            fake._held += hold
            fake._all_answered.notify_all()
        if fake.events is not None:
            fake.events.enqueue(event_for("processed", message_id, body, index=index))
        if hold:
            fake._answers_released.wait()
        return 202, None, {**rate_headers, "X-Message-Id": message_id}

    def _suppressions(self, kind: str, query: str) -> _Reply:
        if not self._authorized():
            return 401, {"errors": [_err(INVALID_GRANT, None)]}, {}
        params = {k: v[-1] for k, v in parse_qs(query).items() if k in ("start_time", "end_time", "limit", "offset")}
        if bad := [k for k, v in params.items() if not _INTEGER_RE.fullmatch(v)]:
            return 400, _errors_body(f"{bad[0]} must be an integer", bad[0]), {}
        limit = min(int(params.get("limit", SUPPRESSION_PAGE_MAX)), SUPPRESSION_PAGE_MAX)
        offset = int(params.get("offset", 0))
        if limit < 1 or offset < 0:
            return (
                400,
                _errors_body("limit must be >= 1, offset >= 0", "limit" if limit < 1 else "offset"),
                {},
            )
        start, end = int(params.get("start_time", -(2**63))), int(params.get("end_time", 2**63))
        with self.server.fake._lock:
            rows = [dict(r) for r in self.server.fake._suppressions[kind] if start <= r["created"] <= end]
        return 200, rows[offset : offset + limit], {}

    def _inspect(self, path: str) -> _Reply:
        fake = self.server.fake
        if path == "/__inspect/messages" and self.command == "GET":
            return 200, [{"message_id": m.message_id, "body": m.body} for m in fake.messages], {}
        if path == "/__inspect/custom_args" and self.command == "GET":  # small enough for 100k messages
            return 200, [m.body.get("custom_args", {}) for m in fake.messages], {}
        if path == "/__inspect/statuses" and self.command == "GET":
            return 200, {str(k): v for k, v in fake.statuses.items()}, {}
        if path == "/__inspect/connections" and self.command == "GET":
            return 200, {"total": fake.connections_total, "open": fake.connections_open}, {}
        if path == "/__inspect/reset" and self.command == "POST":
            fake.reset()
            return 204, None, {}
        return 404, _errors_body("not found"), {}


class FakeSendGrid:
    """SendGrid v3 stand-in on 127.0.0.1 (random port); see the module docstring."""

    _window_start: float
    _rendezvous: tuple[threading.Barrier, int] | None
    _cuts: int
    _handshake_drops: int
    _answered_total: int
    _holds: int
    _held: int

    def __init__(
        self,
        api_key: str = "SG.test-key",
        *,
        tls: bool = False,
        rate_limit: int | None = None,
        rate_window_s: float = 1.0,
        latency_s: float = 0.0,
        fail_ratio: float = 0.0,
        seed: int = 0,
        events_url: str | None = None,
        events_key: Any = None,
    ) -> None:
        self.api_key, self.tls, self.rate_limit, self.rate_window_s = api_key, tls, rate_limit, rate_window_s
        self.events_url, self.events_key = events_url, events_key or new_signing_key()
        self.events: EventPoster | None = None
        self._answers_released = threading.Event()
        self.latency_s, self.fail_ratio, self.seed = latency_s, fail_ratio, seed
        self._lock, self._stopping = threading.Lock(), threading.Event()
        self._all_answered = threading.Condition(self._lock)
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self._ca_file: Path | None = None
        self.reset()

    @property
    def host(self) -> str:
        """``http(s)://127.0.0.1:PORT`` (no ``/v3``: the client appends it); valid after start()."""
        if self._server is None:
            raise RuntimeError("FakeSendGrid is not started")
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_port}"

    @property
    def ca_file(self) -> str:
        """The server's certificate (PEM), for ``SSL_CERT_FILE``; valid after start() with tls=True."""
        if self._ca_file is None:
            raise RuntimeError("FakeSendGrid has no certificate: not started, or tls=False")
        return str(self._ca_file)

    def client_env(self) -> dict[str, str]:
        """Environment for a subprocess that sends here: host, API key and, with TLS, the trust."""
        env = {"SENDGRID_HOST": self.host, "SENDGRID_API_KEY": self.api_key}
        if self.tls:
            env["SSL_CERT_FILE"] = self.ca_file
        return env

    def start(self) -> FakeSendGrid:
        if self._server is not None:
            raise RuntimeError("FakeSendGrid already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        if self.tls:
            self._tmp = Path(tempfile.mkdtemp(prefix="fake-sendgrid-"))
            server.ssl_context, self._ca_file = server_context(self._tmp)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-sendgrid-accept", daemon=True
        )
        self._thread.start()
        if self.events_url is not None:
            self.events = EventPoster(self.events_url, self.events_key).start()
        return self

    @property
    def events_public_key(self) -> str:
        """The Event Webhook's verification key for ``events_key`` (SENDGRID_WEBHOOK_PUBLIC_KEY)."""
        return public_key_b64(self.events_key)

    def hold_answers(self, n: int) -> None:
        """The next ``n`` accepted messages are recorded, their events queued, and their 202
        withheld until ``release_answers()`` (or stop())."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._holds += n
            self._answers_released.clear()

    def release_answers(self) -> None:
        self._answers_released.set()

    def wait_held(self, n: int, timeout_s: float = 10.0) -> None:
        """Until ``n`` messages are accepted with their answers held; TimeoutError otherwise."""
        with self._lock:
            if not self._all_answered.wait_for(lambda: self._held >= n, timeout_s):
                raise TimeoutError(f"{self._held} of {n} answers held")

    def wait_messages(self, n: int, timeout_s: float = 10.0) -> None:
        """Until at least ``n`` messages are accepted; TimeoutError otherwise."""
        with self._lock:
            if not self._all_answered.wait_for(lambda: len(self._messages) >= n, timeout_s):
                raise TimeoutError(f"{len(self._messages)} of {n} messages accepted")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close every open connection and wait (up to ``timeout_s``) for its thread."""
        server, thread, deadline = self._server, self._thread, time.monotonic() + timeout_s
        if server is None or thread is None:
            return
        server.shutdown()  # the accept loop has ended when this returns: no new connections
        self._answers_released.set()  # held answers go out (to whoever is still listening)
        with self._lock:
            threads = list(self._conns.values())
            for conn in self._conns:  # wakes handlers blocked reading (idle keep-alive, handshake)
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown: SSLSocket.shutdown would also drop its TLS
                    # state under the feet of the handler thread still using it.
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)
            if self._rendezvous is not None:
                self._rendezvous[0].abort()  # wakes handlers waiting for a rendezvous
        # Wakes handlers sleeping in latency_s / slow_next, after their connections are shut, so a
        # request in flight at stop() always sees its connection closed, never a late answer.
        self._stopping.set()
        for handler in threads:
            handler.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        thread.join(max(0.0, deadline - time.monotonic()))
        if self.events is not None:
            self.events.stop(max(0.0, deadline - time.monotonic()))
            self.events = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._server = self._thread = None
        self._tmp = self._ca_file = None

    def __enter__(self) -> FakeSendGrid:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next(self, n: int, status: int = 500, *, retry_after_s: float | None = None) -> None:
        """The next ``n`` mail/send calls answer ``status``; 429 sets X-RateLimit-Reset=now+retry_after_s."""
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status a 4xx/5xx code")
        with self._lock:
            self._failures.extend([(status, retry_after_s)] * n)

    def drop_next(self, n: int) -> None:
        """The next ``n`` API requests are read, then their connection is closed without an answer."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._drops += n

    def drop_handshake_next(self, n: int) -> None:
        """With TLS, the next ``n`` new connections are closed in the middle of the handshake
        (the client's hello read, nothing answered): no request is ever read from them."""
        if n < 0 or not self.tls:
            raise ValueError("n must be >= 0, and the server must speak TLS")
        with self._lock:
            self._handshake_drops += n

    def _take_handshake_drop(self) -> bool:
        with self._lock:
            drop, self._handshake_drops = self._handshake_drops > 0, max(0, self._handshake_drops - 1)
        return drop

    def cut_next(self, n: int) -> None:
        """The next ``n`` API requests are handled as usual (a valid mail/send is accepted and
        recorded), then the answer stops after its status line and headers, which announce a
        body: the connection closes before it. A response dropped midway."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._cuts += n

    def reject(self, delivery_id: int | str, status: int = 400, errors: list[dict[str, Any]] | None = None) -> None:
        """Every mail/send whose custom_args carry ``delivery_id`` answers ``status`` (a 4xx) with
        ``{"errors": errors}``, until reset(). By default a 400 is SendGrid's duplicate-recipient
        error, which quotes the recipient's address, and a 413 its payload-too-large error."""
        if not 400 <= status <= 499:
            raise ValueError("status must be a 4xx code")
        with self._lock:
            self._rejections[str(delivery_id)] = (status, errors)

    def _rejection(self, body: Any) -> tuple[int, list[dict[str, Any]]] | None:
        args = body.get("custom_args") if isinstance(body, dict) else None
        with self._lock:
            rule = self._rejections.get(str(args.get("delivery_id"))) if isinstance(args, dict) else None
        if rule is None:
            return None
        status, errors = rule
        if errors is not None:
            return status, errors
        if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
            return status, [_err("The JSON payload you have included in your request is too large.", None)]
        if status == HTTPStatus.BAD_REQUEST:
            try:
                email = body["personalizations"][0]["to"][0]["email"]
            except (KeyError, IndexError, TypeError):
                email = ""
            where = "personalizations.0.to"
            message = _MESSAGES["duplicate"].format(email=email, where=where)
            return status, [_err(message, "personalizations.0", HELP_URL + "personalizations")]
        return status, [_err(HTTPStatus(status).phrase, None)]

    def _answered(self) -> None:
        with self._lock:
            self._answered_total += 1
            self._all_answered.notify_all()

    def wait_answered(self, timeout_s: float = 10.0) -> None:
        """Wait until every API request received so far has been answered, dropped or cut (slow
        ones included, whose client may have given up long ago); TimeoutError if that takes longer."""
        with self._lock:
            if not self._all_answered.wait_for(lambda: self._answered_total >= self._requests_total, timeout_s):
                raise TimeoutError(f"{self._requests_total - self._answered_total} API request(s) still unanswered")

    def slow_next(self, n: int, seconds: float) -> None:
        """The next ``n`` API requests (not dropped or cut ones: one fault per request) answer only
        after ``seconds`` (on top of ``latency_s``); other requests are not held up. stop() cuts
        the wait short."""
        if n < 0 or seconds < 0:
            raise ValueError("n and seconds must be >= 0")
        with self._lock:
            self._slow.extend([seconds] * n)

    def rendezvous(self, n: int, timeout_s: float = 10.0) -> None:
        """The next ``n`` mail/send calls each wait until all ``n`` are being handled at once, then
        proceed; if that does not happen within ``timeout_s`` they answer 503 instead."""
        if n < 1:
            raise ValueError("n must be >= 1")
        with self._lock:
            self._rendezvous = (threading.Barrier(n, timeout=timeout_s), n)

    def _meet(self) -> bool:
        with self._lock:
            if self._rendezvous is None:
                return True
            barrier, left = self._rendezvous
            self._rendezvous = (barrier, left - 1) if left > 1 else None
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return False
        return True

    @property
    def max_in_flight(self) -> int:
        """Most mail/send requests that were being handled at the same moment."""
        with self._lock:
            return self._max_in_flight

    @property
    def connections_total(self) -> int:
        """TCP connections accepted (any path, failed TLS handshakes included) since start/reset."""
        with self._lock:
            return self._connections_total

    @property
    def connections_open(self) -> int:
        """Connections whose handler thread has not finished yet."""
        with self._lock:
            return len(self._conns)

    def _take_failure(self) -> tuple[int, float | None] | None:
        with self._lock:
            if self._failures:
                return self._failures.popleft()
            if self.fail_ratio > 0 and self._rng.random() < self.fail_ratio:
                return self._rng.choice((429, 500, 503)), None
        return None

    def _rate(self, *, consume: bool) -> tuple[bool, dict[str, str]]:
        """Fixed window of ``rate_window_s`` seconds; returns (allowed, X-RateLimit-* headers)."""
        if (limit := self.rate_limit) is None:
            return True, {}
        with self._lock:
            if (now := time.time()) >= self._window_start + self.rate_window_s:
                self._window_start, self._window_count = now, 0
            allowed = self._window_count < limit
            self._window_count += allowed and consume
            reset = math.ceil(self._window_start + self.rate_window_s)
            values = (limit, max(0, limit - self._window_count), reset)
        names = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
        return allowed, {name: str(value) for name, value in zip(names, values, strict=True)}

    @property
    def messages(self) -> list[SentMessage]:
        """Snapshot (a copy, taken under the lock) of the accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def requests_total(self) -> int:
        """API requests received (``/__inspect/*`` excluded, dropped ones included)."""
        with self._lock:
            return self._requests_total

    @property
    def statuses(self) -> Counter[int]:
        """Snapshot of API response status counts (dropped requests have none)."""
        with self._lock:
            return Counter(self._statuses)

    def add_bounce(
        self,
        email: str,
        reason: str = "550 5.1.1 unknown user",
        status: str = "5.1.1",
        created: int | None = None,
        kind: str = "bounces",
    ) -> None:
        """Add an entry to a suppression list: ``bounces``, ``blocks`` or ``invalid_emails``."""
        if kind not in SUPPRESSION_KINDS:
            raise ValueError(f"kind must be one of {SUPPRESSION_KINDS}")
        row = {"created": int(time.time() if created is None else created), "email": email, "reason": reason}
        if kind != "invalid_emails":  # SendGrid's invalid_emails entries have no status
            row["status"] = status
        with self._lock:
            self._suppressions[kind].append(row)

    def reset(self) -> None:
        """Forget messages, counters (connections_total too), suppressions, pending faults and the rate
        window; the configuration is kept."""
        with self._lock:
            self._messages: list[SentMessage] = []
            self._statuses: Counter[int] = Counter()
            self._suppressions: dict[str, list[dict[str, Any]]] = {k: [] for k in SUPPRESSION_KINDS}
            self._failures: deque[tuple[int, float | None]] = deque()
            self._slow: deque[float] = deque()
            self._requests_total = self._drops = self._window_count = self._connections_total = 0
            self._cuts = self._answered_total = self._handshake_drops = 0
            self._holds = self._held = 0
            self._rejections: dict[str, tuple[int, list[dict[str, Any]] | None]] = {}
            self._in_flight = self._max_in_flight = 0
            self._rendezvous = None
            self._window_start = 0.0
            self._rng = random.Random(self.seed)
