"""`undo` end to end: uploads loaded by the real import job, taken back on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.defs import defs
from event_pipeline.defs.resources import mail_context_from_env
from event_pipeline.mail.outbox import outbox_messages
from event_pipeline.steps import messages
from event_pipeline.steps.undo import UndoRefused, plan_undo, undo_upload
from event_pipeline.store import pauses, tables
from event_pipeline.store.tables import SEQ_FIELDS
from event_pipeline.store.uploads import Upload
from event_pipeline_tests.support.participants import write_csv
from event_pipeline_tests.support.pipeline import engine, make_event, run_import

pytestmark = pytest.mark.usefixtures("database_url")


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def person(i: int, name: str = "", department: str = "개발팀", phone: str = "") -> list[str]:
    return [name or f"김민{i}", f"p{i}@example.com", phone or f"010-{1000 + i:04d}-{5000 + i:04d}", department, "사원"]


def load(instance: dg.DagsterInstance, var_home: settings.Paths, name: str, rows: list[list[str]]) -> Upload:
    upload, result = run_import(instance, write_csv(var_home.home / "in" / name, rows))
    assert result.success, name
    return upload


def people() -> dict[str, dict[str, Any]]:
    """Participants by address (tombstones left out), with every field and seq."""
    names = ("id", "email_norm", "status", *SEQ_FIELDS, *(f + "_seq" for f in SEQ_FIELDS))
    cols = [tables.participants.c[c] for c in names]
    with engine().connect() as conn:
        rows = conn.execute(sa.select(*cols).where(tables.participants.c.status != "removed"))
        return {r.email_norm: dict(r._mapping) for r in rows}


def dump() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for "nothing changed" comparisons."""
    with engine().connect() as conn:
        return {
            t.name: sorted((tuple(str(v) for v in r) for r in conn.execute(sa.select(t))), key=str)
            for t in tables.metadata.sorted_tables
        }


def count(stmt: Any) -> int:
    with engine().connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def pause_mail() -> None:
    """Mail stays queued during the import (as while a refused key pauses it)."""
    pauses.set_pause(engine(), "outbox", "mail paused: test", datetime.now(UTC) + timedelta(hours=1))


def test_undo_of_a_first_upload_leaves_the_event_empty(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    pause_mail()
    first = load(instance, var_home, "first.csv", [person(i) for i in range(5)])
    d, t, p = tables.email_deliveries.c, tables.access_tokens.c, tables.participants.c
    assert count(sa.select(sa.func.count()).where(d.kind == "welcome", d.status == "queued")) == 5

    result = undo_upload(engine(), first.id)

    assert result.applied and not result.already_undone
    assert result.plan.summary()["participants_removed"] == 5
    assert result.plan.summary()["mail_cancelled"] == 5
    assert count(sa.select(sa.func.count()).where(p.status != "removed")) == 0
    assert count(sa.select(sa.func.count()).where(t.status == "live")) == 0
    assert count(sa.select(sa.func.count()).where(t.status == "revoked", t.revoked_at.is_not(None))) == 5
    assert count(sa.select(sa.func.count()).where(d.kind == "welcome", d.status != "cancelled")) == 0
    # The tombstones keep no address or name of the people taken out.
    tombstones = json.dumps(dump()["participants"], ensure_ascii=False)
    assert "@example.com" not in tombstones and "김민" not in tombstones
    with engine().connect() as conn:
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == first.id)).one()
    assert up.status == "undone" and up.undone_at is not None
    assert json.loads(up.undo_summary)["participants_removed"] == 5

    # Mail resumes: nothing cancelled goes out, now or on a later dispatch.
    pauses.clear_pause(engine(), "outbox")
    messages.send_due_emails(engine(), mail_context_from_env(), stale_after=timedelta(minutes=15))
    assert list(outbox_messages(var_home.outbox, "welcome")) == []
    assert count(sa.select(sa.func.count()).where(d.kind == "welcome", d.status == "cancelled")) == 5

    # The organiser's corrected file lists some of the same people: they come back afresh.
    second = load(instance, var_home, "second.csv", [person(i) for i in range(3)] + [person(9)])
    assert second.id != first.id
    assert sorted(people()) == ["p0@example.com", "p1@example.com", "p2@example.com", "p9@example.com"]
    assert count(sa.select(sa.func.count()).where(t.status == "live")) == 4
    assert len(list(outbox_messages(var_home.outbox, "welcome"))) == 4


def test_undo_of_a_correcting_upload_restores_values_byte_for_byte(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    # Korean text with the inner spacing the normaliser keeps, and values that differ only in it.
    originals = [
        person(0, name="김 민 수", department="개발  1팀"),
        person(1, name="이서연", department="마케팅 팀 (서울)"),
        person(2, name="박지호"),
    ]
    load(instance, var_home, "first.csv", originals)
    before = people()
    with engine().connect() as conn:
        tokens_before = conn.execute(sa.select(tables.access_tokens).order_by(tables.access_tokens.c.id)).all()
    correction = [
        person(0, name="김민수", department="개발 1팀"),
        person(1, name="이서연", department="마케팅팀", phone="010-9999-0001"),
        person(2, name="박지호"),
    ]
    fix = load(instance, var_home, "correction.csv", correction)
    assert people() != before
    assert people()["p0@example.com"]["name"] == "김민수"

    result = undo_upload(engine(), fix.id)

    after = people()
    assert after == before  # every field and every seq, compared as Python str/int: byte for byte
    assert after["p0@example.com"]["name"].encode() == "김 민 수".encode()
    assert {r.participant_id for r in result.plan.restored} == {
        before["p0@example.com"]["id"],
        before["p1@example.com"]["id"],
    }
    assert result.plan.summary()["participants_restored"] == 2
    assert result.plan.summary()["participants_removed"] == 0
    assert result.plan.kept_fields == []
    with engine().connect() as conn:
        tokens_after = conn.execute(sa.select(tables.access_tokens).order_by(tables.access_tokens.c.id)).all()
    assert tokens_after == tokens_before  # a correction's undo touches no ticket


def test_undo_of_an_upload_a_later_one_built_on_reverts_the_rest(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    load(instance, var_home, "a.csv", [person(i) for i in range(3)])
    original = people()
    middle = load(
        instance,
        var_home,
        "b.csv",
        [person(0, name="정정된"), person(1, department="영업팀"), person(2), person(7, name="새사람")],
    )
    later = load(
        instance, var_home, "c.csv", [person(0, name="다시정정"), person(7, name="새사람", phone="010-7777-7777")]
    )

    plan = plan_undo(engine(), middle.id)
    built_on = people()
    ids = {email: row["id"] for email, row in built_on.items()}
    assert [(k.participant_id, k.field, k.later_upload_id) for k in plan.kept_fields] == [
        (ids["p0@example.com"], "name", later.id)
    ]
    assert [(k.participant_id, k.later_upload_ids) for k in plan.kept_participants] == [
        (ids["p7@example.com"], (later.id,))
    ]
    assert [(r.participant_id, r.fields) for r in plan.restored] == [(ids["p1@example.com"], ("department",))]
    assert plan.removed == []

    undo_upload(engine(), middle.id)

    now = people()
    assert now["p0@example.com"]["name"] == "다시정정"  # the later upload's, kept
    assert now["p1@example.com"] == original["p1@example.com"]  # reverted, seqs included
    assert now["p7@example.com"]["status"] == "active"  # created by the undone upload, built on later
    assert now["p7@example.com"] == built_on["p7@example.com"]


def test_dry_run_changes_nothing_and_says_what_the_undo_does(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    pause_mail()
    load(instance, var_home, "a.csv", [person(i) for i in range(3)])
    fix = load(instance, var_home, "b.csv", [person(0, name="고친이름"), person(5)])
    before = dump()

    dry = undo_upload(engine(), fix.id, dry_run=True)

    assert dump() == before
    assert not dry.applied
    assert dry.plan.summary()["participants_removed"] == 1
    assert dry.plan.summary()["fields_restored"] >= 1
    real = undo_upload(engine(), fix.id)
    assert real.plan.as_json() == dry.plan.as_json()
    assert dump() != before


def test_undo_twice_is_harmless(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    first = load(instance, var_home, "a.csv", [person(i) for i in range(2)])
    undo_upload(engine(), first.id)
    after_first = dump()

    again = undo_upload(engine(), first.id)

    assert again.already_undone and not again.applied
    assert again.undone_at is not None
    assert dump() == after_first
    with pytest.raises(UndoRefused, match="undone already"):
        plan_undo(engine(), first.id)


def test_an_undone_upload_is_never_imported_again(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    path = write_csv(var_home.home / "in" / "a.csv", [person(i) for i in range(2)])
    first, result = run_import(instance, path)
    assert result.success
    undo_upload(engine(), first.id)

    again, rerun = run_import(instance, path)  # a run launched by hand for the same partition

    assert again.id == first.id
    assert not rerun.success
    assert people() == {}
    with engine().connect() as conn:
        status = conn.execute(sa.select(tables.uploads.c.status).where(tables.uploads.c.id == first.id)).scalar()
    assert status == "undone"


def test_refusals(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    with pytest.raises(UndoRefused, match="no upload 'devcon-2026-nope'"):
        undo_upload(engine(), "devcon-2026-nope")
    bad = [person(0), ["", "not-an-email", "", "", ""]]
    rejected, result = run_import(instance, write_csv(var_home.home / "in" / "bad.csv", bad), strict=True)
    assert not result.success
    with pytest.raises(UndoRefused, match="was rejected"):
        undo_upload(engine(), rejected.id)
    from event_pipeline.steps.inbox import register_local_file

    waiting, _ = register_local_file(
        engine(), settings.paths(), event_slug="devcon-2026", source=write_csv(var_home.home / "w.csv", [person(3)])
    )
    with pytest.raises(UndoRefused, match="still being imported"):
        undo_upload(engine(), waiting.id, dry_run=True)


def test_the_job_runs_in_process_with_counts_and_no_personal_data(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    rows = [person(i, name=f"홍길{i}") for i in range(3)]
    first = load(instance, var_home, "a.csv", rows)

    job = defs.resolve_job_def("undo_upload")
    result = job.execute_in_process(
        instance=instance, run_config={"ops": {"undo_upload_op": {"config": {"upload_id": first.id}}}}
    )

    assert result.success
    outputs = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in outputs[0].step_output_data.metadata.items()}
    assert metadata["participants_removed"] == 3 and metadata["applied"] is True
    assert count(sa.select(sa.func.count()).where(tables.participants.c.status != "removed")) == 0
    secrets = [value for row in rows for value in (row[0], row[1], row[2])]
    stored = b"".join(p.read_bytes() for p in Path(var_home.dagster_home).rglob("*") if p.is_file())
    logged = json.dumps([str(e) for e in result.all_events], ensure_ascii=False)
    for value in secrets:
        assert value not in logged
        assert value.encode() not in stored


def test_the_same_file_dropped_again_after_undo_is_set_aside_saying_so(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    from event_pipeline.steps.inbox import watch_inbox

    make_event()
    path = write_csv(var_home.home / "in" / "a.csv", [person(i) for i in range(2)])
    first, result = run_import(instance, path)
    assert result.success
    undo_upload(engine(), first.id)
    dropped = var_home.inbox / "devcon-2026" / "a.csv"
    dropped.parent.mkdir(parents=True, exist_ok=True)
    dropped.write_bytes(path.read_bytes())

    passes = [watch_inbox(engine(), var_home, now=t, quiet_s=10.0) for t in (1_000.0, 1_010.0)]

    assert passes[-1].registered == []
    notes = [p.read_text(encoding="utf-8").strip() for p in var_home.processed.rglob("*.reason.txt")]
    assert notes == [
        f"identical to upload {first.id} (a.csv, undone); not imported again; it was undone: to load these rows "
        "again, export or save the file anew and drop that"
    ]
