"""The import job and the failure sensor, in process, sending through SendGrid (FakeSendGrid):
welcome mail per participant, the organiser's report or failure notice, each exactly once."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.access.tokens import DEFAULT_CHECKIN_BASE_URL, TokenCodec, checkin_url
from event_pipeline.defs.assets import upload_assets
from event_pipeline.defs.jobs import import_job
from event_pipeline.defs.partitions import UPLOADS
from event_pipeline.defs.resources import MailerResource, default_resources
from event_pipeline.defs.sensors import import_failure_sensor
from event_pipeline.mail.outbox import outbox_messages
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.store.tables import access_tokens
from event_pipeline.store.uploads import Upload
from event_pipeline_tests.mail.helpers import custom_args, qr_text
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event
from event_pipeline_tests.support.sendgrid_server import FakeSendGrid

ORGANISER = "organiser@example.com"


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def resources_for(fake: FakeSendGrid) -> dict[str, object]:
    return {
        **default_resources(),
        "mailer": MailerResource(backend="sendgrid", sendgrid_api_key=fake.api_key, sendgrid_host=fake.host),
    }


def run_job(instance: dg.DagsterInstance, fake: FakeSendGrid, source: Path) -> tuple[Upload, dg.ExecuteInProcessResult]:
    upload, _ = register_local_file(engine(), settings.paths(), event_slug="devcon-2026", source=source)
    if not instance.has_dynamic_partition(UPLOADS, upload.id):
        instance.add_dynamic_partitions(UPLOADS, [upload.id])
    defs = dg.Definitions(assets=upload_assets, jobs=[import_job], resources=resources_for(fake))
    result = defs.resolve_job_def("import_upload").execute_in_process(
        instance=instance, partition_key=upload.id, raise_on_error=False, tags={"dagster/partition": upload.id}
    )
    return upload, result


def recipients(fake: FakeSendGrid, kind: str) -> list[str]:
    return [
        m.body["personalizations"][0]["to"][0]["email"] for m in fake.messages if custom_args(m.body)["kind"] == kind
    ]


def test_import_sends_one_welcome_each_and_one_report_even_when_run_again(
    instance: dg.DagsterInstance, var_home: settings.Paths, fake: FakeSendGrid
) -> None:
    make_event()
    s = sample(14, invalid=1, duplicates=1)
    source = write_csv(var_home.home / "in" / "list.csv", s.rows)

    _, first = run_job(instance, fake, source)
    _, second = run_job(instance, fake, source)  # the same partition materialized again

    assert first.success and second.success
    welcomed = recipients(fake, "welcome")
    assert len(welcomed) == 12 and len(set(welcomed)) == 12
    assert recipients(fake, "import_complete") == [ORGANISER]
    for m in fake.messages:
        assert not any("@" in v for v in custom_args(m.body).values())
        if custom_args(m.body)["kind"] == "welcome":
            [attachment] = m.body["attachments"]
            participant_id = int(custom_args(m.body)["participant_id"])
            assert qr_text(base64.b64decode(attachment["content"])) == checkin_url_in_qr(participant_id)
    [report] = [m for m in fake.messages if custom_args(m.body)["kind"] == "import_complete"]
    assert "participant_id" not in custom_args(report.body)
    assert report.body["subject"] == "[Dev Conference] 참가자 파일 처리 완료: 신규 12명, 오류 1행"
    assert "파일의 행 수: 14" in report.body["content"][0]["value"]
    meta = first.asset_materializations_for_node("welcome_emails")[0].metadata
    assert meta["sent"].value == 12
    assert not list(outbox_messages(var_home.outbox))  # everything went through SendGrid


def checkin_url_in_qr(participant_id: int) -> str:
    """The URL the pipeline's own token key puts in this participant's QR code."""
    with engine().connect() as conn:
        public_id = conn.execute(
            sa.select(access_tokens.c.public_id).where(access_tokens.c.participant_id == participant_id)
        ).scalar_one()
    codec = TokenCodec.from_secret(os.environ["EVENT_PIPELINE_TOKEN_KEY"])
    return checkin_url(DEFAULT_CHECKIN_BASE_URL, codec.token_for(public_id))


def test_failed_import_tells_the_organiser_once_through_sendgrid(
    instance: dg.DagsterInstance, var_home: settings.Paths, fake: FakeSendGrid
) -> None:
    make_event()
    source = var_home.home / "in" / "broken.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    _, result = run_job(instance, fake, source)
    assert not result.success
    failure_event = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    ctx = dg.build_run_status_sensor_context(
        sensor_name=import_failure_sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure_event,
        resources=resources_for(fake),
    ).for_run_failure()

    import_failure_sensor(ctx)
    import_failure_sensor(ctx)

    assert recipients(fake, "import_failed") == [ORGANISER]
    assert recipients(fake, "welcome") == []
    [notice] = fake.messages
    assert notice.body["subject"] == "[Dev Conference] 참가자 파일을 처리하지 못했습니다"
    assert '"broken.csv" 파일을 처리하지 못했습니다' in notice.body["content"][0]["value"]


def test_provider_refusing_the_report_does_not_fail_a_finished_import(
    instance: dg.DagsterInstance, var_home: settings.Paths, fake: FakeSendGrid
) -> None:
    make_event()
    # Every row invalid: no welcome mail, so the organiser's report is the first request sent.
    rows = [["", f"broken-{i}", "", "", ""] for i in range(3)]
    fake.fail_next(1, 401)
    upload, result = run_job(instance, fake, write_csv(var_home.home / "in" / "bad.csv", rows))
    assert result.success
    # Not even a failed attempt of the step: the refusal is logged, not raised.
    assert not [e for e in result.all_events if e.is_step_failure or e.event_type_value == "STEP_UP_FOR_RETRY"]
    report = result.asset_materializations_for_node("import_report")[0]
    assert report.metadata["organiser_notified"].value is False
    with engine().connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM uploads WHERE id = :u"), {"u": upload.id}).scalar_one()
        notice = conn.execute(
            sa.text("SELECT status FROM email_deliveries WHERE kind = 'import_complete'")
        ).scalar_one()
    assert status == "done"
    assert notice == "awaiting_retry"  # put back for the send_due_emails schedule
    assert recipients(fake, "import_complete") == []
