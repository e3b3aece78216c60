"""`resend`, `correct`, `reissue-token` and `status` on the command line, sending through the
SendGrid stand-in as configured by the environment (the way an operator runs them)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from event_pipeline import settings
from event_pipeline.access.tokens import TokenCodec, checkin_base_url_from_env, checkin_url
from event_pipeline.cli import main
from event_pipeline.steps import messages
from event_pipeline.store.suppressions import SuppressedAddress, apply_suppressions
from event_pipeline.store.tables import access_tokens, participants
from event_pipeline_tests.mail.helpers import MailWorld, custom_args, make_world, qr_text, sendgrid
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

pytestmark = pytest.mark.usefixtures("database_url")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        monkeypatch.setenv("EVENT_PIPELINE_MAIL_BACKEND", "sendgrid")
        for name, value in server.client_env().items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
def world(var_home: settings.Paths, fake: FakeSendGrid) -> MailWorld:
    world = make_world(var_home, ["Kim", "Lee", "Park"])
    world.enqueue()
    assert messages.send_mail(world.engine, world.ctx(sendgrid(fake))).stats.sent == 3
    return world


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def pid_of(world: MailWorld, email: str) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(sa.select(participants.c.id).where(participants.c.email_norm == email)).scalar_one())


def test_resend_one_participant_by_address_then_refused_while_in_flight(world: MailWorld, fake: FakeSendGrid) -> None:
    target = pid_of(world, world.emails[0])

    code, out = cli("resend", "--event", world.event.slug, "--participant", world.emails[0], "--json")

    assert code == 0, out
    data = json.loads(out)
    assert [q["participant_id"] for q in data["queued"]] == [target] and data["sent"] == 1
    assert len(fake.messages) == 4 and custom_args(fake.messages[3].body)["kind"] == "ticket"

    with world.engine.begin() as conn:  # every welcome now waiting for a retry: still on its way
        conn.execute(sa.text("UPDATE email_deliveries SET status = 'awaiting_retry' WHERE kind = 'welcome'"))
    code, out = cli("resend", "--event", world.event.slug, "--participant", str(target + 1))
    assert code == 1
    assert f"refused: participant {target + 1} already has ticket mail on its way" in out
    assert "queued 0 ticket(s), 0 sent now, 1 refused" in out
    assert len(fake.messages) == 4

    code, out = cli("resend", "--event", world.event.slug)
    assert code == 2 and "choose exactly one of --participant, --upload and --bounced" in out
    code, out = cli("resend", "--event", "nope", "--bounced")
    assert code == 1 and "no event with slug 'nope'" in out


def test_reissue_token_mails_the_new_ticket_unless_no_mail(world: MailWorld, fake: FakeSendGrid) -> None:
    target = pid_of(world, world.emails[1])

    code, out = cli("reissue-token", str(target), "--json")

    assert code == 0, out
    data = json.loads(out)
    assert data["mail"].startswith("new ticket sent (delivery ")
    [mail] = fake.messages[3:]
    assert mail.body["personalizations"][0]["to"][0]["email"] == world.emails[1]
    with world.engine.connect() as conn:
        live = conn.execute(
            sa.select(access_tokens.c.public_id).where(
                access_tokens.c.participant_id == target, access_tokens.c.status == "live"
            )
        ).scalar_one()
    codec = TokenCodec.from_secret(os.environ["EVENT_PIPELINE_TOKEN_KEY"])
    new_url = checkin_url(checkin_base_url_from_env(), codec.token_for(live))
    [qr] = mail.body["attachments"]
    assert qr_text(base64.b64decode(qr["content"])) == new_url == data["checkin_url"]

    code, out = cli("reissue-token", str(target), "--no-mail")
    assert code == 0, out
    assert "not mailed (--no-mail)" in out
    assert len(fake.messages) == 4


def test_correct_and_status_on_the_command_line(world: MailWorld, fake: FakeSendGrid, var_home: settings.Paths) -> None:
    apply_suppressions(world.engine, [SuppressedAddress(world.emails[2], "bounced", "550 user unknown")])
    code, out = cli("status", "--json")
    assert code == 0, out
    assert json.loads(out)["bounces"] == {world.event.slug: {"participants": 1, "deliveries": 1, "unreported": 1}}
    code, out = cli("status")
    assert "undeliverable mail" in out

    path = var_home.home / "fix.csv"
    path.write_text(f"old_email,new_email\n{world.emails[2]},park@fixed.example\nghost@example.org,a@b.example\n")
    code, out = cli("correct", "--event", world.event.slug, str(path))

    assert code == 0, out
    assert "corrected 1 address(es), 1 row(s) refused" in out
    assert "row 3: refused: no participant of this event has the address g***@example.org" in out
    assert "1 ticket(s) sent now" in out
    assert [m.body["personalizations"][0]["to"][0]["email"] for m in fake.messages[3:]] == ["park@fixed.example"]
    assert world.emails[2] not in out
