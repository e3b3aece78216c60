"""``event-pipeline webhook serve`` as a real process answering real requests, its refusals, and the
release rule it enables where mail is sent (a dead dispatcher's claim waits for its event)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from event_pipeline import settings
from event_pipeline.cli import main
from event_pipeline.mail import policy
from event_pipeline.mail.outbox import MboxOutbox
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline_tests.mail.helpers import MailWorld, sendgrid
from event_pipeline_tests.support.ports import free_port
from event_pipeline_tests.support.sendgrid_events import EventPoster, new_signing_key
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

BIN = os.path.join(os.path.dirname(sys.executable), "event-pipeline")


@pytest.fixture
def initialised(var_home: settings.Paths) -> CliRunner:
    runner = CliRunner()
    assert runner.invoke(main, ["init"]).exit_code == 0
    return runner


def test_serve_refuses_without_a_key_or_with_one_that_is_not_a_key(
    initialised: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    missing = initialised.invoke(main, ["webhook", "serve"])
    skipped = initialised.invoke(main, ["webhook", "serve", "--only-if-configured", "--json"])
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", "bm90IGEga2V5")
    bad = initialised.invoke(main, ["webhook", "serve"])

    assert missing.exit_code == 2 and "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in missing.output
    assert skipped.exit_code == 0
    assert json.loads(skipped.output)["listening"] is None
    assert bad.exit_code == 2 and "is not an EC verification key" in bad.output


def test_serve_answers_signed_events_until_stopped(initialised: CliRunner, var_home: settings.Paths) -> None:
    poster = EventPoster("", new_signing_key())
    port = free_port()
    poster.url = f"http://127.0.0.1:{port}/sendgrid/events"
    env = {**os.environ, "SENDGRID_WEBHOOK_PUBLIC_KEY": poster.public_key}
    cmd = [BIN, "webhook", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = poster.post([{"event": "processed", "sg_event_id": "e1", "email": "a@example.org"}])
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)

    assert answer == (
        200,
        {
            **dict.fromkeys(["duplicates", "unusable", "deliveries_changed"], 0),
            "received": 1,
            "recorded": 1,
            "not_ours": 1,
            "participants_flagged": 0,
        },
    )
    # uvicorn finishes what it serves and shuts down, then re-raises the signal it got (its own
    # convention). One CI run under load saw exit status 0 instead, not reproduced in 8 runs
    # here: what this test holds to is the graceful stop, not uvicorn's choice of exit status.
    assert "Finished server process" in output
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "a@example.org" not in output


@pytest.mark.parametrize("flowing", [True, False])
def test_a_dead_dispatchers_claim_waits_for_its_event_only_when_events_flow(
    world: MailWorld, monkeypatch: pytest.MonkeyPatch, flowing: bool
) -> None:
    if flowing:
        monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", EventPoster("", new_signing_key()).public_key)
    else:
        monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    deliveries_store.claim_due(world.engine, limit=1, claimant="proc:gone")
    with FakeSendGrid() as fake:
        ctx = world.ctx(sendgrid(fake), holder_alive=lambda holder: False)
        now = datetime.now(UTC)
        at_once = messages.release_abandoned_claims(world.engine, ctx, now=now)
        later = messages.release_abandoned_claims(world.engine, ctx, now=now + policy.PROCESSED_EVENT_WAIT)

    assert (at_once, later) == ((0, 1) if flowing else (1, 0))


def test_the_outbox_never_waits_for_events(world: MailWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", EventPoster("", new_signing_key()).public_key)
    deliveries_store.claim_due(world.engine, limit=1, claimant="proc:gone")
    ctx = world.ctx(MboxOutbox(world.paths.outbox), holder_alive=lambda holder: False)

    assert messages.release_abandoned_claims(world.engine, ctx) == 1
