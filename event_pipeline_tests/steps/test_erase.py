"""Erasure through the real pipeline: files imported by the import job (outbox mail, error
reports, a bounce digest, originals in processed/), one person erased, then every file under the
var dir and every text column of every table searched for them."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.mail.outbox import outbox_messages
from event_pipeline.steps import erase, inbox
from event_pipeline.store import tables
from event_pipeline_tests.support.leaks import file_leaks
from event_pipeline_tests.support.participants import csv_bytes, sample
from event_pipeline_tests.support.pipeline import engine, make_event, run_import, run_upload

TARGET_NAME = "홍길동"
TARGET_EMAIL = "Gildong.Hong@Example.com"
TARGET_NORM = "gildong.hong@example.com"
TARGET_PHONE = "010-9876-5432"
# The forms the person's data takes in files: as written, normalised, E.164, and how JSON with
# ensure_ascii writes Hangul.
NEEDLES = [
    TARGET_NAME.encode(),
    TARGET_NAME.encode("unicode_escape"),
    TARGET_EMAIL.encode(),
    TARGET_NORM.encode(),
    TARGET_PHONE.encode(),
    b"+821098765432",
]


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def person_rows(seed: int) -> list[list[str]]:
    """Six people, the target among them, and a second row of the target in other case (a
    duplicate the error report quotes)."""
    rows = sample(6, invalid=1, duplicates=0, seed=seed).rows
    rows.insert(2, [TARGET_NAME, TARGET_EMAIL, TARGET_PHONE, "기획팀", "과장"])
    rows.append([TARGET_NAME, TARGET_EMAIL.upper(), TARGET_PHONE, "기획팀", "과장"])
    return rows


def import_through_inbox(instance: dg.DagsterInstance, paths: settings.Paths, slug: str, rows: list[list[str]]) -> str:
    """Dropped in the inbox, received by two looks, imported by the job: the original ends in processed/."""
    folder = paths.inbox / slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "list.csv").write_bytes(csv_bytes(rows))
    inbox.watch_inbox(engine(), paths, now=1_000.0, quiet_s=1.0)
    registered = inbox.watch_inbox(engine(), paths, now=1_001.0, quiet_s=1.0).registered
    assert len(registered) == 1
    assert run_upload(instance, registered[0].upload_id).success
    return registered[0].upload_id


def bounce(participant_email: str) -> None:
    """The target's welcome mail bounces; the provider's reason quotes the address."""
    eng = engine()
    with eng.begin() as conn:
        pid = conn.execute(
            sa.select(tables.participants.c.id)
            .join(tables.events)
            .where(tables.participants.c.email_norm == participant_email, tables.events.c.slug == "devcon-2026")
        ).scalar_one()
        conn.execute(
            sa.update(tables.email_deliveries)
            .where(tables.email_deliveries.c.participant_id == pid)
            .values(status="bounced", last_error=f"550 5.1.1 <{participant_email}>: user unknown")
        )
        conn.execute(
            sa.update(tables.participants).where(tables.participants.c.id == pid).values(email_status="bounced")
        )


def mail_leaks(paths: settings.Paths, needles: list[bytes]) -> list[str]:
    """The outbox decoded: attachments and bodies are base64, a byte grep cannot see into them."""
    found = []
    for message in outbox_messages(paths.outbox):
        for part in message.walk():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found += [f"{message['Subject']}: {n!r}" for n in needles if n in payload]
        found += [
            f"{message['Subject']} header: {n!r}" for n in needles if n.decode("utf-8", "replace") in str(message)
        ]
    return found


def table_dump() -> dict[str, list[tuple[object, ...]]]:
    with engine().connect() as conn:
        return {
            t.name: sorted((tuple(r) for r in conn.execute(sa.select(t))), key=repr)
            for t in tables.metadata.sorted_tables
        }


def table_leaks(needles: list[bytes]) -> list[str]:
    """Every text column of every table, on either backend."""
    texts = [n.decode("utf-8").lower() for n in needles]
    found = []
    with engine().connect() as conn:
        for table in tables.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.Text)]
            for row in conn.execute(sa.select(*columns)) if columns else []:
                for column, value in zip(columns, row, strict=True):
                    found += [f"{table.name}.{column.name}" for t in texts if value and t in str(value).lower()]
    return found


def other_messages(paths: settings.Paths) -> dict[str, bytes]:
    """Each message's bytes (its "From " line included) by delivery id, except those about the target."""
    import mailbox

    out: dict[str, bytes] = {}
    for path in sorted(paths.outbox.glob("*.mbox")):
        box = mailbox.mbox(path, create=False)
        for key in box.iterkeys():
            data = box.get_bytes(key, from_=True)
            decoded = email.message_from_bytes(data)
            parts = [p.get_payload(decode=True) for p in decoded.walk() if not p.is_multipart()]
            if not any(TARGET_NORM.encode() in p.lower() for p in [data, *parts] if isinstance(p, bytes)):
                out[str(decoded["X-Event-Pipeline-Delivery-Id"])] = data
        box.close()
    return out


def snapshot(root: Path) -> dict[str, bytes]:
    # The SQLite files change on reads (checkpoints); the tables are compared instead.
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "sqlite" not in p.name and "dagster_home" not in p.parts
    }


@pytest.fixture
def two_events(
    instance: dg.DagsterInstance, var_home: settings.Paths, database_url: str, tmp_path: Path
) -> dict[str, str]:
    make_event("devcon-2026")
    make_event("other-2026", language="en")
    uploads = {"devcon-2026": import_through_inbox(instance, var_home, "devcon-2026", person_rows(0))}
    # The second event through `import` (the original stays outside the var dir).
    source = tmp_path / "src" / "other.csv"
    source.parent.mkdir()
    source.write_bytes(csv_bytes(person_rows(1)))
    upload, result = run_import(instance, source, event_slug="other-2026")
    assert result.success
    uploads["other-2026"] = upload.id
    bounce(TARGET_NORM)
    return uploads


def test_erase_leaves_no_trace_of_the_person_in_any_file_or_table(
    var_home: settings.Paths, two_events: dict[str, str]
) -> None:
    # The needles are real: before, every kind of place holds the person.
    before = file_leaks(var_home.home, NEEDLES)
    assert any(p.startswith("uploads/") for p in before)
    assert any(p.startswith("reports/") for p in before)
    assert any(p.startswith("processed/") for p in before)
    assert any(p.startswith("outbox/") for p in before)
    assert mail_leaks(var_home, NEEDLES)
    assert table_leaks(NEEDLES)
    others_before = other_messages(var_home)
    with engine().connect() as conn:
        uploads_before = conn.execute(sa.select(tables.uploads)).all()
    with engine().connect() as conn:
        others = conn.execute(
            sa.select(tables.participants).where(tables.participants.c.email_norm != TARGET_NORM)
        ).all()

    done = erase.erase_address(engine(), var_home, TARGET_EMAIL)

    assert done.participants == 2
    assert done.database_cleared is True
    assert file_leaks(var_home.home, NEEDLES) == []
    assert mail_leaks(var_home, NEEDLES) == []
    assert table_leaks(NEEDLES) == []
    # The others' data, mail and the counts are untouched.
    after = other_messages(var_home)
    assert len(others_before) >= 10
    assert {k: after.get(k) for k in others_before} == others_before
    with engine().connect() as conn:
        assert (
            conn.execute(
                sa.select(tables.participants).where(tables.participants.c.email_norm.not_like("erased-%"))
            ).all()
            == others
        )
        tokens = (
            conn.execute(
                sa.select(tables.access_tokens.c.status)
                .join(tables.participants)
                .where(tables.participants.c.status == "erased")
            )
            .scalars()
            .all()
        )
        audit = conn.execute(sa.select(tables.erasures)).one()
        uploads_after = conn.execute(sa.select(tables.uploads)).all()
    assert tokens and set(tokens) == {"revoked"}
    kept = [c.name for c in tables.uploads.columns if c.name != "copy_note"]
    assert {r.id: [getattr(r, c) for c in kept] for r in uploads_after} == {
        r.id: [getattr(r, c) for c in kept] for r in uploads_before
    }
    assert all("erasure" in (r.copy_note or "") for r in uploads_after)
    # The audit line: how many and what, never whose.
    assert audit.participants == 2 and audit.event_id is None
    summary = json.loads(audit.summary)
    assert summary["outbox_messages_removed"] >= 2 and summary["outbox_messages_changed"] >= 1
    assert summary["upload_rows_removed"] == 4 and summary["tokens_revoked"] == 2
    # Nothing of the person is left to find.
    with pytest.raises(erase.NothingToErase):
        erase.erase_address(engine(), var_home, TARGET_EMAIL)


def test_erase_in_one_event_leaves_the_other_event_alone(var_home: settings.Paths, two_events: dict[str, str]) -> None:
    other_copy = var_home.upload_dir(two_events["other-2026"])
    copy_before = {p.name: p.read_bytes() for p in other_copy.iterdir()}

    done = erase.erase_address(engine(), var_home, TARGET_EMAIL.upper(), event_slug="devcon-2026")

    assert done.participants == 1
    assert file_leaks(var_home.upload_store / two_events["devcon-2026"], NEEDLES) == []
    assert file_leaks(var_home.processed, NEEDLES) == []
    assert {p.name: p.read_bytes() for p in other_copy.iterdir()} == copy_before
    with engine().connect() as conn:
        left = (
            conn.execute(
                sa.select(tables.participants.c.event_id).where(tables.participants.c.email_norm == TARGET_NORM)
            )
            .scalars()
            .all()
        )
        other_id = conn.execute(sa.select(tables.events.c.id).where(tables.events.c.slug == "other-2026")).scalar()
        audit = conn.execute(sa.select(tables.erasures.c.event_id)).scalar_one()
    assert left == [other_id]
    assert audit != other_id
    # The other event's welcome mail to the person is still in the outbox.
    assert any(
        m["X-Event-Pipeline-Event-Id"] == str(other_id) and m["To"].lower() == TARGET_NORM
        for m in outbox_messages(var_home.outbox, "welcome")
    )


def test_dry_run_changes_nothing(var_home: settings.Paths, two_events: dict[str, str]) -> None:
    files_before, tables_before = snapshot(var_home.home), table_dump()

    done = erase.erase_address(engine(), var_home, TARGET_EMAIL, dry_run=True)

    assert done.participants == 2 and done.erasure_id is None
    assert done.places["upload_rows_removed"] == 4 and done.places["outbox_messages_removed"] >= 2
    assert snapshot(var_home.home) == files_before
    assert table_dump() == tables_before


def test_refusals_name_what_is_in_the_way(var_home: settings.Paths, two_events: dict[str, str]) -> None:
    with pytest.raises(erase.NothingToErase, match="nothing of that address is kept in any event"):
        erase.erase_address(engine(), var_home, "nobody@example.com")
    with pytest.raises(erase.NothingToErase, match="in event other-2026"):
        erase.erase_address(engine(), var_home, sample(6, seed=0).rows[0][1], event_slug="other-2026")
    with pytest.raises(erase.UnknownEvent, match="no-such"):
        erase.erase_address(engine(), var_home, TARGET_EMAIL, event_slug="no-such")
    with engine().begin() as conn:
        conn.execute(
            sa.update(tables.uploads).where(tables.uploads.c.id == two_events["devcon-2026"]).values(status="running")
        )
    with pytest.raises(erase.ErasureBlocked, match=f"upload {two_events['devcon-2026']} of event devcon-2026"):
        erase.erase_address(engine(), var_home, TARGET_EMAIL)
    # The other event has nothing in flight: erasing there goes ahead.
    assert erase.erase_address(engine(), var_home, TARGET_EMAIL, event_slug="other-2026").participants == 1


def test_a_later_upload_gives_the_erased_person_no_new_token(
    instance: dg.DagsterInstance, var_home: settings.Paths, two_events: dict[str, str], tmp_path: Path
) -> None:
    """The token step serves every participant of the event without a live token: the erased
    placeholder was one, so the next upload issued it a working token again."""
    erase.erase_address(engine(), var_home, TARGET_EMAIL, event_slug="devcon-2026")
    later = tmp_path / "later.csv"
    later.write_bytes(csv_bytes(sample(3, seed=8).rows))
    _, result = run_import(instance, later, event_slug="devcon-2026")
    assert result.success
    with engine().connect() as conn:
        live = conn.execute(
            sa.select(sa.func.count())
            .select_from(tables.access_tokens.join(tables.participants))
            .where(tables.participants.c.status == "erased", tables.access_tokens.c.status == "live")
        ).scalar_one()
    assert live == 0
