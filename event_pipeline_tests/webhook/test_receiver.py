"""The signed Event Webhook receiver over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL:
what it accepts, what it refuses with 403/400/413, duplicates, and what each event changes."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from event_pipeline.mail import bounces
from event_pipeline.mail.senders import sendgrid_client
from event_pipeline.steps import messages
from event_pipeline.store.db import as_utc
from event_pipeline.store.tables import delivery_events, email_deliveries, participants
from event_pipeline.webhook.app import MAX_BODY_BYTES
from event_pipeline_tests.mail.helpers import MailWorld, sendgrid
from event_pipeline_tests.support.sendgrid_events import EventPoster, new_signing_key
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid
from event_pipeline_tests.webhook.receiver import running_receiver

AT = 1_800_000_000  # the events' own time (2027-01-15), distinct from "now"


def event(world: MailWorld, index: int, kind: str = "processed", **fields: Any) -> dict[str, Any]:
    row = world.rows()[index]
    return {
        "email": world.emails[index],
        "timestamp": AT,
        "event": kind,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": f"msg{index}.recvd-1-{index}",
        "delivery_id": str(row["id"]),
        "event_id": str(world.event.id),
        "kind": "welcome",
        "participant_id": str(row["participant_id"]),
        **fields,
    }


def recorded(world: MailWorld) -> list[dict[str, Any]]:
    with world.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(delivery_events).order_by(delivery_events.c.event))]


def person(world: MailWorld, index: int) -> dict[str, Any]:
    with world.engine.connect() as conn:
        row = conn.execute(sa.select(participants).where(participants.c.email_norm == world.emails[index])).one()
    return dict(row._mapping)


def test_a_signed_processed_event_marks_its_delivery_accepted_and_sent(world: MailWorld, poster: EventPoster) -> None:
    e = event(world, 0)

    status, answer = poster.post([e])

    assert status == 200
    assert answer["recorded"] == 1 and answer["deliveries_changed"] == 1
    first = world.rows()[0]
    assert first["status"] == "sent"
    assert as_utc(first["accepted_at"]) == datetime.fromtimestamp(AT, UTC)
    assert first["provider_message_id"] == "msg0"  # X-Message-Id: sg_message_id before its first "."
    assert [r["status"] for r in world.rows()[1:]] == ["queued", "queued"]
    [row] = recorded(world)
    assert (row["sg_event_id"], row["delivery_id"], row["event"]) == (e["sg_event_id"], first["id"], "processed")
    assert world.emails[0] not in repr(row)  # the address is never stored


def test_tampered_body_wrong_key_and_bad_timestamps_are_refused_with_403(world: MailWorld, poster: EventPoster) -> None:
    good = [event(world, 0)]
    forged = [event(world, 0, "bounce", type="bounce")]
    import json

    now = int(time.time())
    refusals = {
        "tampered": poster.post(forged, signed_body=json.dumps(good).encode()),
        "wrong key": poster.post(good, key=new_signing_key()),
        "stale": poster.post(good, timestamp=now - 5 * 60 - 30),
        "future": poster.post(good, timestamp=now + 5 * 60 + 30),
        "no signature": poster.post(good, signature=""),
        "garbage signature": poster.post(good, signature="bm90IGEgc2lnbmF0dXJl"),
    }

    assert {name: status for name, (status, _) in refusals.items()} == dict.fromkeys(refusals, 403)
    assert refusals["stale"][1] == {"error": "timestamp more than 5 minutes from now"}
    assert refusals["tampered"][1] == {"error": "signature does not match"}
    assert recorded(world) == []
    assert [r["status"] for r in world.rows()] == ["queued"] * 3
    # A timestamp just inside the window is accepted.
    assert poster.post(good, timestamp=now - 4 * 60)[0] == 200


def test_a_body_that_is_not_a_list_is_400_and_an_oversized_one_413(world: MailWorld, poster: EventPoster) -> None:
    assert poster.post(None, body=b'{"event": "processed"}') == (400, {"error": "body is not a JSON list of events"})
    assert poster.post(None, body=b"not json")[0] == 400
    huge = b"[" + b" " * MAX_BODY_BYTES + b"]"
    assert poster.post(None, body=huge)[0] == 413
    assert recorded(world) == []


def test_a_duplicate_event_is_answered_200_and_applied_once(world: MailWorld, poster: EventPoster) -> None:
    bounce = event(world, 1, "bounce", type="bounce", reason="550 5.1.1 unknown user")

    first = poster.post([bounce, bounce])  # SendGrid repeats events within a batch too
    # Meanwhile the address is fixed and the participant set back to ok by hand.
    with world.engine.begin() as conn:
        conn.execute(sa.update(participants).values(email_status="ok"))
    again = poster.post([bounce])

    assert first[0] == again[0] == 200
    assert (first[1]["recorded"], first[1]["duplicates"], first[1]["deliveries_changed"]) == (1, 1, 1)
    assert (again[1]["recorded"], again[1]["duplicates"], again[1]["participants_flagged"]) == (0, 1, 0)
    assert len(recorded(world)) == 1
    assert person(world, 1)["email_status"] == "ok"  # the repeat changed nothing


def test_bounce_blocked_and_dropped_events_mark_delivery_and_participant(world: MailWorld, poster: EventPoster) -> None:
    address = world.emails[0]
    batch = [
        event(world, 0, "bounce", type="bounce", reason=f"550 5.1.1 <{address}>: Recipient address rejected"),
        event(world, 1, "bounce", type="blocked", reason="421 try later"),
        event(world, 2, "dropped", reason="Invalid"),
        event(world, 2, "deferred", response="451 greylisted"),
    ]

    status, answer = poster.post(batch)

    assert status == 200 and answer["deliveries_changed"] == 3 and answer["participants_flagged"] == 3
    assert [r["status"] for r in world.rows()] == ["bounced", "bounced", "dropped"]
    assert [person(world, i)["email_status"] for i in range(3)] == ["bounced", "blocked", "invalid"]
    assert {as_utc(person(world, i)["bounced_at"]) for i in range(3)} == {datetime.fromtimestamp(AT, UTC)}
    errors = [r["last_error"] for r in world.rows()]
    assert "Recipient address rejected" in errors[0] and not any("@" in e for e in errors)
    assert sorted(r["event"] for r in recorded(world)) == ["bounce", "bounce", "deferred", "dropped"]


def test_a_late_processed_event_does_not_undo_a_bounce(world: MailWorld, poster: EventPoster) -> None:
    poster.post([event(world, 0, "bounce", type="bounce")])

    poster.post([event(world, 0, "processed"), event(world, 0, "delivered")])

    assert world.rows()[0]["status"] == "bounced"


def test_events_about_mail_that_is_not_ours_are_recorded_and_answered_200(
    world: MailWorld, poster: EventPoster
) -> None:
    strangers = [
        event(world, 0, delivery_id="999999"),  # no such delivery
        event(world, 1, event_id=str(world.event.id + 1)),  # another event's delivery id
        {k: v for k, v in event(world, 2).items() if k != "delivery_id"},  # sent by something else
        "not an object",
        {"event": "processed"},  # no sg_event_id: nothing to dedupe on
    ]

    status, answer = poster.post(strangers)

    assert status == 200
    assert (answer["received"], answer["not_ours"], answer["unusable"], answer["recorded"]) == (5, 3, 2, 3)
    assert [r["delivery_id"] for r in recorded(world)] == [None, None, None]
    assert [r["status"] for r in world.rows()] == ["queued"] * 3


def test_the_suppression_poller_sets_bounced_at_by_the_same_rule(world: MailWorld) -> None:
    with FakeSendGrid() as fake:
        fake.add_bounce(world.emails[0], created=AT)
        fake.add_bounce(world.emails[1], created=AT, kind="blocks")
        bounces.poll_suppressions(world.engine, sendgrid_client(fake.api_key, host=fake.host), bounces.BounceCursor())

    assert [person(world, i)["email_status"] for i in range(3)] == ["bounced", "blocked", "ok"]
    assert [person(world, i)["bounced_at"] is not None for i in range(3)] == [True, True, False]
    assert as_utc(person(world, 0)["bounced_at"]) == datetime.fromtimestamp(AT, UTC)


def test_fake_sendgrid_reports_every_accepted_message_to_the_receiver(world: MailWorld) -> None:
    key = new_signing_key()
    with (
        running_receiver(world.engine, EventPoster("", key).public_key) as url,
        FakeSendGrid(events_url=url, events_key=key) as fake,
    ):
        messages.dispatch(world.engine, world.ctx(sendgrid(fake)))
        assert fake.events is not None
        fake.events.wait_idle()
        posted = fake.events.events_posted
        by_delivery = {m.body["custom_args"]["delivery_id"]: m.message_id for m in fake.messages}

    assert posted == 3
    rows = world.rows()
    assert all(r["status"] == "sent" and r["accepted_at"] is not None for r in rows)
    assert {str(r["id"]): r["provider_message_id"] for r in rows} == by_delivery
    assert {r["delivery_id"] for r in recorded(world)} == {r["id"] for r in rows}


def test_only_processed_events_count_toward_the_accepted_time(world: MailWorld, poster: EventPoster) -> None:
    # A delivered event implies acceptance too; a deferred one does not.
    poster.post([event(world, 0, "deferred"), event(world, 1, "delivered")])

    rows = world.rows()
    assert rows[0]["accepted_at"] is None and rows[0]["status"] == "queued"
    assert rows[1]["accepted_at"] is not None and rows[1]["status"] == "sent"
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(email_deliveries)).scalar_one() == 3


def test_a_batch_mixing_new_and_repeated_events_applies_only_the_new(world: MailWorld, poster: EventPoster) -> None:
    seen = [event(world, 0), event(world, 1, "deferred")]
    poster.post(seen)
    fresh = [event(world, 1), event(world, 2, "dropped", reason="Bounced Address")]

    status, answer = poster.post([seen[0], fresh[0], seen[1], fresh[1]])

    assert status == 200
    assert (answer["recorded"], answer["duplicates"], answer["deliveries_changed"]) == (2, 2, 2)
    assert [r["status"] for r in world.rows()] == ["sent", "sent", "dropped"]
    assert person(world, 2)["email_status"] == "bounced"
    assert len(recorded(world)) == 4
