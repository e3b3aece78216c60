"""`event-pipeline undo` as an organiser runs it, and how `status` shows an undone upload."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from event_pipeline import settings
from event_pipeline.cli import main
from event_pipeline_tests.support.participants import write_csv


@pytest.fixture
def cli(database_url: str, var_home: settings.Paths) -> CliRunner:
    runner = CliRunner()
    for args in (
        ["init"],
        ["event", "add", "devcon-2026", "--name", "DevCon", "--organiser-email", "org@example.com", "--language", "en"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    return runner


def last_json(output: str) -> dict[str, Any]:
    start = output.rindex("\n{\n") + 1 if "\n{\n" in output else output.index("{")
    data = json.loads(output[start:])
    assert isinstance(data, dict)
    return data


def imported(cli: CliRunner, var_home: settings.Paths, name: str, rows: list[list[str]]) -> str:
    path = write_csv(var_home.home / "in" / name, rows)
    result = cli.invoke(main, ["import", str(path), "--event", "devcon-2026", "--json"])
    assert result.exit_code == 0, result.output
    return str(last_json(result.output)["upload_id"])


def row(i: int, name: str) -> list[str]:
    return [name, f"person{i}@example.com", f"010-2000-{3000 + i:04d}", "개발팀", "사원"]


def test_dry_run_then_undo_then_status(cli: CliRunner, var_home: settings.Paths) -> None:
    first = imported(cli, var_home, "a.csv", [row(0, "김철수"), row(1, "이영희")])
    fix = imported(cli, var_home, "b.csv", [row(0, "김철수 (정정)"), row(2, "박민수")])

    dry = cli.invoke(main, ["undo", fix, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert dry.output.startswith(f"dry run, nothing changed: undo of upload {fix} (b.csv, event devcon-2026)")
    assert "would remove 1 participant(s) only this upload added" in dry.output
    assert "p***@example.com" in dry.output and "person2@example.com" not in dry.output
    assert "would restore 1 field(s) of 1 participant(s)" in dry.output
    assert "mail already sent to these participants (1; their tickets would scan as revoked)" in dry.output
    listed = cli.invoke(main, ["status", fix, "--json"])
    assert last_json(listed.output)["status"] == "done"

    done = cli.invoke(main, ["undo", fix, "--json"])
    assert done.exit_code == 0, done.output
    report = last_json(done.output)
    assert report["applied"] is True and report["already_undone"] is False
    assert report["counts"]["participants_removed"] == 1
    assert report["counts"]["mail_already_sent"] == 1
    assert len(report["removed"]) == 1 and isinstance(report["removed"][0], int)
    assert "@" not in done.output  # --json carries ids and counts, no address

    detail = last_json(cli.invoke(main, ["status", fix, "--json"]).output)
    assert detail["status"] == "undone" and detail["state"] == "undone"
    assert detail["timestamps"]["undone_at"] is not None
    assert detail["undo"]["participants_removed"] == 1
    text = cli.invoke(main, ["status", fix]).output
    assert "UNDONE" in text and "participants removed 1" in text
    overview = last_json(cli.invoke(main, ["status", "--json"]).output)
    assert overview["counts"]["undone"] == 1 and overview["counts"]["completed"] == 1
    assert "1 undone" in cli.invoke(main, ["status"]).output

    again = cli.invoke(main, ["undo", fix, "--json"])
    assert again.exit_code == 0
    assert last_json(again.output)["already_undone"] is True
    said = cli.invoke(main, ["undo", fix])
    assert said.exit_code == 0 and f"upload {fix} was undone already at " in said.output
    assert first != fix


def test_undo_explains_what_a_later_upload_keeps(cli: CliRunner, var_home: settings.Paths) -> None:
    imported(cli, var_home, "a.csv", [row(0, "김철수")])
    middle = imported(cli, var_home, "b.csv", [row(0, "김철수2"), row(5, "새사람")])
    later = imported(cli, var_home, "c.csv", [row(0, "김철수3"), [*row(5, "새사람")[:2], "010-5555-5555", "", ""]])

    result = cli.invoke(main, ["undo", middle])

    assert result.exit_code == 0, result.output
    assert f"name kept: the later upload {later} also set it" in result.output
    assert f"kept: the later upload {later} also set it" in result.output.split("participant(s) this upload added")[1]
    assert f"upload {middle} is now undone" in result.output


def test_refusals_are_one_clear_sentence(cli: CliRunner, var_home: settings.Paths) -> None:
    unknown = cli.invoke(main, ["undo", "devcon-2026-0000000000000000"])
    assert unknown.exit_code == 1
    assert "no upload 'devcon-2026-0000000000000000'; `event-pipeline status` lists the recent ones" in unknown.output
    path = write_csv(var_home.home / "in" / "bad.csv", [row(0, "김철수"), ["", "nope", "", "", ""]])
    rejected = cli.invoke(main, ["import", str(path), "--event", "devcon-2026", "--strict", "--json"])
    assert rejected.exit_code == 2
    upload_id = last_json(rejected.output)["upload_id"]
    refused = cli.invoke(main, ["undo", upload_id, "--json"])
    assert refused.exit_code == 1
    assert f"upload {upload_id} was rejected, so none of its rows were loaded" in refused.output
    assert "Traceback" not in refused.output


def test_an_undone_file_is_not_imported_again(cli: CliRunner, var_home: settings.Paths) -> None:
    path = write_csv(var_home.home / "in" / "a.csv", [row(0, "김철수")])
    upload_id = imported(cli, var_home, "a.csv", [row(0, "김철수")])
    assert cli.invoke(main, ["undo", upload_id]).exit_code == 0

    again = cli.invoke(main, ["import", str(path), "--event", "devcon-2026"])

    assert again.exit_code == 1
    assert f"a.csv is upload {upload_id}, which was undone; it is not imported again" in again.output
