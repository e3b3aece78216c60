"""A dispatcher killed between SendGrid's 202 and our write of it, on SQLite and PostgreSQL.

FakeSendGrid (TLS, latency) accepts messages but holds the answers of a few, so the dispatcher
process is SIGKILLed while SendGrid has them and our database still says ``sending``. With the
webhook configured their ``processed`` events (late: held until after the crash) mark them sent,
and nothing is sent twice. Without it, the old bound holds: only claims of the dead process
repeat, at most 2 x workers of them (docs/email.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from event_pipeline import settings
from event_pipeline.mail import policy
from event_pipeline.mail.senders import SendGridSender
from event_pipeline.steps import messages
from event_pipeline_tests.mail.helpers import MailWorld, make_world, sent_per_delivery
from event_pipeline_tests.support.sendgrid_events import new_signing_key, public_key_b64
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid
from event_pipeline_tests.webhook.receiver import running_receiver

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
N = 40


@contextmanager
def killed_dispatcher(world: MailWorld, fake: FakeSendGrid) -> Iterator[set[int]]:
    """Start a dispatcher process, let 10 messages through, hold the next WORKERS answers, kill
    it while they are held; yields the ids of the deliveries whose answers it never got."""
    url = str(world.engine.url.render_as_string(hide_password=False))
    env = {**os.environ, **fake.client_env(), "PYTHONPATH": str(ROOT)}
    env.pop("SENDGRID_WEBHOOK_PUBLIC_KEY", None)  # the first dispatcher is killed before it releases anything
    cmd = [sys.executable, "-m", "event_pipeline_tests.mail.dispatcher_proc", url, fake.host, fake.api_key]
    proc = subprocess.Popen([*cmd, str(WORKERS)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        fake.wait_messages(10, timeout_s=60)
        fake.hold_answers(WORKERS)
        fake.wait_held(WORKERS, timeout_s=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the dispatcher finished before it could be killed"
    held = {int(m.body["custom_args"]["delivery_id"]) for m in fake.messages[-WORKERS:]}
    fake.release_answers()  # to a dead process
    fake.wait_answered()
    yield held


@pytest.mark.parametrize("webhook", [True, False], ids=["events-flowing", "no-webhook"])
def test_a_crash_between_the_202_and_our_write(
    webhook: bool, var_home: settings.Paths, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world(var_home, [f"Person {i}" for i in range(N)], url=database_url)
    world.enqueue()
    key = new_signing_key()
    with ExitStack() as stack:
        events_url = stack.enter_context(running_receiver(world.engine, public_key_b64(key))) if webhook else None
        fake = stack.enter_context(FakeSendGrid(tls=True, latency_s=0.02, events_url=events_url, events_key=key))
        if fake.events is not None:
            fake.events.hold()  # SendGrid's events come seconds later: after the crash
        held = stack.enter_context(killed_dispatcher(world, fake))

        accepted = {int(k) for k in sent_per_delivery(fake)}
        left_sending = {r["id"] for r in world.rows() if r["status"] == "sending"}
        # The kill landed between the 202 and our write: SendGrid has these, we say `sending`.
        assert held <= left_sending & accepted
        if fake.events is not None:
            fake.events.release()
            fake.events.wait_idle()
            assert {r["id"] for r in world.rows() if r["accepted_at"] is not None} == accepted
        monkeypatch.setenv("SSL_CERT_FILE", fake.ca_file)
        if webhook:
            monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", fake.events_public_key)
        ctx = world.ctx(SendGridSender(fake.api_key, host=fake.host, timeout_s=10), workers=WORKERS)

        first = messages.send_mail(world.engine, ctx)
        unconfirmed = {r["id"] for r in world.rows() if r["status"] == "sending"}
        later = messages.send_mail(world.engine, ctx, now=datetime.now(UTC) + policy.PROCESSED_EVENT_WAIT)
        per_delivery = sent_per_delivery(fake)

    assert world.statuses() == {"sent": N}
    assert len(per_delivery) == N
    duplicated = {int(k) for k, n in per_delivery.items() if n > 1}
    if webhook:
        assert duplicated == set()
        # Claims without a processed event waited: not released at once, only after the wait.
        assert first.released == 0 and unconfirmed == left_sending - accepted
        assert later.released == len(unconfirmed)
    else:
        assert held <= duplicated <= left_sending
        assert len(duplicated) <= 2 * WORKERS
        assert first.released == len(left_sending) and unconfirmed == set()
