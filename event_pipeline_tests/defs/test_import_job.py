"""The import job end to end in process: counts, invariant check, re-runs, rejections."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import defs, resources
from event_pipeline.mail.outbox import outbox_messages
from event_pipeline.store import tables
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import ASSET_CHAIN, engine, make_event, run_import


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def _count(table: sa.Table) -> int:
    with engine().connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_definitions_load_with_eight_asset_lineage() -> None:
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("import_upload")
    graph = defs.resolve_asset_graph()
    for parent, child in itertools.pairwise(ASSET_CHAIN):
        assert dg.AssetKey(parent) in graph.get(dg.AssetKey(child)).parent_keys
    assert {n.name for n in job.graph.node_defs} >= set(ASSET_CHAIN)


@pytest.mark.usefixtures("database_url")
def test_twenty_rows_three_invalid_two_duplicates(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    s = sample(20, invalid=3, duplicates=2)
    upload, result = run_import(instance, write_csv(var_home.home / "in" / "list.csv", s.rows))
    assert result.success

    with engine().connect() as conn:
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload.id)).one()
    assert (up.rows_in_file, up.loaded_new, up.rejected_rows, up.duplicates_in_file) == (20, 15, 3, 2)
    assert up.status == "done"
    assert _count(tables.participants) == 15
    assert _count(tables.access_tokens) == 15
    assert not list(var_home.home.rglob("*.png"))  # QR codes live only inside the mails
    assert len(list(outbox_messages(var_home.outbox, "welcome"))) == 15
    assert len(list(outbox_messages(var_home.outbox, "import_complete"))) == 1

    # Invalid rows are reported with the row numbers the organiser sees.
    # Every row not loaded is reported with the row number the organiser sees: the invalid rows
    # and the duplicates, each an error; the counts say the same.
    with open(up.error_report_path, encoding="utf-8-sig", newline="") as fh:
        reported = [(int(r["row"]), r["severity"]) for r in csv.DictReader(fh)]
    assert reported == [(row, "error") for row in sorted(s.invalid_rows + s.duplicate_rows)]
    assert len(reported) == up.rejected_rows + up.duplicates_in_file

    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [("counts_add_up", True)]
    report = result.asset_materializations_for_node("import_report")[0]
    assert report.metadata["rows_in_file"].value == 20
    assert report.metadata["loaded_new"].value == 15


@pytest.mark.usefixtures("database_url")
def test_rerun_changes_nothing_and_sends_nothing(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    source = write_csv(var_home.home / "in" / "list.csv", sample(10, invalid=0, duplicates=0).rows)
    upload, first = run_import(instance, source)
    with engine().connect() as conn:
        tokens_before = set(conn.execute(sa.select(tables.access_tokens.c.public_id)).scalars())
    mails_before = [m["Message-ID"] for m in outbox_messages(var_home.outbox)]

    _, second = run_import(instance, source)
    assert first.success and second.success
    with engine().connect() as conn:
        tokens_after = set(conn.execute(sa.select(tables.access_tokens.c.public_id)).scalars())
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload.id)).one()
    assert tokens_after == tokens_before
    assert [m["Message-ID"] for m in outbox_messages(var_home.outbox)] == mails_before
    # A re-run of the same upload reports what the upload did, not "10 unchanged".
    assert (up.loaded_new, up.unchanged) == (10, 0)


@pytest.mark.usefixtures("database_url")
def test_second_upload_counts_updates_and_unchanged(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    s = sample(6, invalid=0, duplicates=0)
    run_import(instance, write_csv(var_home.home / "in" / "a.csv", s.rows))
    changed = [list(r) for r in s.rows]
    changed[0][3] = "영업팀"  # department changed -> updated
    changed.append(["새참가자", "new.person@example.com", "", "", ""])
    upload, result = run_import(instance, write_csv(var_home.home / "in" / "b.csv", changed))
    assert result.success
    with engine().connect() as conn:
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload.id)).one()
    assert (up.loaded_new, up.updated, up.unchanged) == (1, 1, 5)
    assert _count(tables.participants) == 7
    assert len(list(outbox_messages(var_home.outbox, "welcome"))) == 7


def test_unreadable_file_is_rejected_without_retry(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    bad = var_home.home / "in" / "participants.csv"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    upload, result = run_import(instance, bad)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1 and failures[0].step_key == "parsed_rows"
    assert not [e for e in result.all_events if e.event_type_value == "STEP_RESTARTED"]
    with engine().connect() as conn:
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload.id)).one()
    assert up.status == "rejected"
    assert "participants.csv" in up.reason and "PDF" in up.reason
    assert _count(tables.participants) == 0


def test_strict_mode_loads_nothing_when_a_row_is_invalid(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    s = sample(10, invalid=1, duplicates=0)
    upload, result = run_import(instance, write_csv(var_home.home / "in" / "s.csv", s.rows), strict=True)
    assert not result.success
    with engine().connect() as conn:
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload.id)).one()
    assert up.status == "rejected" and "strict mode" in up.reason and f"row {s.invalid_rows[0]}" in up.reason
    assert _count(tables.participants) == 0


def test_no_pii_in_dagster_event_log(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    s = sample(8, invalid=1, duplicates=1)
    run_import(instance, write_csv(var_home.home / "in" / "p.csv", s.rows))
    runs = instance.get_run_records()
    assert len(runs) == 1
    dump = "\n".join(
        r.event_log_entry.to_json() for r in instance.get_records_for_run(runs[0].dagster_run.run_id).records
    )
    assert "counts_add_up" in dump  # the dump really holds the run's events
    for name, email, phone, *_ in s.rows:
        assert email.lower() not in dump.lower()
        assert phone not in dump
        if len(name) > 1:
            assert name not in dump


def test_upload_file_asset_refuses_a_tampered_store_copy(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    source = write_csv(var_home.home / "in" / "t.csv", sample(3, invalid=0, duplicates=0).rows)
    from event_pipeline.steps.inbox import register_local_file

    upload, _ = register_local_file(engine(), var_home, event_slug="devcon-2026", source=source)
    Path(upload.stored_path).write_bytes(b"name,email\nx,y@example.com\n")
    instance.add_dynamic_partitions("uploads", [upload.id])
    result = defs.resolve_job_def("import_upload").execute_in_process(
        instance=instance, partition_key=upload.id, raise_on_error=False
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "upload_file"


def test_strict_mode_from_the_launchpad_config(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    source = write_csv(var_home.home / "in" / "l.csv", sample(6, invalid=1, duplicates=0).rows)
    from event_pipeline.steps.inbox import register_local_file

    upload, _ = register_local_file(engine(), var_home, event_slug="devcon-2026", source=source)
    instance.add_dynamic_partitions("uploads", [upload.id])
    result = defs.resolve_job_def("import_upload").execute_in_process(
        instance=instance,
        partition_key=upload.id,
        raise_on_error=False,
        run_config={"ops": {"validated_rows": {"config": {"strict": True}}}},
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_key == "validated_rows"
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None and "strict mode" in (user_failure.description or "")
    assert _count(tables.participants) == 0
    relaxed = defs.resolve_job_def("import_upload").execute_in_process(
        instance=instance,
        partition_key=upload.id,
        raise_on_error=False,
        run_config={"ops": {"validated_rows": {"config": {"strict": False}}}},
    )
    assert relaxed.success and _count(tables.participants) == 5


@pytest.mark.usefixtures("database_url")
def test_a_cp949_reimport_with_one_stray_byte_leaves_existing_names_byte_identical(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    """Once, a detector read such a file as cp1257 and the re-import "updated" 100 names into mojibake."""
    names = [
        f"{family}{given}"
        for family in "김이박최정강조윤장임"
        for given in ("민수", "서연", "하늘", "다은", "지우", "준서", "예린", "도윤", "수아", "현우")
    ]
    rows = ["Name,Email"] + [f"{name},user{i}@example.com" for i, name in enumerate(names)]
    clean = ("\r\n".join(rows) + "\r\n").encode("cp949")
    make_event()
    first_file = var_home.home / "in" / "first.csv"
    first_file.parent.mkdir(parents=True, exist_ok=True)
    first_file.write_bytes(clean)
    _, result = run_import(instance, first_file)
    assert result.success

    def stored() -> dict[str, bytes]:
        with engine().connect() as conn:
            found = conn.execute(sa.select(tables.participants.c.email_norm, tables.participants.c.name)).all()
        return {email: name.encode("utf-8") for email, name in found}

    before = stored()
    assert sorted(n.decode() for n in before.values()) == sorted(names)
    at = clean.index("최".encode("cp949"))
    broken = var_home.home / "in" / "second.csv"
    broken.write_bytes(clean[:at] + b"\x80" + clean[at:])

    upload, _ = run_import(instance, broken)

    with engine().connect() as conn:
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload.id)).one()
    assert up.status == "rejected" and "cp949" in (up.reason or "") and f"byte offset {at}" in (up.reason or "")
    assert (up.updated or 0) == 0
    assert stored() == before


def _chunk_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    keys = [e.step_key or "" for e in result.all_events if e.is_step_success]
    return sorted(k for k in keys if ".send_welcome_chunk[" in k)


def test_mail_is_one_step_in_process_and_chunks_of_the_configured_size_otherwise(
    instance: dg.DagsterInstance, var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In process the steps run one after another: a chunk per 5,000 would only add step and
    # process start-ups. Chunks are for spreading over workers (defs/executors.distributed).
    monkeypatch.delenv("EVENT_PIPELINE_MAIL_CHUNK", raising=False)
    assert resources.default_resources()["mailer"].chunk_size == settings.WHOLE_UPLOAD  # type: ignore[attr-defined]
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    assert resources.default_resources()["mailer"].chunk_size == settings.DEFAULT_MAIL_CHUNK  # type: ignore[attr-defined]
    monkeypatch.delenv("CELERY_BROKER_URL")

    make_event()
    _, whole = run_import(instance, write_csv(var_home.home / "in" / "a.csv", sample(9, invalid=0, duplicates=0).rows))
    assert whole.success
    assert len(_chunk_steps(whole)) == 1

    monkeypatch.setenv("EVENT_PIPELINE_MAIL_CHUNK", "4")
    chunked = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources.default_resources())
    other = sample(10, invalid=0, duplicates=0, domain="example.org").rows
    _, result = run_import(instance, write_csv(var_home.home / "in" / "b.csv", other), definitions=chunked)
    assert result.success
    assert len(_chunk_steps(result)) == 3  # 10 new participants in chunks of at most 4
    finish = result.asset_materializations_for_node("welcome_emails")[0]
    assert finish.metadata["chunks"].value == 3
    welcomes = [m["To"] for m in outbox_messages(var_home.outbox, "welcome")]
    assert len(welcomes) == len(set(welcomes)) == 19  # everyone of both files once
