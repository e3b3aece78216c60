"""`event-pipeline erase` and `retention`, and the Dagster jobs over the same functions: JSON
output, the dry run, and a clear sentence (never the address) for each refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from event_pipeline import settings
from event_pipeline.cli import main
from event_pipeline.defs import defs
from event_pipeline.store import tables
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event, run_import

ADDRESS = "p0-1@example.com"


@pytest.fixture
def imported(var_home: settings.Paths, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    make_event()
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as instance:
        _upload, result = run_import(instance, write_csv(tmp_path / "src" / "list.csv", sample(6, invalid=1).rows))
        assert result.success
        yield instance


def participant_id(address: str) -> int | None:
    with engine().connect() as conn:
        found = conn.execute(sa.select(tables.participants.c.id).where(tables.participants.c.email_norm == address))
        return found.scalar()


@pytest.mark.usefixtures("imported")
def test_erase_dry_run_then_erase_with_json() -> None:
    runner = CliRunner()
    dry = runner.invoke(main, ["erase", "--email", ADDRESS.upper(), "--event", "devcon-2026", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert planned["dry_run"] is True and planned["participants"] == 1 and planned["erasure_id"] is None
    # Its row and the duplicate of it in other case (the report quotes that one).
    assert planned["removed"]["upload_rows_removed"] == 2 and planned["removed"]["report_lines_removed"] == 1
    assert planned["removed"]["outbox_messages_removed"] == 1
    assert participant_id(ADDRESS) is not None

    done = runner.invoke(main, ["erase", "--email", ADDRESS, "--event", "devcon-2026", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    assert result["removed"] == planned["removed"] and result["erasure_id"] == 1 and result["database_cleared"]
    assert participant_id(ADDRESS) is None
    assert ADDRESS not in done.output

    text = runner.invoke(main, ["erase", "--email", "p0-2@example.com"])
    assert text.exit_code == 0, text.output
    assert "1 participant row(s) in every event; removed:" in text.output and "audit line: erasure 2" in text.output


@pytest.mark.usefixtures("imported")
def test_erase_refusals_are_one_clear_sentence_without_the_address() -> None:
    runner = CliRunner()
    nobody = runner.invoke(main, ["erase", "--email", "nobody@example.com"])
    assert nobody.exit_code == 1
    assert "Error: nothing of that address is kept in any event" in nobody.output
    assert "nobody@example.com" not in nobody.output
    in_event = runner.invoke(main, ["erase", "--email", "nobody@example.com", "--event", "devcon-2026"])
    assert "nothing of that address is kept in event devcon-2026" in in_event.output
    unknown = runner.invoke(main, ["erase", "--email", ADDRESS, "--event", "nope"])
    assert unknown.exit_code == 1 and "no event with slug 'nope'" in unknown.output
    with engine().begin() as conn:
        upload_id = conn.execute(sa.select(tables.uploads.c.id)).scalar_one()
        conn.execute(sa.update(tables.uploads).values(status="running"))
    busy = runner.invoke(main, ["erase", "--email", ADDRESS])
    assert busy.exit_code == 1
    assert f"upload {upload_id} of event devcon-2026 is being imported (status running)" in busy.output


@pytest.mark.usefixtures("imported")
def test_retention_command_says_what_it_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["retention", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["days"] == 30 and json.loads(result.output)["uploads"] == 0
    monkeypatch.setenv("EVENT_PIPELINE_RETAIN_UPLOADS_DAYS", "soon")
    bad = runner.invoke(main, ["retention"])
    assert bad.exit_code == 1 and "EVENT_PIPELINE_RETAIN_UPLOADS_DAYS must be a whole number of days" in bad.output


def test_erase_person_job_takes_participant_ids(imported: dg.DagsterInstance) -> None:
    pid = participant_id(ADDRESS)
    assert pid is not None
    job = defs.resolve_job_def("erase_person")
    run = job.execute_in_process(
        instance=imported, run_config={"ops": {"erase_participants": {"config": {"participant_ids": [pid]}}}}
    )
    assert run.success
    assert participant_id(ADDRESS) is None
    again = job.execute_in_process(
        instance=imported,
        run_config={"ops": {"erase_participants": {"config": {"participant_ids": [pid]}}}},
        raise_on_error=False,
    )
    assert not again.success
    retention = defs.resolve_job_def("apply_retention").execute_in_process(instance=imported)
    assert retention.success
    schedule = defs.resolve_schedule_def("apply_retention_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.job_name == "apply_retention"
