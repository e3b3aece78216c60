"""The organiser's bounce digest through the SendGrid stand-in, on SQLite and PostgreSQL: one per
event and hour, addresses masked in the body, the full list attached as CSV, each bounce once."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import resend_jobs
from event_pipeline.defs.resources import MailerResource, default_resources
from event_pipeline.steps import messages
from event_pipeline.steps.digests import send_bounce_digests
from event_pipeline.store.delivery_events import RecordedEvent, record_new
from event_pipeline.store.digests import bounce_counts
from event_pipeline.store.suppressions import SuppressedAddress, apply_suppressions, mark_deliveries
from event_pipeline.store.tables import email_deliveries, participants
from event_pipeline_tests.mail.helpers import MailWorld, custom_args, sendgrid
from event_pipeline_tests.steps._mail import fake_fixture, world_factory_fixture  # noqa: F401 - fixtures
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid, SentMessage

pytestmark = pytest.mark.usefixtures("database_url")

TEN = datetime(2026, 12, 1, 10, 15, tzinfo=UTC)
NAMES = ["Kim Minjun", "Lee Seoyeon", "Park Jiho", "Choi Sua"]


def digests(fake: FakeSendGrid) -> list[SentMessage]:
    return [m for m in fake.messages if custom_args(m.body)["kind"] == "bounce_digest"]


def attached_rows(message: SentMessage) -> tuple[str, list[dict[str, str]]]:
    [attachment] = message.body["attachments"]
    assert attachment["type"] == "text/csv" and attachment["disposition"] == "attachment"
    text = base64.b64decode(attachment["content"]).decode("utf-8-sig")
    return str(attachment["filename"]), list(csv.DictReader(io.StringIO(text)))


def bounce(world: MailWorld, *emails: str) -> None:
    for email in emails:
        apply_suppressions(world.engine, [SuppressedAddress(email, "bounced", "550 5.1.1 user unknown")])


def welcomed(world_factory: Callable[..., MailWorld], fake: FakeSendGrid, language: str) -> MailWorld:
    world = world_factory(NAMES, language=language)
    world.enqueue()
    assert messages.send_mail(world.engine, world.ctx(sendgrid(fake))).stats.sent == len(NAMES)
    return world


def test_digest_masks_the_body_attaches_the_full_list_and_reports_each_bounce_once(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = welcomed(world_factory, fake, "en")
    ctx = world.ctx(sendgrid(fake))
    bounce(world, world.emails[0], world.emails[2])

    first = send_bounce_digests(world.engine, ctx, now=TEN)

    assert first.reported == 2 and first.run.stats.sent == 1
    [digest] = digests(fake)
    assert digest.body["personalizations"][0]["to"][0]["email"] == "organiser@example.com"
    assert "participant_id" not in custom_args(digest.body)
    assert digest.body["subject"] == "[Dev Conference] 2 addresses could not be reached"
    text, html = (part["value"] for part in digest.body["content"])
    assert "Mail to 2 participants of Dev Conference could not be delivered" in text
    assert text.count("p***@example.org") == 2 and "550 5.1.1 user unknown" in text
    for body in (text, html):
        assert not any(email in body for email in world.emails)
        assert not any(name in body for name in NAMES)
    name, rows = attached_rows(digest)
    assert name == f"bounces-devcon-2026-{TEN:%Y%m%d%H}.csv"
    with world.engine.connect() as conn:
        ids = dict(conn.execute(sa.select(participants.c.email_norm, participants.c.id)).tuples().all())
    assert [(r["participant_id"], r["name"], r["email"], r["status"]) for r in rows] == [
        (str(ids[world.emails[0]]), NAMES[0], world.emails[0], "bounced"),
        (str(ids[world.emails[2]]), NAMES[2], world.emails[2], "bounced"),
    ]
    assert all("550 5.1.1 user unknown" in r["reason"] and datetime.fromisoformat(r["when"]) for r in rows)
    key = f"bounce_digest:{world.event.id}:{TEN:%Y%m%d%H}"
    reported = {r["participant_id"]: r["reported_in"] for r in world.rows() if r["kind"] == "welcome"}
    assert reported == {ids[e]: (key if e in (world.emails[0], world.emails[2]) else None) for e in world.emails}

    # Nothing new: no second digest, in this hour or the next.
    assert send_bounce_digests(world.engine, ctx, now=TEN.replace(minute=50)).digests == []
    assert send_bounce_digests(world.engine, ctx, now=TEN.replace(hour=11)).digests == []
    assert len(digests(fake)) == 1

    # A bounce after this hour's digest went out waits for the next hour's, and is in it alone.
    bounce(world, world.emails[3])
    assert send_bounce_digests(world.engine, ctx, now=TEN.replace(minute=55)).digests == []
    assert len(digests(fake)) == 1
    later = send_bounce_digests(world.engine, ctx, now=TEN.replace(hour=12, minute=1))
    assert later.reported == 1 and len(digests(fake)) == 2
    _, rows = attached_rows(digests(fake)[1])
    assert [r["email"] for r in rows] == [world.emails[3]]
    with world.engine.connect() as conn:
        counts = bounce_counts(conn)[world.event.slug]
    assert (counts.participants, counts.deliveries, counts.unreported) == (3, 3, 0)


def test_digest_is_in_korean_for_a_korean_event(world_factory: Callable[..., MailWorld], fake: FakeSendGrid) -> None:
    world = welcomed(world_factory, fake, "ko")
    bounce(world, world.emails[1])

    send_bounce_digests(world.engine, world.ctx(sendgrid(fake)), now=TEN)

    [digest] = digests(fake)
    assert digest.body["subject"] == "[Dev Conference] 메일 전달 실패 1건"
    text = digest.body["content"][0]["value"]
    assert "참가자 1명에게 메일을 전달하지 못했습니다" in text and "p***@example.org (반송)" in text
    assert world.emails[1] not in text
    _, rows = attached_rows(digest)
    assert [r["email"] for r in rows] == [world.emails[1]]


def test_digest_reports_provider_drops_not_mail_the_dispatcher_dropped(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:3], language="en")
    world.enqueue()
    with world.engine.begin() as conn:
        ids = dict(conn.execute(sa.select(participants.c.email_norm, participants.c.id)).tuples().all())
        # Undone before its welcome went out: the dispatcher drops that mail, nobody bounced.
        conn.execute(sa.update(participants).where(participants.c.id == ids[world.emails[0]]).values(status="inactive"))
    ctx = world.ctx(sendgrid(fake))
    assert messages.send_mail(world.engine, ctx).stats.sent == 2
    with world.engine.begin() as conn:
        did = conn.execute(
            sa.select(email_deliveries.c.id).where(email_deliveries.c.participant_id == ids[world.emails[1]])
        ).scalar_one()
        record_new(conn, [RecordedEvent("sg-drop-1", did, "dropped", TEN)], received_at=TEN)
        mark_deliveries(conn, [(did, "dropped by the provider: Bounced Address")], "dropped")
    statuses = {r["participant_id"]: r["status"] for r in world.rows()}
    assert statuses == {ids[world.emails[0]]: "dropped", ids[world.emails[1]]: "dropped", ids[world.emails[2]]: "sent"}

    run = send_bounce_digests(world.engine, ctx, now=TEN)

    assert run.reported == 1
    _, rows = attached_rows(digests(fake)[0])
    assert [(r["email"], r["status"]) for r in rows] == [(world.emails[1], "dropped")]


def test_send_bounce_digests_job_and_its_hourly_schedule(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid, var_home: settings.Paths
) -> None:
    world = welcomed(world_factory, fake, "en")
    bounce(world, world.emails[0])
    mailer = MailerResource(backend="sendgrid", sendgrid_api_key=fake.api_key, sendgrid_host=fake.host)
    defs = dg.Definitions(
        jobs=resend_jobs.JOBS,
        schedules=resend_jobs.SCHEDULES,
        resources={**default_resources(), "mailer": mailer},
    )

    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as instance:
        job = defs.resolve_job_def("send_bounce_digests")
        first = job.execute_in_process(instance=instance)
        second = job.execute_in_process(instance=instance)
        logged = json.dumps([str(e) for e in instance.all_logs(first.run_id)], default=str)

    assert first.success and second.success
    assert len(digests(fake)) == 1
    assert not any(email in logged for email in world.emails)
    schedule = defs.resolve_schedule_def("send_bounce_digests_schedule")
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
