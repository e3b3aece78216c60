"""The access_tokens and qr_codes assets inside the real import job, run in process on a temp
DAGSTER_HOME: re-runs never rotate tokens, and no token reaches Dagster's storage or any log."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._serdes import serialize_value

from event_pipeline import settings
from event_pipeline.access.tokens import PUBLIC_ID_LEN, TOKEN_KEY_ENV, checkin_base_url_from_env, checkin_url
from event_pipeline.store.tables import access_tokens
from event_pipeline_tests.access import _support
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import make_event, run_import


@pytest.fixture
def instance(var_home: settings.Paths) -> Iterator[dg.DagsterInstance]:
    """The instance the CLI and daemon would use, on the test's DAGSTER_HOME: SQLite run and event
    storage, and the default local compute-log manager (so compute logs are really written)."""
    assert Path(os.environ["DAGSTER_HOME"]) == var_home.dagster_home
    inst = dg.DagsterInstance.get()
    try:
        yield inst
    finally:
        inst.dispose()


def _token_state(db: sa.Engine) -> dict[int, tuple[str, str | None]]:
    """participant -> (public id, qr path) of the live token."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(access_tokens.c.participant_id, access_tokens.c.public_id, access_tokens.c.qr_path).where(
                access_tokens.c.status == "live"
            )
        ).all()
    return {int(pid): (public_id, path) for pid, public_id, path in rows}


@pytest.mark.usefixtures("database_url")
def test_reruns_never_rotate_tokens(instance: dg.DagsterInstance, var_home: settings.Paths) -> None:
    make_event()
    first_file = write_csv(var_home.home / "in" / "list.csv", sample(20).rows)
    upload, result = run_import(instance, first_file)
    assert result.success
    db = _support.engine()
    before = _token_state(db)
    # Codes are rendered into the mails: no token row points at a file, no PNG was written.
    assert len(before) == 15 and all(path is None for _, path in before.values())
    assert not list(var_home.home.rglob("*.png"))

    # The same upload again (what `import --force` or a run retry does): nothing rotates.
    again_upload, again = run_import(instance, first_file)
    assert again.success and again_upload.id == upload.id
    assert _token_state(db) == before
    [issued] = again.asset_materializations_for_node("access_tokens")
    assert issued.metadata["issued"].value == 0
    [checked] = again.asset_materializations_for_node("qr_codes")
    assert checked.metadata["live_tokens"].value == 15

    # A later file with the same people plus ten new ones: only the new ones get tokens.
    _, bigger = run_import(instance, write_csv(var_home.home / "in" / "bigger.csv", sample(30).rows))
    assert bigger.success
    after = _token_state(db)
    assert len(after) == 25
    assert {pid: after[pid] for pid in before} == before
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(access_tokens)).scalar_one() == 25, (
            "no token was revoked and replaced along the way"
        )


def _dagster_home_bytes(home: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}


def test_no_token_reaches_dagster_storage_event_logs_compute_logs_or_python_logs(
    instance: dg.DagsterInstance,
    var_home: settings.Paths,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    make_event()
    upload, result = run_import(instance, write_csv(var_home.home / "in" / "list.csv", sample(20).rows))
    assert result.success
    db = _support.engine()
    codec = _support.codec()
    base = checkin_base_url_from_env()
    public_ids = _support.all_public_ids(db)
    assert len(public_ids) == 15
    secrets = [os.environ[TOKEN_KEY_ENV]]
    for public_id in public_ids:
        token = codec.token_for(public_id)
        secrets += [token, token[PUBLIC_ID_LEN:], checkin_url(base, token)]

    # Dagster's own records: every event of the run, serialized as stored, plus the run config.
    records = instance.all_logs(result.run_id)
    event_text = "\n".join(serialize_value(entry) for entry in records)
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    event_text += "\n" + json.dumps(run.run_config, default=str) + "\n" + json.dumps(dict(run.tags))
    for step in ("access_tokens", "qr_codes", "welcome_emails"):
        assert result.asset_materializations_for_node(step), step
    # Every byte under DAGSTER_HOME: run/event-log databases, compute logs, IO-manager pickles.
    files = _dagster_home_bytes(var_home.dagster_home)
    compute_logs = [p for p in files if "compute_logs" in p.parts]
    assert compute_logs, "the run's compute logs must exist to be checked"
    python_logs = caplog.text
    out, err = capfd.readouterr()

    # Controls: each source really holds this run's data, so finding nothing means something.
    assert upload.id in event_text
    assert any(upload.id.encode() in data for data in files.values())
    assert "access_tokens" in python_logs + err + out
    for secret in secrets:
        assert secret not in event_text
        assert secret not in python_logs and secret not in out and secret not in err
        hits = [p for p, data in files.items() if secret.encode() in data]
        assert not hits, f"token material found in {hits}"
