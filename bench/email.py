"""Welcome-email throughput and delivery under failures: ``bench_email()``.

Sends ``n`` welcome emails (real templates, real QR attachments, real ``sendgrid`` client) to
FakeSendGrid running in its own process (so the server's threads do not compete with the
dispatcher for the GIL) with ``latency_s`` per request and ``fail_ratio`` of requests answered
429/500/503 at random. Retries are driven by running the dispatcher's clock ahead instead of
waiting hours, exactly as the ``send_due_emails`` schedule would pick them up.

Run as a module (``python -m bench.email``): run as a script, this file would shadow the
standard library's ``email`` package.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.access.tokens import TokenCodec
from event_pipeline.mail.senders import SendGridSender
from event_pipeline.steps import messages, tickets
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import tokens as tokens_store
from event_pipeline.store.db import dispose_engines, make_engine
from event_pipeline.store.events import create_event
from event_pipeline.store.migrate import upgrade
from event_pipeline.store.participants import load_participants
from event_pipeline.store.tables import email_deliveries

TARGET_SENDS_PER_S = 200.0
TARGET_DELIVERED = 0.995
MAX_ROUNDS = 6
BASE_URL = "https://checkin.example.test/t/"


def _serve(conn: multiprocessing.connection.Connection, latency_s: float, fail_ratio: float, seed: int) -> None:
    from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

    with FakeSendGrid(latency_s=latency_s, fail_ratio=fail_ratio, seed=seed) as fake:
        conn.send((fake.host, fake.api_key))
        conn.recv()  # until the parent says stop


def _inspect(host: str, path: str) -> Any:
    with urllib.request.urlopen(host + path, timeout=120) as response:
        return json.loads(response.read())


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
    codec = TokenCodec.from_secret("b" * 40)
    tickets.render_missing_qr_codes(engine, paths, codec, event_id=event.id, event_slug="bench", base_url=BASE_URL)
    deliveries_store.enqueue_welcome(engine, event.id, "bench-upload")
    return engine, event.id


def bench_email(
    n: int = 20_000, latency_s: float = 0.02, fail_ratio: float = 0.10, *, workers: int = 8, seed: int = 1
) -> dict[str, Any]:
    """Returns sends/s, delivered %, the attempts histogram and duplicates (must be 0)."""
    with tempfile.TemporaryDirectory(prefix="bench-email-") as tmp:
        engine, _ = _populate(Path(tmp), n)
        ctx_mp = multiprocessing.get_context("spawn")
        parent, child = ctx_mp.Pipe()
        server = ctx_mp.Process(target=_serve, args=(child, latency_s, fail_ratio, seed), daemon=True)
        server.start()
        try:
            host, api_key = parent.recv()
            ctx = messages.MailContext(
                sender=SendGridSender(api_key, host=host, timeout_s=15),
                from_email="events@example.com",
                from_name="Bench",
                codec=TokenCodec.from_secret("b" * 40),
                checkin_base_url=BASE_URL,
                workers=workers,
            )
            ahead = [timedelta(0)]  # how far the dispatcher's clock runs ahead of the wall clock

            def clock() -> datetime:
                return datetime.now(UTC) + ahead[0]

            rounds: list[dict[str, Any]] = []
            started = time.perf_counter()
            for _ in range(MAX_ROUNDS):
                round_start = time.perf_counter()
                stats = messages.dispatch(engine, ctx, clock=clock)
                rounds.append(
                    {
                        **stats.as_metadata(),
                        "seconds": round(time.perf_counter() - round_start, 2),
                        "waited_s": round(stats.waited_s, 2),
                    }
                )
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
            elapsed = time.perf_counter() - started
            per_delivery = Counter(a["delivery_id"] for a in _inspect(host, "/__inspect/custom_args"))
            statuses = _inspect(host, "/__inspect/statuses")
        finally:
            parent.send("stop")
            server.join(10)
            if server.is_alive():  # never leave a server behind to skew the next stage
                server.terminate()
                server.join(5)
        with engine.connect() as conn:
            by_status = deliveries_store.status_counts(conn)
            attempts = Counter(
                int(a)
                for (a,) in conn.execute(
                    sa.select(email_deliveries.c.attempts).where(email_deliveries.c.status == "sent")
                )
            )
        dispose_engines()
    accepted = sum(per_delivery.values())
    first = rounds[0]
    return {
        "n": n,
        "latency_s": latency_s,
        "fail_ratio": fail_ratio,
        "workers": workers,
        # Accepted messages per second of the first round, which is the whole queue at full speed;
        # later rounds are small (the retries) and mostly the inline wait for 429 resets.
        "sends_per_s": round(first["sent"] / first["seconds"], 1),
        "overall_sends_per_s": round(accepted / elapsed, 1),  # all rounds, retries included
        "requests_per_s": round(sum(int(v) for v in statuses.values()) / elapsed, 1),
        "seconds_total": round(elapsed, 1),
        "delivered_pct": round(100.0 * by_status.get("sent", 0) / n, 3),
        "attempts_histogram": dict(sorted(attempts.items())),
        "statuses": by_status,
        "provider_statuses": statuses,
        "duplicates": accepted - len(per_delivery),
        "rounds": rounds,
        "meets_targets": first["sent"] / first["seconds"] >= TARGET_SENDS_PER_S
        and by_status.get("sent", 0) / n >= TARGET_DELIVERED
        and accepted == len(per_delivery),
    }


if __name__ == "__main__":
    print(json.dumps(bench_email(), indent=2, ensure_ascii=False))
