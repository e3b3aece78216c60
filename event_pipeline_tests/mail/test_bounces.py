"""Suppression lists (bounces, blocks, invalid emails) read from FakeSendGrid by the real client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import dagster as dg
import sqlalchemy as sa

from event_pipeline.defs.mail_sensors import sendgrid_bounce_sensor
from event_pipeline.defs.resources import DatabaseResource, MailerResource
from event_pipeline.mail import bounces
from event_pipeline.mail.senders import sendgrid_client
from event_pipeline.steps import messages
from event_pipeline.store.tables import email_deliveries, participants
from event_pipeline_tests.mail.helpers import MailWorld, sendgrid
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

NAMES = ["Ada", "Bo", "Cy", "Di", "Ed"]


def email_status(world: MailWorld) -> dict[str, str]:
    with world.engine.connect() as conn:
        return {e: s for e, s in conn.execute(sa.select(participants.c.email_norm, participants.c.email_status))}


def delivery_status(world: MailWorld) -> dict[str, str]:
    stmt = sa.select(participants.c.email_norm, email_deliveries.c.status).join(
        email_deliveries, email_deliveries.c.participant_id == participants.c.id
    )
    with world.engine.connect() as conn:
        return {e: s for e, s in conn.execute(stmt)}


def poll(world: MailWorld, fake: FakeSendGrid, cursor: bounces.BounceCursor) -> bounces.PollResult:
    return bounces.poll_suppressions(world.engine, sendgrid_client(fake.api_key, host=fake.host, timeout_s=5), cursor)


def test_each_list_marks_participants_and_their_sent_mail(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES)
    world.enqueue()
    messages.dispatch(world.engine, world.ctx(sendgrid(fake)))
    p0, p1, p2, p3, _ = world.emails
    fake.add_bounce(p0, reason=f"550 5.1.1 <{p0}>: Recipient address rejected", created=1000)
    fake.add_bounce(p1, reason="blocked by policy", status="4.0.0", created=1100, kind="blocks")
    fake.add_bounce(p2.upper(), reason="Bad Syntax", created=1200, kind="invalid_emails")
    fake.add_bounce("stranger@example.net", created=1300)

    result = poll(world, fake, bounces.BounceCursor())

    assert email_status(world) == {p0: "bounced", p1: "blocked", p2: "invalid", p3: "ok", world.emails[4]: "ok"}
    assert delivery_status(world) == {p0: "bounced", p1: "bounced", p2: "bounced", p3: "sent", world.emails[4]: "sent"}
    assert (result.participants_marked, result.deliveries_bounced) == (3, 3)
    assert result.cursor.since == {"bounces": 1300, "blocks": 1100, "invalid_emails": 1200}
    with world.engine.connect() as conn:
        errors = [e for (e,) in conn.execute(sa.select(email_deliveries.c.last_error)) if e]
    assert len(errors) == 3 and not any("@" in e for e in errors)
    assert any("Recipient address rejected" in e for e in errors)


def test_polling_again_changes_nothing_and_only_new_entries_count(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES)
    world.enqueue()
    messages.dispatch(world.engine, world.ctx(sendgrid(fake)))
    fake.add_bounce(world.emails[0], created=1000)
    first = poll(world, fake, bounces.BounceCursor())

    again = poll(world, fake, first.cursor)
    fake.add_bounce(world.emails[1], created=2000)
    fake.add_bounce(world.emails[0], created=2000, kind="blocks")  # weaker than bounced: kept bounced
    third = poll(world, fake, again.cursor)

    assert (again.participants_marked, again.deliveries_bounced) == (0, 0)
    assert again.fetched["bounces"] == 1  # the cursor's own second is read again, harmlessly
    assert (third.participants_marked, third.deliveries_bounced) == (1, 1)
    assert email_status(world)[world.emails[0]] == "bounced"
    assert email_status(world)[world.emails[1]] == "bounced"


def test_invalid_outranks_an_earlier_block(world_factory: Callable[..., MailWorld], fake: FakeSendGrid) -> None:
    world = world_factory(NAMES[:1])
    fake.add_bounce(world.emails[0], created=1000, kind="blocks")
    cursor = poll(world, fake, bounces.BounceCursor()).cursor
    fake.add_bounce(world.emails[0], created=2000, kind="invalid_emails")

    poll(world, fake, cursor)

    assert email_status(world) == {world.emails[0]: "invalid"}


def test_a_bounced_address_still_queued_is_never_sent(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:2])
    world.enqueue()
    fake.add_bounce(world.emails[0], created=1000)
    poll(world, fake, bounces.BounceCursor())

    stats = messages.dispatch(world.engine, world.ctx(sendgrid(fake)))

    assert stats.sent == 1
    assert delivery_status(world) == {world.emails[0]: "bounced", world.emails[1]: "sent"}
    assert [m.body["personalizations"][0]["to"][0]["email"] for m in fake.messages] == [world.emails[1]]


def test_organiser_mail_is_marked_when_the_organiser_bounces(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:1])
    with world.engine.begin() as conn:
        from event_pipeline.store import deliveries as deliveries_store

        deliveries_store.enqueue(
            conn, [{"event_id": world.event.id, "kind": "import_failed", "dedupe_key": "import_failed:u1"}]
        )
    fake.add_bounce("Organiser@Example.com", created=1000)

    result = poll(world, fake, bounces.BounceCursor())

    assert (result.participants_marked, result.deliveries_bounced) == (0, 1)


def test_long_lists_are_read_page_by_page(world_factory: Callable[..., MailWorld], fake: FakeSendGrid) -> None:
    world = world_factory(NAMES[:1])
    for i in range(bounces.PAGE_SIZE + 20):
        fake.add_bounce(f"old{i}@example.net", created=1000 + i)
    fake.add_bounce(world.emails[0], created=5000)

    result = poll(world, fake, bounces.BounceCursor())

    assert result.fetched["bounces"] == bounces.PAGE_SIZE + 21
    assert email_status(world) == {world.emails[0]: "bounced"}
    assert result.cursor.since["bounces"] == 5000


def test_sensor_skips_without_an_api_key(var_home: object) -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance, resources={"db": DatabaseResource(), "mailer": MailerResource()}
        )
        result = sendgrid_bounce_sensor(context)

    assert isinstance(result, dg.SensorResult)
    assert result.skip_reason is not None and "SENDGRID_API_KEY" in str(result.skip_reason.skip_message)
    assert result.cursor is None


def test_sensor_applies_bounces_and_keeps_its_cursor(
    world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(NAMES[:2])
    now = int(time.time())
    fake.add_bounce(world.emails[1], created=now)
    resources = {
        "db": DatabaseResource(),
        "mailer": MailerResource(backend="sendgrid", sendgrid_api_key=fake.api_key, sendgrid_host=fake.host),
    }
    with dg.instance_for_test() as instance:
        first = sendgrid_bounce_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(first, dg.SensorResult) and first.cursor is not None
        second = sendgrid_bounce_sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
        )

    assert first.skip_reason is None
    assert json.loads(first.cursor) == {"bounces": now}
    assert email_status(world) == {world.emails[0]: "ok", world.emails[1]: "bounced"}
    assert isinstance(second, dg.SensorResult) and second.skip_reason is not None
    assert second.cursor == first.cursor
