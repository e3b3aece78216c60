"""Welcome-email throughput over TLS and delivery under failures: ``bench_email()``.

Sends ``n`` welcome emails (real templates, a QR rendered into each, the payload built by the
``sendgrid`` package) to the SendGrid-compatible stand-in, which runs in its own process with
TLS (trusted through ``SSL_CERT_FILE``, as the real endpoint is through the system store),
``latency_s`` per request and ``fail_ratio`` of requests answered 429/500/503 at random. Retries
are driven by running the dispatcher's clock ahead instead of waiting hours, exactly as the
``send_due_emails`` schedule would pick them up.

Side by side in one run: our path (pooled keep-alive HTTPS, ``processes`` dispatchers), the
naive path (the official client, python_http_client, a new connection and TLS handshake per
request) on a slice of the same queue, and the floor (a prebuilt body POSTed over the same pool:
the stand-in plus TLS plus latency, no message building), over as many connections as our path
has in flight (``workers`` x ``processes``): with 50 ms latency a pool of ``workers`` alone caps
at ``workers / 0.05`` per second, so a smaller floor would not be one. CPU seconds of the client
and of the stand-in are reported so the rate on dedicated cores can be stated.

Run as a module (``python -m bench.email``): run as a script, this file would shadow the
standard library's ``email`` package.
"""

from __future__ import annotations

import base64
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import ssl
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import sqlalchemy as sa
import urllib3
import zxingcpp
from PIL import Image
from python_http_client.exceptions import HTTPError

from event_pipeline import settings
from event_pipeline.access.tokens import TokenCodec
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.senders import (
    SendGridSender,
    SendResult,
    TransientSendError,
    classify_http_error,
    sendgrid_client,
)
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import tokens as tokens_store
from event_pipeline.store.db import dispose_engines, make_engine
from event_pipeline.store.events import create_event
from event_pipeline.store.migrate import upgrade
from event_pipeline.store.participants import load_participants
from event_pipeline.store.tables import email_deliveries

TARGET_SENDS_PER_S = 600.0
TARGET_RATIO_TO_NAIVE = 5.0
TARGET_DELIVERED = 0.995
MAX_ROUNDS = 6
BASE_URL = "https://checkin.example.test/t/"
SECRET = "b" * 40


class OfficialClientSender:
    """The path before this bench's change, kept here for the naive column: the official
    client's python_http_client (urllib), one new connection per request."""

    name = "sendgrid"
    idempotent = False

    def __init__(self, api_key: str, *, host: str, timeout_s: float = 15.0) -> None:
        self.client = sendgrid_client(api_key, host=host, timeout_s=timeout_s)

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            response = self.client.client.mail.send.post(request_body=SendGridSender.payload(message))
        except HTTPError as exc:
            raise classify_http_error(exc.status_code, exc.headers, exc.body) from None
        except (OSError, HTTPException) as exc:
            raise TransientSendError(f"network error: {type(exc).__name__}") from None
        return SendResult(message_id=str(response.headers.get("X-Message-Id") or ""))


def _serve(conn: multiprocessing.connection.Connection, latency_s: float, fail_ratio: float, seed: int) -> None:
    from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

    with FakeSendGrid(tls=True, latency_s=latency_s, fail_ratio=fail_ratio, seed=seed) as fake:
        conn.send((fake.host, fake.api_key, fake.ca_file))
        while conn.recv() != "stop":  # "reset": forget what was received, keep serving
            fake.reset()
            conn.send("ok")


class StandIn:
    """The TLS stand-in in its own process (its threads must not share our GIL)."""

    def __init__(self, latency_s: float, fail_ratio: float, seed: int = 1) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, latency_s, fail_ratio, seed), daemon=True)
        self.process.start()
        self.host, self.api_key, self.ca_file = self._conn.recv()
        self._ps = psutil.Process(self.process.pid)

    def cpu_s(self) -> float:
        t = self._ps.cpu_times()
        return float(t.user + t.system)

    def inspect(self, path: str) -> Any:
        context = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(self.host + path, timeout=300, context=context) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():  # never leave a server behind to skew the next stage
            self.process.terminate()
            self.process.join(5)


def _populate(home: Path, n: int) -> tuple[sa.Engine, int]:
    paths = settings.paths(home)
    for folder in paths.all_dirs():
        folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{paths.db_file}")
    upgrade(engine)
    event = create_event(engine, slug="bench", name="Bench Conference", organiser_email="org@example.com")
    rows = pd.DataFrame(
        {
            "email": [f"p{i:06d}@example{i % 97}.co.kr" for i in range(n)],
            "name": [f"참가자 {i}" for i in range(n)],
            "phone": "",
            "department": "",
            "position": "",
            "extra": "{}",
            "source_row": range(2, n + 2),
        }
    )
    load_participants(engine, event_id=event.id, upload_id="bench-upload", upload_seq=1, rows=rows)
    tokens_store.issue_missing_tokens(engine, event.id)
    deliveries_store.enqueue_welcome(engine, event.id, "bench-upload")
    return engine, event.id


def _cpu_self_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # spawn dispatchers, once reaped
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _context(sender: Any, *, workers: int, processes: int, sender_args: dict[str, Any] | None) -> messages.MailContext:
    return messages.MailContext(
        sender=sender,
        from_email="events@example.com",
        from_name="Bench",
        codec=TokenCodec.from_secret(SECRET),
        checkin_base_url=BASE_URL,
        workers=workers,
        sender_args=sender_args,
        processes=processes,
    )


def _first_round(
    engine: sa.Engine, ctx: messages.MailContext, server: StandIn, limit_s: float | None = None
) -> dict[str, Any]:
    cpu0, srv0, t0 = _cpu_self_s(), server.cpu_s(), time.perf_counter()
    stats = messages.dispatch(engine, ctx)
    wall = time.perf_counter() - t0
    return {
        "sent": stats.sent,
        "seconds": round(wall, 2),
        "sends_per_s": round(stats.sent / wall, 1) if wall else None,
        "client_cpu_cores": round((_cpu_self_s() - cpu0) / wall, 2),
        "stand_in_cpu_cores": round((server.cpu_s() - srv0) / wall, 2),
        **stats.as_metadata(),
    }


def _floor(server: StandIn, body: bytes, n: int, workers: int) -> dict[str, Any]:
    """POST one prebuilt body n times over a keep-alive pool: what the stand-in, TLS and the
    latency allow with no message building at all."""
    pool = urllib3.PoolManager(maxsize=workers, block=True, retries=False, ca_certs=server.ca_file)
    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"}
    left = iter(range(n))
    lock = threading.Lock()
    accepted = Counter[int]()

    def work() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            r = pool.request("POST", f"{server.host}/v3/mail/send", body=body, headers=headers)
            with lock:
                accepted[r.status] += 1

    threads = [threading.Thread(target=work) for _ in range(workers)]
    cpu0, srv0, t0 = _cpu_self_s(), server.cpu_s(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"n": n, "connections": workers, "seconds": round(wall, 2), "sends_per_s": round(n / wall, 1),
            "statuses": dict(accepted), "client_cpu_cores": round((_cpu_self_s() - cpu0) / wall, 2),
            "stand_in_cpu_cores": round((server.cpu_s() - srv0) / wall, 2)}  # fmt: skip


def _decode_all(bodies: list[dict[str, Any]]) -> tuple[int, int]:
    """(messages whose inline QR decodes to the check-in URL in their text, messages)."""
    good = 0
    for body in bodies:
        attachment = (body.get("attachments") or [{}])[0]
        png = base64.b64decode(attachment.get("content", ""))
        text = next((c["value"] for c in body.get("content", []) if c.get("type") == "text/plain"), "")
        decoded = zxingcpp.read_barcode(Image.open(io.BytesIO(png))) if png else None
        good += bool(decoded is not None and decoded.text and decoded.text in text)
    return good, len(bodies)


def bench_email(
    n: int = 5_000,
    latency_s: float = 0.05,
    fail_ratio: float = 0.10,
    *,
    workers: int = 32,
    processes: int = 2,
    naive_n: int | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """sends/s (ours, naive, floor), CPU shares, delivered %, attempts, duplicates, QR decodes."""
    naive_n = naive_n or max(200, n // 10)
    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        server = StandIn(latency_s, 0.0, seed)
        try:
            os.environ["SSL_CERT_FILE"] = server.ca_file  # trust as the default SSL context does
            # 1. Naive: yesterday's client on a slice of the queue, without faults.
            engine, _ = _populate(Path(tmp) / "naive", naive_n)
            naive_ctx = _context(OfficialClientSender(server.api_key, host=server.host), workers=workers,
                                 processes=1, sender_args=None)  # fmt: skip
            naive = _first_round(engine, naive_ctx, server)
            server.reset()
            # 2. Ours, fault-free: the throughput figure.
            engine, _ = _populate(Path(tmp) / "ours", n)
            args = {"backend": "sendgrid", "outbox_dir": Path(tmp) / "outbox", "sendgrid_api_key": server.api_key,
                    "sendgrid_host": server.host, "timeout_s": 15.0, "pool_size": workers}  # fmt: skip
            ours_ctx = _context(SendGridSender(server.api_key, host=server.host, pool_size=workers),
                                workers=workers, processes=processes, sender_args=args)  # fmt: skip
            ours = _first_round(engine, ours_ctx, server)
            bodies = [m["body"] for m in server.inspect("/__inspect/messages")]
            per_delivery = Counter(a["delivery_id"] for a in server.inspect("/__inspect/custom_args"))
            decoded, mailed = _decode_all(bodies)
            sample_body = json.dumps(bodies[0]).encode() if bodies else b"{}"
            server.reset()
            floor = _floor(server, sample_body, min(n, 5_000), workers * processes)
        finally:
            server.stop()
        faults = _with_faults(Path(tmp) / "faults", min(n, 5_000), latency_s, fail_ratio, workers, seed)
        dispose_engines()
    ratio = ours["sends_per_s"] / naive["sends_per_s"] if naive["sends_per_s"] else None
    return {
        "n": n,
        "latency_s": latency_s,
        "workers": workers,
        "processes": processes,
        "sends_per_s": ours["sends_per_s"],
        "naive_sends_per_s": naive["sends_per_s"],
        "floor_sends_per_s": floor["sends_per_s"],
        "ratio_to_naive": round(ratio, 2) if ratio else None,
        "ours": ours,
        "naive": naive,
        "floor": floor,
        "qr_decoded": f"{decoded}/{mailed}",
        "duplicates": sum(per_delivery.values()) - len(per_delivery),
        "under_faults": faults,
        "meets_targets": bool(
            ours["sends_per_s"] >= TARGET_SENDS_PER_S
            and ratio is not None
            and ratio >= TARGET_RATIO_TO_NAIVE
            and decoded == mailed == ours["sent"]
            and faults["delivered_pct"] >= 100 * TARGET_DELIVERED
            and faults["duplicates"] == 0
        ),
    }


def _with_faults(home: Path, n: int, latency_s: float, fail_ratio: float, workers: int, seed: int) -> dict[str, Any]:
    """Delivery under ``fail_ratio`` random 429/500/503, retried on the policy's schedule."""
    server = StandIn(latency_s, fail_ratio, seed)
    try:
        os.environ["SSL_CERT_FILE"] = server.ca_file
        engine, _ = _populate(home, n)
        ctx = _context(SendGridSender(server.api_key, host=server.host, pool_size=workers), workers=workers,
                       processes=1, sender_args=None)  # fmt: skip
        ahead = [timedelta(0)]  # how far the dispatcher's clock runs ahead of the wall clock

        def clock() -> datetime:
            return datetime.now(UTC) + ahead[0]

        rounds: list[dict[str, Any]] = []
        for _ in range(MAX_ROUNDS):
            start = time.perf_counter()
            stats = messages.dispatch(engine, ctx, clock=clock)
            rounds.append({**stats.as_metadata(), "seconds": round(time.perf_counter() - start, 2)})
            with engine.connect() as conn:
                last_due = conn.execute(
                    sa.select(sa.func.max(email_deliveries.c.next_attempt_at)).where(
                        email_deliveries.c.status.in_(deliveries_store.CLAIMABLE)
                    )
                ).scalar()
            if last_due is None:
                break
            # Jump to when every pending retry is due: what a later run of the every-5-minutes
            # send_due_emails schedule finds, without waiting for it.
            ahead[0] = deliveries_store.as_utc(last_due) - datetime.now(UTC) + timedelta(seconds=1)
        per_delivery = Counter(a["delivery_id"] for a in server.inspect("/__inspect/custom_args"))
        statuses = server.inspect("/__inspect/statuses")
        with engine.connect() as conn:
            by_status = deliveries_store.status_counts(conn)
            attempts = Counter(
                int(a)
                for (a,) in conn.execute(
                    sa.select(email_deliveries.c.attempts).where(email_deliveries.c.status == "sent")
                )
            )
    finally:
        server.stop()
    within = {k: sum(v for a, v in attempts.items() if a <= k) for k in (1, 2, 3)}
    return {
        "n": n,
        "fail_ratio": fail_ratio,
        "delivered_pct": round(100.0 * by_status.get("sent", 0) / n, 3),
        "delivered_pct_by_attempt": {k: round(100.0 * v / n, 3) for k, v in within.items()},
        "attempts_histogram": dict(sorted(attempts.items())),
        "statuses": by_status,
        "provider_statuses": statuses,
        "duplicates": sum(per_delivery.values()) - len(per_delivery),
        "rounds": rounds,
    }


if __name__ == "__main__":
    print(json.dumps(bench_email(), indent=2, ensure_ascii=False))
