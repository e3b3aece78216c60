"""QR codes as a scanner sees them, rendered where they are used: inside each welcome mail when it
is sent, in the badge ZIP an organiser asks for, and for a reissued token on request. Every code
decodes to exactly its participant's check-in URL, and no PNG rests on disk on the way to mail."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.access.checkin import ScanKeys, ScanResult, verify_scan
from event_pipeline.access.tokens import checkin_base_url_from_env, checkin_url
from event_pipeline.cli import main
from event_pipeline.files import private_dir, write_private
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.mail.outbox import MboxOutbox
from event_pipeline.steps import messages
from event_pipeline.steps.tickets import TicketError, check_tickets, legacy_qr_dir, write_badges
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import tokens as store
from event_pipeline.store.events import Event
from event_pipeline.store.tables import access_tokens
from event_pipeline_tests.access import _support

BASE = "https://tickets.example.com/c/"
SLUG = "devcon-2026"


def _event(db: Engine, n: int, slug: str = SLUG) -> tuple[Event, dict[int, str]]:
    event = _support.add_event(db, slug)
    _support.add_participants(db, event.id, n)
    store.issue_missing_tokens(db, event.id)
    return event, _support.live_public_ids(db, event.id)


def _url(keys: ScanKeys, public_id: str) -> str:
    return checkin_url(BASE, keys.codec.token_for(public_id))


def _pngs_on_disk() -> list[Path]:
    return list(settings.paths().home.rglob("*.png"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _welcome_messages(db: Engine, keys: ScanKeys, event_id: int) -> dict[int, OutgoingMessage]:
    """What the dispatcher would send: queued, claimed and built as a dispatch does, by participant."""
    deliveries_store.enqueue_welcome(db, event_id, None)
    claimed = deliveries_store.claim_due(db, limit=1000, event_id=event_id)
    ctx = messages.MailContext(
        sender=MboxOutbox(settings.paths().outbox),
        from_email="events@example.com",
        from_name="Events",
        codec=keys.codec,
        checkin_base_url=BASE,
    )
    built = messages.build_messages(db, ctx, claimed)
    return {int(m.custom_args["participant_id"]): m for m in built.values()}


def test_each_welcome_mail_carries_a_code_of_exactly_its_participants_url(db: Engine, scan_keys: ScanKeys) -> None:
    event, live = _event(db, 25)

    mails = _welcome_messages(db, scan_keys, event.id)

    assert set(mails) == set(live)
    for participant_id, mail in mails.items():
        [image] = mail.inline_images
        assert image.mime_type == "image/png" and f'src="cid:{image.content_id}"' in mail.html
        scanned = _support.decode_qr(image.data)
        assert scanned == _url(scan_keys, live[participant_id])
        verdict = verify_scan(db, scanned, scan_keys, event_slug=SLUG)
        assert verdict.ok and verdict.participant_id == participant_id
    assert _pngs_on_disk() == [], "codes are rendered into the mail, never into files"


def test_check_tickets_removes_legacy_code_files_and_forgets_their_paths(db: Engine, scan_keys: ScanKeys) -> None:
    event, live = _event(db, 3)
    other, _ = _event(db, 2, slug="other-2026")
    paths = settings.paths()
    legacy = private_dir(legacy_qr_dir(paths, SLUG))
    old_files = {pid: write_private(legacy / f"{public_id}.png", b"\x89PNG old") for pid, public_id in live.items()}
    with db.begin() as conn:
        for pid, path in old_files.items():
            conn.execute(
                sa.update(access_tokens).where(access_tokens.c.participant_id == pid).values(qr_path=str(path))
            )
        conn.execute(sa.update(access_tokens).where(access_tokens.c.event_id == other.id).values(qr_path="/keep.png"))

    checked = check_tickets(db, paths, scan_keys.codec, event_id=event.id, event_slug=SLUG, base_url=BASE)

    assert checked.live_tokens == 3 and checked.sample_png_bytes > 100
    assert not legacy.exists(), "files that encode working tokens are gone"
    with db.connect() as conn:
        paths_left = set(conn.execute(sa.select(access_tokens.c.event_id, access_tokens.c.qr_path)).all())
    assert paths_left == {(event.id, None), (other.id, "/keep.png")}
    assert _support.live_public_ids(db, event.id) == live  # checking never rotates a token


def test_a_base_url_too_long_for_a_qr_code_is_refused_before_anyone_is_mailed(
    sqlite_db: Engine, scan_keys: ScanKeys
) -> None:
    event, live = _event(sqlite_db, 2)
    too_long = "https://tickets.example.com/" + "c" * 3000 + "/"

    with pytest.raises(TicketError, match="CHECKIN_BASE_URL") as excinfo:
        check_tickets(
            sqlite_db, settings.paths(), scan_keys.codec, event_id=event.id, event_slug=SLUG, base_url=too_long
        )

    message = str(excinfo.value)
    assert not any(scan_keys.codec.token_for(public_id) in message for public_id in live.values())
    assert "ccccc" not in message  # says how long, does not repeat the URL


@pytest.mark.parametrize("processes", [1, 2])
def test_badges_zip_holds_one_decodable_code_per_live_token(
    sqlite_db: Engine, scan_keys: ScanKeys, processes: int, tmp_path: Path
) -> None:
    event, before = _event(sqlite_db, 12)
    reissued = next(iter(before))
    store.reissue_token(sqlite_db, reissued)
    live = _support.live_public_ids(sqlite_db, event.id)
    target = tmp_path / "badges" / "devcon.zip"

    written = write_badges(sqlite_db, scan_keys.codec, target, event_id=event.id, base_url=BASE, processes=processes)

    assert written == 12
    assert _mode(target) == 0o600
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == sorted(f"{pid}.png" for pid in live)
        scanned = {
            int(name.removesuffix(".png")): _support.decode_qr(archive.read(name)) for name in archive.namelist()
        }
    assert scanned == {pid: _url(scan_keys, public_id) for pid, public_id in live.items()}
    assert _url(scan_keys, before[reissued]) not in scanned.values(), "the revoked code is not printed"


def _reissue(pid: int, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(main, ["reissue-token", str(pid), *extra, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_reissue_writes_no_file_unless_asked_and_the_old_code_scans_revoked(db: Engine, scan_keys: ScanKeys) -> None:
    event, live = _event(db, 3)
    pid, old_public_id = next(iter(live.items()))
    # A code file from before codes were rendered at send time: it encodes the token being revoked.
    legacy = private_dir(legacy_qr_dir(settings.paths(), SLUG))
    old_png = write_private(legacy / f"{old_public_id}.png", b"\x89PNG old")
    with db.begin() as conn:
        conn.execute(sa.update(access_tokens).where(access_tokens.c.participant_id == pid).values(qr_path=str(old_png)))

    data = _reissue(pid)

    assert data["qr_path"] is None and data["revoked_previous"] is True and data["event"] == SLUG
    assert not old_png.exists(), "the revoked code's image is removed"
    assert _pngs_on_disk() == []
    new_public_id = _support.live_public_ids(db, event.id)[pid]
    # The CLI prints the URL under the configured base (CHECKIN_BASE_URL), not this file's BASE.
    assert data["checkin_url"] == checkin_url(checkin_base_url_from_env(), scan_keys.codec.token_for(new_public_id))
    assert verify_scan(db, _url(scan_keys, old_public_id), scan_keys, event_slug=SLUG).result is ScanResult.REVOKED
    assert verify_scan(db, str(data["checkin_url"]), scan_keys, event_slug=SLUG).ok
    # The other participants are untouched.
    after = _support.live_public_ids(db, event.id)
    assert {k: v for k, v in after.items() if k != pid} == {k: v for k, v in live.items() if k != pid}
    # And the next welcome mail carries the new code.
    next_mail = _welcome_messages(db, scan_keys, event.id)[pid]
    assert _support.decode_qr(next_mail.inline_images[0].data) == _url(scan_keys, new_public_id)


def test_reissue_with_qr_out_writes_a_private_png_of_the_new_code(
    db: Engine, scan_keys: ScanKeys, tmp_path: Path
) -> None:
    _, live = _event(db, 2)
    pid, old_public_id = next(iter(live.items()))
    out = tmp_path / "for-the-desk.png"

    data = _reissue(pid, "--qr-out", str(out))

    assert data["qr_path"] == str(out)
    assert _mode(out) == 0o600
    scanned = _support.decode_qr(out)
    assert scanned == data["checkin_url"]
    assert verify_scan(db, scanned, scan_keys, event_slug=SLUG).ok
    assert verify_scan(db, _url(scan_keys, old_public_id), scan_keys, event_slug=SLUG).result is ScanResult.REVOKED


def test_badges_command_writes_the_events_codes_and_refuses_an_unknown_event(
    db: Engine, scan_keys: ScanKeys, tmp_path: Path
) -> None:
    _, live = _event(db, 3)
    target = tmp_path / "badges.zip"
    result = CliRunner().invoke(
        main, ["badges", "--event", SLUG, "-o", str(target), "--processes", "1", "--json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"event": SLUG, "codes": 3, "path": str(target)}
    assert _mode(target) == 0o600
    base = checkin_base_url_from_env()
    with zipfile.ZipFile(target) as archive:
        scanned = {_support.decode_qr(archive.read(name)) for name in archive.namelist()}
    assert scanned == {checkin_url(base, scan_keys.codec.token_for(p)) for p in live.values()}

    unknown = CliRunner().invoke(main, ["badges", "--event", "no-such-event", "-o", str(tmp_path / "x.zip")])
    assert unknown.exit_code == 1 and "no event with slug 'no-such-event'" in unknown.output
    assert not (tmp_path / "x.zip").exists()
