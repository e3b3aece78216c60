"""Corrected addresses get the ticket once, on SQLite and PostgreSQL: a later upload bringing a
bounced person back under a new address (same phone), and the organiser's correction file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs.assets import upload_assets
from event_pipeline.defs.jobs import import_job
from event_pipeline.defs.partitions import UPLOADS
from event_pipeline.defs.resources import MailerResource, default_resources
from event_pipeline.steps import messages
from event_pipeline.steps.corrections import CorrectionFileError, correct
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.steps.resend import resend
from event_pipeline.store.suppressions import SuppressedAddress, apply_suppressions
from event_pipeline.store.tables import access_tokens, participants
from event_pipeline_tests.mail.helpers import MailWorld, custom_args, sendgrid
from event_pipeline_tests.steps._imports import import_steps
from event_pipeline_tests.steps._mail import fake_fixture, world_factory_fixture  # noqa: F401 - fixtures
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

pytestmark = pytest.mark.usefixtures("database_url")


def to(fake: FakeSendGrid, kind: str | None = None) -> list[str]:
    return [
        m.body["personalizations"][0]["to"][0]["email"]
        for m in fake.messages
        if kind is None or custom_args(m.body)["kind"] == kind
    ]


def person(email: str) -> dict[str, object]:
    with engine().connect() as conn:
        row = conn.execute(sa.select(participants).where(participants.c.email_norm == email)).one()
    return dict(row._mapping)


def tokens_of(participant_id: int) -> list[tuple[str, str]]:
    with engine().connect() as conn:
        stmt = sa.select(access_tokens.c.public_id, access_tokens.c.status).where(
            access_tokens.c.participant_id == participant_id
        )
        return [(str(a), str(b)) for a, b in conn.execute(stmt.order_by(access_tokens.c.id))]


# -- the same phone in a later upload -----------------------------------------------------------


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def import_file(instance: dg.DagsterInstance, fake: FakeSendGrid, source: Path) -> None:
    upload, _ = register_local_file(engine(), settings.paths(), event_slug="devcon-2026", source=source)
    if not instance.has_dynamic_partition(UPLOADS, upload.id):
        instance.add_dynamic_partitions(UPLOADS, [upload.id])
    mailer = MailerResource(backend="sendgrid", sendgrid_api_key=fake.api_key, sendgrid_host=fake.host)
    defs = dg.Definitions(assets=upload_assets, jobs=[import_job], resources={**default_resources(), "mailer": mailer})
    result = defs.resolve_job_def("import_upload").execute_in_process(
        instance=instance, partition_key=upload.id, raise_on_error=False, tags={"dagster/partition": upload.id}
    )
    assert result.success


def test_a_later_upload_with_the_bounced_persons_phone_replaces_it_and_mails_the_new_address_once(
    instance: dg.DagsterInstance, var_home: settings.Paths, fake: FakeSendGrid
) -> None:
    make_event()
    rows = sample(4, invalid=0, duplicates=0).rows
    import_file(instance, fake, write_csv(var_home.home / "in" / "first.csv", rows))
    assert sorted(to(fake, "welcome")) == sorted(r[1] for r in rows)
    bounced, other = rows[0], rows[1]
    apply_suppressions(engine(), [SuppressedAddress(bounced[1], "bounced", "550 user unknown")])
    old = person(bounced[1])

    # The organiser's corrected file: the bounced person under a new address with the same phone
    # (written differently: normalised, it is the same number), and someone new.
    fixed = [bounced[0], "fixed@example.com", bounced[2].replace("-", " "), *bounced[3:]]
    newcomer = ["한가람", "new@example.com", "010-9999-0000", "개발팀", "사원"]
    second = write_csv(var_home.home / "in" / "second.csv", [fixed, newcomer, other])
    import_file(instance, fake, second)
    import_file(instance, fake, second)  # the same upload again: nothing more happens

    new = person("fixed@example.com")
    assert new["phone"] == old["phone"] and new["status"] == "active"
    replaced = person(bounced[1])
    assert (replaced["status"], replaced["replaced_by"]) == ("inactive", new["id"])
    assert [status for _, status in tokens_of(int(str(old["id"])))] == ["revoked"]  # and no new live one
    assert [status for _, status in tokens_of(int(str(new["id"])))] == ["live"]
    assert person("new@example.com")["status"] == "active" and person(other[1])["replaced_by"] is None
    welcomes = to(fake, "welcome")
    assert welcomes.count("fixed@example.com") == 1 and welcomes.count("new@example.com") == 1
    assert len(welcomes) == len(rows) + 2
    # The replaced participant is refused a resend, by the rule that refuses inactive ones.
    ctx_refusal = resend(engine(), None, event_slug="devcon-2026", participant_id=int(str(old["id"])), dry_run=True)
    assert [r.code for r in ctx_refusal.refused] == ["replaced"]


# -- the correction file ------------------------------------------------------------------------


def corrections_file(directory: Path, *rows: tuple[str, str]) -> Path:
    path = directory / "fix.csv"
    path.write_text("old_email,new_email\n" + "".join(f"{a},{b}\n" for a, b in rows), encoding="utf-8")
    return path


def test_correction_file_fixes_addresses_in_place_and_sends_each_ticket_once(
    var_home: settings.Paths, world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(["Kim", "Lee", "Park", "Choi"])
    world.enqueue()
    ctx = world.ctx(sendgrid(fake))
    assert messages.send_mail(world.engine, ctx).stats.sent == 4
    e0, e1, e2, e3 = world.emails
    for email in (e0, e1):
        apply_suppressions(world.engine, [SuppressedAddress(email, "bounced", "550 user unknown")])
    before = person(e0)
    token_before = tokens_of(int(str(before["id"])))
    path = corrections_file(
        var_home.home,
        (e0.upper(), "kim@fixed.example"),
        ("nobody@example.org", "x@example.org"),
        (e2, e3),
        (e1, "not-an-email"),
    )

    dry = correct(world.engine, None, event_slug=world.event.slug, path=path, dry_run=True)
    assert dry.corrected == 1 and person(e0)["email_status"] == "bounced"  # the dry run changed nothing

    result = correct(world.engine, ctx, event_slug=world.event.slug, path=path)

    outcomes = [(r.row, r.outcome, r.code) for r in result.rows]
    assert outcomes == [
        (2, "corrected", ""),
        (3, "refused", "unknown_old_address"),
        (4, "refused", "new_address_taken"),
        (5, "refused", "invalid_address"),
    ]
    assert result.rows[1].reason == "no participant of this event has the address n***@example.org"
    assert result.sent == 1 and to(fake)[4:] == ["kim@fixed.example"]
    assert custom_args(fake.messages[4].body)["kind"] == "ticket"
    after = person("kim@fixed.example")
    assert after["id"] == before["id"] and after["email_status"] == "ok" and after["email_changed_at"] is not None
    assert tokens_of(int(str(after["id"]))) == token_before  # same ticket, sent again

    again = correct(world.engine, ctx, event_slug=world.event.slug, path=path)
    assert again.corrected == 0 and again.rows[0].code == "unknown_old_address"
    assert len(fake.messages) == 5
    # Nothing left for --bounced: the corrected address already got its ticket.
    assert resend(world.engine, ctx, event_slug=world.event.slug, bounced=True).queued == []

    bad = var_home.home / "bad.csv"
    bad.write_text("email,new\n", encoding="utf-8")
    with pytest.raises(CorrectionFileError, match="needs the columns old_email,new_email"):
        correct(world.engine, ctx, event_slug=world.event.slug, path=bad)


def test_resend_bounced_after_a_correction_reaches_exactly_the_corrected_ones(
    var_home: settings.Paths, world_factory: Callable[..., MailWorld], fake: FakeSendGrid
) -> None:
    world = world_factory(["Kim", "Lee", "Park", "Choi"])
    world.enqueue()
    ctx = world.ctx(sendgrid(fake))
    assert messages.send_mail(world.engine, ctx).stats.sent == 4
    e0, e1, e2, _ = world.emails
    for email in (e0, e1, e2):
        apply_suppressions(world.engine, [SuppressedAddress(email, "bounced", "550 user unknown")])
    path = corrections_file(var_home.home, (e0, "kim@fixed.example"), (e1, "lee@fixed.example"))
    fixed = correct(world.engine, ctx, event_slug=world.event.slug, path=path, tickets=False)
    assert fixed.corrected == 2 and len(fake.messages) == 4  # addresses only, no mail yet

    result = resend(world.engine, ctx, event_slug=world.event.slug, bounced=True)

    assert result.sent == 2 and not result.refused
    assert sorted(to(fake)[4:]) == ["kim@fixed.example", "lee@fixed.example"]
    assert {q.participant_id for q in result.queued} == {
        person("kim@fixed.example")["id"],
        person("lee@fixed.example")["id"],
    }
    assert resend(world.engine, ctx, event_slug=world.event.slug, bounced=True).queued == []
    assert len(fake.messages) == 6


def test_a_shared_phone_is_no_proof_of_the_same_person(var_home: settings.Paths) -> None:
    make_event()
    rows = sample(3, invalid=0, duplicates=0).rows
    import_steps(write_csv(var_home.home / "in" / "first.csv", rows))
    for row in rows[:2]:
        apply_suppressions(engine(), [SuppressedAddress(row[1], "bounced", "550 user unknown")])
    office, single = rows[0], rows[1]
    second = [
        ["김하나", "one@example.com", office[2], "", ""],
        ["김두리", "two@example.com", office[2], "", ""],  # two new rows on one line: ambiguous
        [single[0], "single.fixed@example.com", single[2], "", ""],
    ]

    import_steps(write_csv(var_home.home / "in" / "second.csv", second))

    assert person(office[1])["replaced_by"] is None and person(office[1])["status"] == "active"
    assert person(single[1])["replaced_by"] == person("single.fixed@example.com")["id"]
    assert person(rows[2][1])["replaced_by"] is None
