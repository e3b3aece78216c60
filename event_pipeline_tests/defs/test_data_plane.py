"""One data plane: participant data lives in the upload store and the databases only.

Each test runs the real import job in process against a real instance on the test's
DAGSTER_HOME, then looks at bytes on disk."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.access.tokens import TokenCodec
from event_pipeline.store import tables
from event_pipeline_tests.support.leaks import file_leaks
from event_pipeline_tests.support.participants import Sample, sample, write_csv
from event_pipeline_tests.support.pipeline import ASSET_CHAIN, engine, make_event, run_import, run_upload


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def personal_data(s: Sample) -> list[bytes]:
    """Every name, email and phone of the file (as given and as stored), in the encodings a
    leak would use."""
    needles: set[str] = set()
    for name, email, phone, *_ in s.rows:
        needles.update(v for v in (name, email, email.lower(), phone) if len(v) >= 4 or (v and not v.isascii()))
        digits = phone.replace("-", "")
        if digits.startswith("0") and len(digits) > 8:
            needles.add("+82" + digits[1:])
    out: list[bytes] = []
    for text in needles:
        out.append(text.encode("utf-8"))
        out.append(text.encode("unicode_escape"))  # how JSON with ensure_ascii writes Hangul
    return out


def live_tokens() -> list[bytes]:
    codec = TokenCodec.from_secret(os.environ["EVENT_PIPELINE_TOKEN_KEY"])
    with engine().connect() as conn:
        public_ids = conn.execute(sa.select(tables.access_tokens.c.public_id)).scalars().all()
    return [codec.token_for(p).encode() for p in public_ids]


@pytest.mark.usefixtures("database_url")
def test_no_name_email_phone_or_token_reaches_dagster_home(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event()
    s = sample(20, invalid=3, duplicates=2)
    upload, result = run_import(instance, write_csv(var_home.home / "in" / "list.csv", s.rows))
    assert result.success
    # Re-running the same partition must not leak either (the path a retry takes).
    assert run_upload(instance, upload.id).success
    tokens = live_tokens()
    assert len(tokens) == 15
    assert file_leaks(var_home.dagster_home, [*personal_data(s), *tokens]) == []
    # The needles are real: the upload store does hold the rows (as Parquet) and the DB the names.
    assert file_leaks(var_home.upload_store / upload.id, personal_data(s))
    # Nothing went through Dagster's IO storage at all.
    assert not (var_home.dagster_home / "storage" / "parsed_rows").exists()
    assert not (var_home.dagster_home / "storage" / "validated_rows").exists()
    # welcome_emails' chunk steps hand each other id ranges and counts, in this var dir's step_io
    # (found by the run, not fixed when the code was imported), and nothing personal.
    handed = [p for p in var_home.step_io.rglob("*") if p.is_file()]
    assert any("send_welcome_chunk" in str(p) for p in handed), handed
    assert file_leaks(var_home.step_io, [*personal_data(s), *tokens]) == []


def test_assets_hand_each_other_nothing_so_any_step_can_run_in_a_later_run(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    """The chain split over two runs (as over two processes or machines) gives the same import:
    every step reads what the previous one left in the upload store and the database."""
    from event_pipeline.steps.inbox import register_local_file

    make_event()
    s = sample(12, invalid=1, duplicates=1)
    upload, _ = register_local_file(
        engine(), var_home, event_slug="devcon-2026", source=write_csv(var_home.home / "in" / "a.csv", s.rows)
    )
    first = run_upload(instance, upload.id, asset_selection=[dg.AssetKey(a) for a in ASSET_CHAIN[:3]])
    assert first.success
    assert (var_home.upload_store / upload.id / "parsed.parquet").is_file()
    second = run_upload(instance, upload.id, asset_selection=[dg.AssetKey(a) for a in ASSET_CHAIN[3:]])
    assert second.success
    with engine().connect() as conn:
        up = conn.execute(sa.select(tables.uploads).where(tables.uploads.c.id == upload.id)).one()
    assert (up.status, up.rows_in_file, up.loaded_new, up.rejected_rows, up.duplicates_in_file) == (
        "done",
        12,
        10,
        1,
        1,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_files_with_tokens_or_personal_data_are_private(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    s = sample(6, invalid=1, duplicates=0)
    _, result = run_import(instance, write_csv(var_home.home / "in" / "a.csv", s.rows))
    assert result.success
    written = [
        *var_home.upload_store.rglob("*"),
        *var_home.outbox.rglob("*"),
        *var_home.reports.rglob("*"),
        var_home.db_file,
    ]
    kinds = {p.suffix for p in written if p.is_file()}
    assert {".parquet", ".csv", ".mbox", ".sqlite"} <= kinds
    # No file per participant, so no working token at rest: QR codes exist only inside the mails.
    assert not list(var_home.home.rglob("*.png"))
    assert all(_mode(p) == 0o600 for p in var_home.outbox.glob("*.mbox"))
    loose = [f"{p} {oct(_mode(p))}" for p in written if p.is_file() and _mode(p) != 0o600]
    loose += [f"{p} {oct(_mode(p))}" for p in written if p.is_dir() and _mode(p) != 0o700]
    assert loose == []
