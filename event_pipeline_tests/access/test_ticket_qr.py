"""QR codes as a scanner sees them: every PNG decodes back to exactly its participant's check-in URL."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.access.checkin import ScanKeys, ScanResult, verify_scan
from event_pipeline.access.tokens import checkin_url
from event_pipeline.cli import main
from event_pipeline.steps.tickets import qr_dir, render_missing_qr_codes
from event_pipeline.store import tokens as store
from event_pipeline_tests.access import _support

BASE = "https://tickets.example.com/c/"


def _render(db: Engine, keys: ScanKeys, slug: str, n: int) -> tuple[int, dict[int, str]]:
    event = _support.add_event(db, slug)
    _support.add_participants(db, event.id, n)
    store.issue_missing_tokens(db, event.id)
    paths = settings.paths()
    rendered = render_missing_qr_codes(db, paths, keys.codec, event_id=event.id, event_slug=slug, base_url=BASE)
    assert rendered == n
    # A re-run renders nothing: files and tokens stay as they were mailed.
    again = render_missing_qr_codes(db, paths, keys.codec, event_id=event.id, event_slug=slug, base_url=BASE)
    assert again == 0
    return event.id, _support.live_public_ids(db, event.id)


def _assert_decodes_exactly(db: Engine, keys: ScanKeys, event_id: int, slug: str, live: dict[int, str]) -> None:
    folder = qr_dir(settings.paths(), slug)
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{pid}.png" for pid in live.values())
    with db.connect() as conn:
        records = store.live_tokens_for(conn, list(live))
    for participant_id, public_id in live.items():
        png = folder / f"{public_id}.png"
        assert records[participant_id].qr_path == str(png)
        assert _support.decode_qr(png) == checkin_url(BASE, keys.codec.token_for(public_id))


def test_every_qr_decodes_to_its_exact_checkin_url(db: Engine, scan_keys: ScanKeys) -> None:
    event_id, live = _render(db, scan_keys, "devcon-2026", 25)
    _assert_decodes_exactly(db, scan_keys, event_id, "devcon-2026", live)
    # And what the scanner reads is accepted at the door.
    some_png = next(iter(qr_dir(settings.paths(), "devcon-2026").glob("*.png")))
    assert verify_scan(db, _support.decode_qr(some_png), scan_keys, event_slug="devcon-2026").ok


def test_batches_rendered_by_worker_processes_decode_too(sqlite_db: Engine, scan_keys: ScanKeys) -> None:
    event_id, live = _render(sqlite_db, scan_keys, "bigconf-2026", 700)  # above the multi-process threshold
    _assert_decodes_exactly(sqlite_db, scan_keys, event_id, "bigconf-2026", live)


def test_reissue_renders_a_new_qr_in_the_same_folder_and_drops_the_old(db: Engine, scan_keys: ScanKeys) -> None:
    event_id, live = _render(db, scan_keys, "devcon-2026", 3)
    pid, old_public_id = next(iter(live.items()))
    folder = qr_dir(settings.paths(), "devcon-2026")
    old_png = folder / f"{old_public_id}.png"
    old_url = _support.decode_qr(old_png)

    result = CliRunner().invoke(main, ["reissue-token", str(pid), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    new_png = Path(str(data["qr_path"]))
    assert data["revoked_previous"] is True and data["event"] == "devcon-2026"
    assert new_png.parent == folder and new_png.name == f"{_support.live_public_ids(db)[pid]}.png"
    assert _support.decode_qr(new_png) == data["checkin_url"]
    assert not old_png.exists(), "the revoked code's image is removed"

    assert verify_scan(db, old_url, scan_keys, event_slug="devcon-2026").result is ScanResult.REVOKED
    assert verify_scan(db, str(data["checkin_url"]), scan_keys, event_slug="devcon-2026").ok
    # The other participants are untouched.
    after = _support.live_public_ids(db, event_id)
    assert {k: v for k, v in after.items() if k != pid} == {k: v for k, v in live.items() if k != pid}
