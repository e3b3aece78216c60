"""Mail that cannot go out (refused key, no key where SendGrid is configured) pauses; it never
fails an import whose data is in, never counts as sent, and is not retried in a loop."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import defs
from event_pipeline.defs.jobs import send_due_emails_job
from event_pipeline.defs.resources import MailerResource, default_resources, mail_context
from event_pipeline.mail.outbox import outbox_messages
from event_pipeline.steps import messages
from event_pipeline.store import tables
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event, run_import
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def definitions(mailer: MailerResource) -> dg.Definitions:
    return dg.Definitions(
        assets=defs.assets,
        jobs=[*(defs.jobs or []), send_due_emails_job],
        resources={**default_resources(), "mailer": mailer},
    )


def deliveries() -> list[sa.Row[tuple[object, ...]]]:
    with engine().connect() as conn:
        return list(conn.execute(sa.select(tables.email_deliveries)).all())


def upload_row(upload_id: str) -> sa.Row[tuple[object, ...]]:
    with engine().connect() as conn:
        return conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload_id)).one()


def error_logs(instance: dg.DagsterInstance, run_id: str, text: str) -> int:
    return sum(
        1
        for record in instance.all_logs(run_id)
        if record.level in (logging.ERROR, logging.CRITICAL) and text in (record.user_message or "")
    )


def test_a_refused_key_pauses_mail_and_the_import_still_succeeds(
    instance: dg.DagsterInstance, var_home: settings.Paths, fake: FakeSendGrid
) -> None:
    make_event()
    refused = MailerResource(backend="sendgrid", sendgrid_api_key="SG.revoked", sendgrid_host=fake.host, workers=4)
    upload, result = run_import(
        instance,
        write_csv(var_home.home / "in" / "a.csv", sample(6, invalid=0, duplicates=0).rows),
        definitions=definitions(refused),
    )
    assert result.success
    up = upload_row(upload.id)
    assert up.status == "done" and "401" in (up.mail_note or "")
    assert not list(var_home.rejected.rglob("*"))  # the file is not filed as failed
    rows = deliveries()
    assert rows and {r.status for r in rows} <= {"queued", "awaiting_retry"}
    assert all(r.attempts == 0 for r in rows)  # a refusal is no attempt: nothing burnt
    refused_so_far = fake.requests_total
    assert 1 <= refused_so_far <= refused.workers  # the first refusal stopped the dispatch
    [report] = result.asset_materializations_for_node("import_report")
    assert "401" in str(report.metadata["mail"].value)
    assert error_logs(instance, result.run_id, "mail paused") == 1  # alerted once

    # A second import during the pause: done too, and the provider is not asked again.
    second, again = run_import(
        instance,
        write_csv(var_home.home / "in" / "b.csv", sample(3, invalid=0, duplicates=0, seed=5).rows),
        definitions=definitions(refused),
    )
    assert again.success and upload_row(second.id).status == "done"
    assert fake.requests_total == refused_so_far
    assert error_logs(instance, again.run_id, "mail paused") == 0

    # Key fixed: once the pause is over, one dispatch sends everything and ends the pause.
    fixed = MailerResource(backend="sendgrid", sendgrid_api_key=fake.api_key, sendgrid_host=fake.host)
    tokens = default_resources()["tokens"]
    ctx = mail_context(fixed, tokens.process_config_and_initialize())  # type: ignore[attr-defined]
    later = datetime.now(UTC) + timedelta(minutes=10)
    run = messages.send_mail(engine(), ctx, now=later, clock=lambda: later)
    assert run.paused is None and run.stats.sent == len(deliveries())
    assert {r.status for r in deliveries()} == {"sent"}
    with engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tables.mail_pauses)).scalar_one() == 0


def test_sendgrid_backend_without_a_key_fails_closed(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    keyless = MailerResource(backend="sendgrid", sendgrid_api_key=None)
    upload, result = run_import(
        instance,
        write_csv(var_home.home / "in" / "a.csv", sample(4, invalid=0, duplicates=0).rows),
        definitions=definitions(keyless),
    )
    assert result.success
    note = upload_row(upload.id).mail_note or ""
    assert "SENDGRID_API_KEY is not set" in note
    assert not list(outbox_messages(var_home.outbox))  # no silent fallback to the local outbox
    rows = deliveries()
    assert rows and all(r.status == "queued" and r.attempts == 0 for r in rows)  # nothing was even claimed
    # The mail job, where operators look for mail trouble, fails with the same clear reason.
    mail = (
        definitions(keyless)
        .resolve_job_def("send_due_emails_job")
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert not mail.success
    [failure] = [e for e in mail.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "SENDGRID_API_KEY is not set" in str(failure.step_failure_data.user_failure_data.description)  # type: ignore[union-attr]
