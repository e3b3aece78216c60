"""The `event-pipeline` command, driven the way a person or a script would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from event_pipeline import settings
from event_pipeline.cli import main
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import ASSET_CHAIN


def last_json(output: str) -> dict[str, Any]:
    """The JSON document the command printed last (Dagster's run log may precede it)."""
    start = output.rindex("\n{\n") + 1 if "\n{\n" in output else output.index("{")
    data = json.loads(output[start:])
    assert isinstance(data, dict)
    return data


@pytest.fixture
def cli(var_home: settings.Paths) -> CliRunner:
    runner = CliRunner()
    result = runner.invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        main,
        [
            "event",
            "add",
            "devcon-2026",
            "--name",
            "DevCon",
            "--organiser-email",
            "org@example.com",
            "--starts-at",
            "2026-12-10T09:00",
            "--language",
            "en",
        ],
    )
    assert result.exit_code == 0, result.output
    return runner


def test_init_creates_home_key_and_instance_config(cli: CliRunner, var_home: settings.Paths) -> None:
    assert (var_home.dagster_home / "dagster.yaml").is_file()
    secrets_env = var_home.secrets_env.read_text()
    assert "EVENT_PIPELINE_TOKEN_KEY=" in secrets_env
    assert oct(var_home.secrets_env.stat().st_mode & 0o777) == "0o600"
    # Idempotent: a second init keeps the key.
    assert cli.invoke(main, ["init", "--demo"]).exit_code == 0
    assert var_home.secrets_env.read_text() == secrets_env
    listed = cli.invoke(main, ["event", "list"]).output
    assert "devcon-2026" in listed and "demo-2026" in listed


def test_event_add_rejects_bad_slug_and_duplicates(cli: CliRunner) -> None:
    bad = cli.invoke(main, ["event", "add", "Bad Slug!", "--name", "x", "--organiser-email", "o@example.com"])
    assert bad.exit_code != 0 and "invalid event slug" in bad.output
    dup = cli.invoke(main, ["event", "add", "devcon-2026", "--name", "x", "--organiser-email", "o@example.com"])
    assert dup.exit_code != 0 and "already exists" in dup.output


def test_upload_places_file_atomically_and_prints_id(cli: CliRunner, var_home: settings.Paths, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "list.csv", sample(5, invalid=0, duplicates=0).rows)
    result = cli.invoke(main, ["upload", str(source), "--event", "devcon-2026", "--strict"])
    assert result.exit_code == 0, result.output
    upload_id = result.output.strip().splitlines()[-1]
    assert upload_id.startswith("devcon-2026-") and len(upload_id) == len("devcon-2026-") + 16
    inbox = var_home.inbox / "devcon-2026"
    assert sorted(p.name for p in inbox.iterdir()) == ["list.csv", "list.csv.json"]
    assert json.loads((inbox / "list.csv.json").read_text()) == {"strict": True}
    assert (inbox / "list.csv").read_bytes() == source.read_bytes()


def test_upload_refuses_unreadable_file_and_unknown_event(cli: CliRunner, tmp_path: Path) -> None:
    png = tmp_path / "list.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    result = cli.invoke(main, ["upload", str(png), "--event", "devcon-2026"])
    assert result.exit_code != 0 and "list.csv" in result.output and "PNG" in result.output
    ok = write_csv(tmp_path / "ok.csv", sample(2, invalid=0, duplicates=0).rows)
    result = cli.invoke(main, ["upload", str(ok), "--event", "nope"])
    assert result.exit_code != 0 and "event-pipeline event add nope" in result.output


def test_check_json_reports_exact_counts(cli: CliRunner, tmp_path: Path) -> None:
    s = sample(20, invalid=3, duplicates=2)
    result = cli.invoke(main, ["check", str(write_csv(tmp_path / "c.csv", s.rows)), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["status"] == "accepted" and report["reason"] is None
    assert (report["rows"], report["valid"], report["invalid"], report["duplicates_in_file"]) == (20, 17, 3, 2)
    assert report["format"] == "csv" and report["header_row"] == 1
    assert report["columns"]["email"] == "이메일"
    assert sorted({e["row"] for e in report["errors"]}) == s.invalid_rows
    strict = cli.invoke(main, ["check", str(tmp_path / "c.csv"), "--json", "--strict"])
    assert strict.exit_code == 2 and json.loads(strict.output)["status"] == "rejected"


def test_import_json_then_status(cli: CliRunner, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "i.csv", sample(12, invalid=1, duplicates=1).rows)
    result = cli.invoke(main, ["import", str(source), "--event", "devcon-2026", "--json"])
    assert result.exit_code == 0, result.output
    summary = last_json(result.output)
    assert summary["status"] == "done" and summary["ran"] is True
    assert (summary["rows_in_file"], summary["loaded_new"], summary["rejected"], summary["duplicates_in_file"]) == (
        12,
        10,
        1,
        1,
    )
    assert summary["emails"] == {"sent": 11}  # 10 welcome + the organiser's report

    again = cli.invoke(main, ["import", str(source), "--event", "devcon-2026", "--json"])
    assert json.loads(again.output[again.output.index("{") :])["ran"] is False

    status = cli.invoke(main, ["status", summary["upload_id"], "--json"])
    assert status.exit_code == 0, status.output
    detail = json.loads(status.output)
    assert detail["assets_done"] == ASSET_CHAIN
    assert detail["attempts"] == 1 and detail["runs"][0]["status"] == "SUCCESS"
    listing = cli.invoke(main, ["status"])
    assert summary["upload_id"] in listing.output and "done" in listing.output


def test_import_of_rejected_file_exits_nonzero_with_reason(cli: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = cli.invoke(main, ["import", str(empty), "--event", "devcon-2026", "--json"])
    assert result.exit_code == 2
    summary = last_json(result.output)
    assert summary["status"] == "rejected" and "empty.csv" in summary["reason"]


def test_only_init_and_migrate_migrate_and_others_say_which_to_run(var_home: settings.Paths) -> None:
    from event_pipeline.store.db import dispose_engines, make_engine
    from event_pipeline.store.migrate import current_revision, head_revision, upgrade

    upgrade(make_engine(settings.database_url()), "0001")  # a database an older release left
    dispose_engines()
    runner = CliRunner()
    stale = runner.invoke(main, ["status"])
    assert stale.exit_code != 0 and "event-pipeline migrate" in stale.output
    assert current_revision(make_engine(settings.database_url())) == "0001"  # nothing migrated behind our back
    migrated = runner.invoke(main, ["migrate"])
    assert migrated.exit_code == 0 and head_revision() in migrated.output
    assert runner.invoke(main, ["status"]).exit_code == 0


def test_init_leaves_the_var_dir_private(cli: CliRunner, var_home: settings.Paths) -> None:
    import stat

    for path in [var_home.home, *var_home.all_dirs()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in [var_home.secrets_env, var_home.db_file]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
