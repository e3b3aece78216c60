"""Resending tickets through the SendGrid stand-in, on SQLite and PostgreSQL: a resend is one new
delivery and one new message, never a second copy of mail in flight."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import resend_jobs
from event_pipeline.defs.resources import MailerResource, default_resources
from event_pipeline.steps import messages
from event_pipeline.steps.resend import ResendError, resend
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store.corrections import correct_address
from event_pipeline.store.suppressions import SuppressedAddress, apply_suppressions
from event_pipeline.store.tables import email_deliveries, participants
from event_pipeline.store.tokens import issue_missing_tokens
from event_pipeline_tests.mail.helpers import MailWorld, checkin_url_of, custom_args, qr_text, sendgrid
from event_pipeline_tests.steps._imports import import_steps
from event_pipeline_tests.steps._mail import fake_fixture, world_factory_fixture  # noqa: F401 - fixtures
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import make_event
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

pytestmark = pytest.mark.usefixtures("database_url")


def pid_of(world: MailWorld, email: str) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.select(participants.c.id).where(participants.c.email_norm == email)).scalar_one())


def welcome_all(world: MailWorld, fake: FakeSendGrid) -> None:
    world.enqueue()
    run = messages.send_mail(world.engine, world.ctx(sendgrid(fake)))
    assert run.stats.sent == len(world.emails)


def test_resend_of_one_participant_is_exactly_one_new_message(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(["Kim", "Lee", "Park"])
    welcome_all(world, fake)
    before = len(fake.messages)
    target = pid_of(world, world.emails[1])

    result = resend(world.engine, world.ctx(sendgrid(fake)), event_slug=world.event.slug, participant_id=target)

    assert [q.participant_id for q in result.queued] == [target] and result.sent == 1 and not result.refused
    new = fake.messages[before:]
    assert len(new) == 1
    [message] = new
    assert message.body["personalizations"][0]["to"][0]["email"] == world.emails[1]
    args = custom_args(message.body)
    assert args["kind"] == "ticket" and args["participant_id"] == str(target)
    assert message.body["subject"] == "[Dev Conference] Your ticket (sent again)"
    [qr] = message.body["attachments"]
    assert qr_text(base64.b64decode(qr["content"])) == checkin_url_of(world.engine, target)
    rows = [r for r in world.rows() if r["participant_id"] == target]
    assert [(r["kind"], r["dedupe_key"], r["status"], r["attempts"]) for r in rows] == [
        ("welcome", f"welcome:{target}", "sent", 1),
        ("ticket", f"resend:{target}:1", "sent", 1),
    ]

    # By address (any case) the next resend is a further new delivery, not a reuse of the first.
    again = resend(world.engine, world.ctx(sendgrid(fake)), event_slug=world.event.slug, email=world.emails[1].upper())
    assert again.sent == 1 and len(fake.messages) == before + 2
    assert [r["dedupe_key"] for r in world.rows() if r["kind"] == "ticket"] == [
        f"resend:{target}:1",
        f"resend:{target}:2",
    ]


def test_resend_is_refused_while_ticket_mail_is_in_flight(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(["Kim", "Lee"])
    world.enqueue()  # welcomes queued, not sent yet
    target = pid_of(world, world.emails[0])

    result = resend(world.engine, world.ctx(sendgrid(fake)), event_slug=world.event.slug, participant_id=target)

    assert not result.queued and [r.code for r in result.refused] == ["in_flight"]
    assert "already has ticket mail on its way" in result.refused[0].reason
    assert fake.messages == []
    assert not [r for r in world.rows() if r["kind"] == "ticket"]

    # A claimed (sending) welcome counts as in flight too.
    with world.engine.begin() as conn:
        conn.execute(sa.update(email_deliveries).values(status="sending"))
    result = resend(world.engine, world.ctx(sendgrid(fake)), event_slug=world.event.slug, participant_id=target)
    assert [r.code for r in result.refused] == ["in_flight"] and fake.messages == []


def test_resend_refuses_inactive_replaced_and_bounced_participants(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(["Kim", "Lee", "Park"])
    welcome_all(world, fake)
    sent = len(fake.messages)
    kim, lee, park = (pid_of(world, e) for e in world.emails)
    with world.engine.begin() as conn:
        conn.execute(sa.update(participants).where(participants.c.id == kim).values(status="inactive"))
        conn.execute(
            sa.update(participants).where(participants.c.id == lee).values(status="inactive", replaced_by=park)
        )
    apply_suppressions(world.engine, [SuppressedAddress(world.emails[2], "bounced", "550 no such user")])
    ctx = world.ctx(sendgrid(fake))

    codes = {
        pid: resend(world.engine, ctx, event_slug=world.event.slug, participant_id=pid).refused[0].code
        for pid in (kim, lee, park)
    }

    assert codes == {kim: "inactive", lee: "replaced", park: "address_not_deliverable"}
    assert len(fake.messages) == sent
    with pytest.raises(ResendError, match="no event with slug"):
        resend(world.engine, ctx, event_slug="nope", participant_id=kim)
    with pytest.raises(ResendError, match=r"has the address n\*\*\*@example.org"):
        resend(world.engine, ctx, event_slug=world.event.slug, email="nobody@example.org")
    unknown = resend(world.engine, ctx, event_slug=world.event.slug, participant_id=999_999)
    assert [r.code for r in unknown.refused] == ["unknown"]


def test_upload_resend_reaches_only_its_undelivered_participants(
    var_home: settings.Paths, world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(["Kim"], slug="other-event")  # another event's participants stay out of it
    event = make_event()
    s = sample(3, invalid=0, duplicates=0)
    upload = import_steps(write_csv(var_home.home / "in" / "list.csv", s.rows))
    issue_missing_tokens(world.engine, event.id)
    deliveries_store.enqueue_welcome(world.engine, event.id, upload.id)
    ctx = world.ctx(sendgrid(fake))
    assert messages.send_mail(world.engine, ctx).stats.sent == 3
    first = s.rows[0][1]
    apply_suppressions(world.engine, [SuppressedAddress(first, "bounced", "550 no such user")])
    kim = pid_of(world, first)

    dry = resend(world.engine, None, event_slug=event.slug, upload_id=upload.id, dry_run=True)
    assert dry.already_delivered == 2 and [r.code for r in dry.refused] == ["address_not_deliverable"]

    with world.engine.begin() as conn:
        assert correct_address(conn, event.id, first, "kim.fixed@example.org") == kim
    dry = resend(world.engine, None, event_slug=event.slug, upload_id=upload.id, dry_run=True)
    assert [q.participant_id for q in dry.queued] == [kim] and dry.as_json()["queued"][0]["delivery_id"] is None
    assert not [r for r in world.rows() if r["kind"] == "ticket"]  # the dry run left nothing behind

    before = len(fake.messages)
    done = resend(world.engine, ctx, event_slug=event.slug, upload_id=upload.id)
    assert [q.participant_id for q in done.queued] == [kim] and done.sent == 1 and done.already_delivered == 2
    assert [m.body["personalizations"][0]["to"][0]["email"] for m in fake.messages[before:]] == [
        "kim.fixed@example.org"
    ]
    again = resend(world.engine, ctx, event_slug=event.slug, upload_id=upload.id)
    assert not again.queued and again.already_delivered == 3 and len(fake.messages) == before + 1
    with pytest.raises(ResendError, match="no upload 'other'"):
        resend(world.engine, ctx, event_slug=event.slug, upload_id="other")
    with pytest.raises(ResendError, match="no upload"):
        resend(world.engine, ctx, event_slug=world.event.slug, upload_id=upload.id)  # not that event's upload


def test_resend_tickets_job_takes_ids_only_and_records_no_address(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid, var_home: settings.Paths
) -> None:
    world = world_factory(["Kim", "Lee"])
    welcome_all(world, fake)
    target = pid_of(world, world.emails[0])
    mailer = MailerResource(backend="sendgrid", sendgrid_api_key=fake.api_key, sendgrid_host=fake.host)
    defs = dg.Definitions(jobs=resend_jobs.JOBS, resources={**default_resources(), "mailer": mailer})
    config = {"ops": {"resend_tickets_op": {"config": {"event_slug": world.event.slug, "participant_id": target}}}}

    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as instance:
        result = defs.resolve_job_def("resend_tickets").execute_in_process(run_config=config, instance=instance)
        again_config = {"ops": {"resend_tickets_op": {"config": {"event_slug": world.event.slug, "bounced": True}}}}
        none = defs.resolve_job_def("resend_tickets").execute_in_process(run_config=again_config, instance=instance)
        logged = json.dumps([str(e) for e in instance.all_logs(result.run_id)], default=str)

    assert result.success and none.success
    [mat] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    meta = mat.event_specific_data.metadata  # type: ignore[union-attr]
    assert meta["queued"].value == 1 and meta["sent"].value == 1
    assert to_addresses(fake)[2:] == [world.emails[0]]
    assert not any(email in logged for email in world.emails)


def to_addresses(fake: FakeSendGrid) -> list[str]:
    return [m.body["personalizations"][0]["to"][0]["email"] for m in fake.messages]
