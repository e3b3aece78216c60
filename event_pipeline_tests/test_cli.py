"""The `event-pipeline` command, driven the way a person or a script would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

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
    # Every row not loaded is a finding (the duplicates name the row they repeat), and the counts agree.
    assert [f["row"] for f in report["findings"]] == sorted(s.invalid_rows + s.duplicate_rows)
    assert {f["severity"] for f in report["findings"]} == {"error"}
    assert report["counts"]["not_loaded"] == report["invalid"] + report["duplicates_in_file"] == 5
    assert [f["reason"] for f in report["findings"] if f["row"] in s.duplicate_rows][1].startswith("repeats row 2 ")
    strict = cli.invoke(main, ["check", str(tmp_path / "c.csv"), "--json", "--strict"])
    assert strict.exit_code == 2 and json.loads(strict.output)["status"] == "rejected"


def test_import_json_then_status(cli: CliRunner, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "i.csv", sample(12, invalid=1, duplicates=1).rows)
    result = cli.invoke(main, ["import", str(source), "--event", "devcon-2026", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout is the one JSON document, nothing else
    assert summary["status"] == "done" and summary["state"] == "completed" and summary["ran"] is True
    counts = summary["counts"]
    assert (counts["rows_in_file"], counts["loaded_new"], counts["rejected"], counts["duplicates_in_file"]) == (
        12,
        10,
        1,
        1,
    )
    # Welcome emails are the participants' only: the organiser's report is counted apart.
    assert summary["emails"] == {"welcome": {"sent": 10}, "organiser": {"sent": 1}}

    again = cli.invoke(main, ["import", str(source), "--event", "devcon-2026", "--json"])
    assert json.loads(again.stdout)["ran"] is False

    status = cli.invoke(main, ["status", summary["upload_id"], "--json"])
    assert status.exit_code == 0, status.output
    detail = json.loads(status.stdout)
    assert detail["state"] == "completed" and detail["file"] == "i.csv" and detail["event"] == "devcon-2026"
    assert [s["asset"] for s in detail["stages"]] == ASSET_CHAIN
    assert {s["state"] for s in detail["stages"]} == {"done"} and detail["assets_done"] == ASSET_CHAIN
    assert detail["counts"] == counts and detail["errors"] == []
    assert detail["attempts"] == 1 and detail["runs"][0]["status"] == "SUCCESS"
    registered = datetime.fromisoformat(detail["timestamps"]["registered_at"])
    finished = datetime.fromisoformat(detail["timestamps"]["finished_at"])
    assert registered <= finished and registered.tzinfo is not None
    assert datetime.fromisoformat(detail["runs"][0]["ended_at"]) >= registered
    listing = cli.invoke(main, ["status", "--json"])
    overview = json.loads(listing.stdout)
    assert overview["counts"] == {"waiting": 0, "active": 0, "completed": 1, "failed": 0}
    assert [(u["upload_id"], u["file"], u["state"]) for u in overview["uploads"]] == [
        (summary["upload_id"], "i.csv", "completed")
    ]


def test_import_of_rejected_file_exits_nonzero_with_reason(cli: CliRunner, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = cli.invoke(main, ["import", str(empty), "--event", "devcon-2026", "--json"])
    assert result.exit_code == 2
    summary = last_json(result.output)
    assert summary["status"] == "rejected" and summary["state"] == "failed" and "empty.csv" in summary["reason"]
    assert summary["reason"] in summary["errors"]
    failed_stage = [s for s in summary["stages"] if s["state"] == "failed"]
    assert [s["asset"] for s in failed_stage] == ["parsed_rows"] and "empty.csv" in str(failed_stage[0]["error"])
    assert [s["state"] for s in summary["stages"]][2:] == ["skipped"] * 6, "steps the run never started"
    # For people: the reason once, no Dagster error log or stack trace (that is what --verbose is for).
    text = cli.invoke(main, ["import", str(empty), "--event", "devcon-2026", "--force"])
    assert text.exit_code == 2 and "Stack Trace" not in text.output and " - dagster - " not in text.output
    assert f"error: {summary['reason']}" in text.stdout and "FAILED (rejected)" in text.stdout


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


# -- output people read ---------------------------------------------------------------------------------


def _import(cli: CliRunner, source: Path, *args: str) -> Result:
    result = cli.invoke(main, ["import", str(source), "--event", "devcon-2026", *args])
    assert result.exit_code == 0, result.output
    return result


def test_import_shows_stages_not_dagster_debug_logs(cli: CliRunner, tmp_path: Path) -> None:
    result = _import(cli, write_csv(tmp_path / "q.csv", sample(6, invalid=1, duplicates=0).rows))
    assert "DEBUG" not in result.output and " - dagster - " not in result.output, result.output
    bars = [line for line in result.stderr.splitlines() if line.startswith("✓ ")]
    assert [line.split()[1] for line in bars] == ASSET_CHAIN, result.stderr
    assert all(line.split()[-2] == "done" for line in bars)
    assert "welcome emails: 5 sent; organiser: 1 sent" in result.stdout
    assert "stages: all 8 done" in result.stdout
    # --verbose is the way to Dagster's own lines (and it really switches them on).
    loud = _import(cli, tmp_path / "q.csv", "--force", "--verbose")
    assert "DEBUG" in loud.output and "STEP_START" in loud.output


def test_status_text_is_for_people(cli: CliRunner, tmp_path: Path) -> None:
    result = _import(cli, write_csv(tmp_path / "people.csv", sample(8, invalid=2, duplicates=1).rows), "--json")
    upload_id = json.loads(result.stdout)["upload_id"]
    listing = cli.invoke(main, ["status"])
    one = cli.invoke(main, ["status", upload_id])
    for shown in (listing, one):
        assert shown.exit_code == 0, shown.output
        for repr_bit in ("None", "{'", "['", "datetime.", "True", "False"):
            assert repr_bit not in shown.output, (repr_bit, shown.output)
    assert "uploads: 0 waiting, 0 active, 1 completed, 0 failed" in listing.output
    row = next(line for line in listing.output.splitlines() if upload_id in line)
    assert "people.csv" in row
    assert row.split()[-4:] == ["completed", "8", "5", "2"], row
    assert f"{upload_id}  people.csv  COMPLETED" in one.output
    assert "counts: rows in file 8, new 5, updated 0, unchanged 0, duplicates in file 1, rejected 2" in one.output
    assert "welcome emails: 5 sent; organiser: 1 sent" in one.output
    assert "attempts: 1" in one.output and "SUCCESS" in one.output


def _settle_inbox(paths: settings.Paths) -> None:
    """Two looks at the inbox with no quiet period: what the sensor does over two ticks."""
    import time

    from event_pipeline.steps.inbox import watch_inbox
    from event_pipeline.store.migrate import app_engine

    engine = app_engine(settings.database_url())
    now = time.time()
    watch_inbox(engine, paths, now=now, quiet_s=0)
    watch_inbox(engine, paths, now=now + 1, quiet_s=0)


def test_status_shows_drops_that_started_no_run(cli: CliRunner, var_home: settings.Paths, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "first.csv", sample(4, invalid=0, duplicates=0).rows)
    upload_id = json.loads(_import(cli, source, "--json").stdout)["upload_id"]
    write_csv(var_home.inbox / "devcon-2026" / "same-again.csv", sample(4, invalid=0, duplicates=0).rows)
    write_csv(var_home.inbox / "nosuch-2026" / "lost.csv", sample(2, invalid=0, duplicates=0).rows)
    _settle_inbox(var_home)

    data = json.loads(cli.invoke(main, ["status", "--json"]).stdout)
    drops = {d["file"]: d for d in data["set_aside"]}
    assert set(drops) == {"same-again.csv", "lost.csv"}
    assert drops["same-again.csv"]["event"] == "devcon-2026" and upload_id in drops["same-again.csv"]["reason"]
    assert drops["lost.csv"]["event"] == "nosuch-2026"
    assert "event-pipeline event add nosuch-2026" in drops["lost.csv"]["reason"]
    assert [u["upload_id"] for u in data["uploads"]] == [upload_id], "a drop is not an upload"
    text = cli.invoke(main, ["status"]).output
    assert "set aside without an import" in text
    lost = next(line for line in text.splitlines() if "lost.csv" in line)
    assert "nosuch-2026" in lost and "no event with slug 'nosuch-2026'" in lost


def test_without_a_var_dir_every_command_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = tmp_path / "not-initialised"
    monkeypatch.setenv("EVENT_PIPELINE_HOME", str(nowhere))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    source = write_csv(tmp_path / "f.csv", sample(2, invalid=0, duplicates=0).rows)
    line = f"no database at {nowhere / 'event_pipeline.sqlite'}: run `event-pipeline init` or set EVENT_PIPELINE_HOME"
    runner = CliRunner()
    for args in (
        ["status"],
        ["status", "devcon-2026-0123456789abcdef"],
        ["import", str(source), "--event", "devcon-2026"],
        ["upload", str(source), "--event", "devcon-2026"],
        ["participant", "find", "a@example.com", "--event", "devcon-2026"],
        ["checkin", "sometoken", "--event", "devcon-2026"],
        ["event", "list"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (args, result.output)
        assert line in result.stderr and result.stdout == "", (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, result.exception)
    assert not nowhere.exists(), "asking must not create a var dir"


def test_outside_the_repo_without_env_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENT_PIPELINE_", "DAGSTER_", "DATABASE_URL"))}
    cli_bin = Path(sys.executable).with_name("event-pipeline")
    done = subprocess.run([str(cli_bin), "status"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "run `event-pipeline init` or set EVENT_PIPELINE_HOME" in done.stderr
    assert not (tmp_path / "var").exists()


# -- people at the door ---------------------------------------------------------------------------------


def _live_url(email: str) -> str:
    import os

    import sqlalchemy as sa

    from event_pipeline.access.tokens import TOKEN_KEY_ENV, TokenCodec, checkin_url
    from event_pipeline.store.migrate import app_engine
    from event_pipeline.store.tables import access_tokens, participants

    stmt = (
        sa.select(access_tokens.c.public_id)
        .join(participants, participants.c.id == access_tokens.c.participant_id)
        .where(participants.c.email_norm == email, access_tokens.c.status == "live")
    )
    with app_engine(settings.database_url()).connect() as conn:
        public_id = conn.execute(stmt).scalar_one()
    return checkin_url(
        "https://checkin.example.com/t/", TokenCodec.from_secret(os.environ[TOKEN_KEY_ENV]).token_for(public_id)
    )


def test_participant_find_by_email_gives_id_name_token_and_mail(cli: CliRunner, tmp_path: Path) -> None:
    s = sample(5, invalid=0, duplicates=0)
    _import(cli, write_csv(tmp_path / "p.csv", s.rows))
    name, email = s.rows[2][0], s.rows[2][1]
    asked = f"  {email.upper()} "  # as someone types it at a desk
    found = cli.invoke(main, ["participant", "find", asked, "--event", "devcon-2026", "--json"])
    assert found.exit_code == 0, found.output
    card = json.loads(found.stdout)
    assert (card["name"], card["email"], card["token"], card["welcome_mail"]) == (
        name,
        "p***@example.com",
        "live",
        "sent",
    )
    assert email not in found.output

    text = cli.invoke(main, ["participant", "find", asked, "--event", "devcon-2026"]).output
    assert f"participant {card['participant_id']}: {name} <p***@example.com>" in text
    assert "token: live" in text and "welcome email: sent" in text and email not in text
    # The card follows the door: a check-in shows on it.
    assert cli.invoke(main, ["checkin", _live_url(email), "--event", "devcon-2026"]).exit_code == 0
    after = cli.invoke(main, ["participant", "find", email, "--event", "devcon-2026"]).output
    assert "token: live, checked in" in after

    missing = cli.invoke(main, ["participant", "find", "nobody@example.com", "--event", "devcon-2026"])
    assert missing.exit_code == 1 and "n***@example.com" in missing.output and "nobody@" not in missing.output


def test_verify_token_and_checkin_name_the_participant(cli: CliRunner, tmp_path: Path) -> None:
    s = sample(3, invalid=0, duplicates=0)
    _import(cli, write_csv(tmp_path / "door.csv", s.rows))
    name, email = s.rows[0][0], s.rows[0][1]
    url = _live_url(email)
    for args in (["verify-token", url, "--event", "devcon-2026"], ["checkin", url, "--event", "devcon-2026"]):
        result = cli.invoke(main, args)
        assert result.exit_code == 0 and result.output.startswith("VALID:"), result.output
        assert f"{name} <p***@example.com>" in result.output and email not in result.output
    again = cli.invoke(main, ["checkin", url, "--event", "devcon-2026"])
    assert again.exit_code == 1 and f"{name} <p***@example.com>" in again.output
    # Scripts keep their JSON: ids, never a name or an address.
    data = json.loads(cli.invoke(main, ["verify-token", url, "--json"]).stdout)
    assert name not in json.dumps(data, ensure_ascii=False) and "participant_id" in data


# -- upload --wait ----------------------------------------------------------------------------------------


@contextmanager
def _daemon(paths: settings.Paths) -> Iterator[list[str]]:
    """What the inbox sensor and the daemon do with a dropped file, in a thread: look at the inbox
    (no quiet period) and run the import job for every upload that look registers."""
    import threading

    import dagster as dg

    from event_pipeline.cli_runs import quiet_run_config
    from event_pipeline.defs import defs
    from event_pipeline.defs.partitions import UPLOADS
    from event_pipeline.steps.inbox import watch_inbox
    from event_pipeline.store.migrate import app_engine

    engine = app_engine(settings.database_url())
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("import_upload")
    stop = threading.Event()
    launched: list[str] = []

    def tick() -> None:
        while not stop.wait(0.1):
            for new in watch_inbox(engine, paths, quiet_s=0).registered:
                instance.add_dynamic_partitions(UPLOADS, [new.upload_id])
                launched.append(new.upload_id)
                job.execute_in_process(
                    instance=instance, partition_key=new.upload_id, run_config=quiet_run_config(verbose=False)
                )

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield launched
    finally:
        stop.set()
        thread.join(timeout=120)


def test_upload_wait_follows_the_daemons_run_to_the_end(
    cli: CliRunner, var_home: settings.Paths, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "waited.csv", sample(7, invalid=1, duplicates=0).rows)
    with _daemon(var_home) as launched:
        result = cli.invoke(main, ["upload", str(source), "--event", "devcon-2026", "--wait", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    upload_id = result.stdout.splitlines()[1]
    assert launched == [upload_id]
    bars = [line for line in result.stderr.splitlines() if line.startswith("✓ ")]
    assert [line.split()[1] for line in bars] == ASSET_CHAIN, result.stderr
    assert f"{upload_id}  waited.csv  COMPLETED" in result.stdout
    assert "welcome emails: 6 sent; organiser: 1 sent" in result.stdout
    assert "DEBUG" not in result.output

    # The same content again starts no run: said at once, with the earlier upload's story.
    again = cli.invoke(main, ["upload", str(source), "--event", "devcon-2026", "--wait", "--timeout", "5"])
    assert again.exit_code == 0, again.output
    assert f"identical to upload {upload_id}" in again.stderr and "COMPLETED" in again.stdout


def test_upload_wait_gives_up_after_its_timeout(cli: CliRunner, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "nobody-watching.csv", sample(2, invalid=0, duplicates=0).rows)
    result = cli.invoke(main, ["upload", str(source), "--event", "devcon-2026", "--wait", "--timeout", "0"])
    assert result.exit_code == 1, result.output
    upload_id = result.stdout.splitlines()[1]
    said = f"after 0 s it is still waiting in the inbox; follow it with `event-pipeline status {upload_id}`"
    assert said in result.stderr


def test_an_unreachable_database_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("EVENT_PIPELINE_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://app:secret-pw@127.0.0.1:{port}/events")
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 2, result.output
    assert f"cannot open the participants database postgresql+psycopg://app:***@127.0.0.1:{port}/events" in (
        result.stderr
    )
    assert "secret-pw" not in result.output and isinstance(result.exception, SystemExit)
