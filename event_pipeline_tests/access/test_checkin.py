"""Scans at the door, on both backends: every outcome, what is recorded, what is never shown."""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.access.checkin import ScanKeys, ScanResult, check_in, signed_token_for, verify_scan
from event_pipeline.access.signed import SIGNING_KEY_ENV, TokenSigner
from event_pipeline.access.tokens import PUBLIC_ID_LEN, TokenCodec, checkin_url, token_from_scan
from event_pipeline.cli import main
from event_pipeline.store import tokens as store
from event_pipeline.store.events import Event
from event_pipeline.store.tables import access_tokens, checkin_scans
from event_pipeline_tests.access import _support

BASE = "https://checkin.example.com/t/"
JSON_KEYS = {"result", "participant_id", "event", "checked_in_at", "offline", "message"}


@dataclass
class Door:
    event: Event
    other: Event
    active: list[int]
    inactive: int
    elsewhere: int  # a participant of the other event
    urls: dict[int, str]  # participant id -> check-in URL of the live token


@pytest.fixture
def door(db: Engine, scan_keys: ScanKeys) -> Door:
    event = _support.add_event(db, "devcon-2026")
    other = _support.add_event(db, "other-2026")
    active = _support.add_participants(db, event.id, 4)
    [inactive] = _support.add_participants(db, event.id, 1, status="inactive", tag="gone")
    [elsewhere] = _support.add_participants(db, other.id, 1, tag="o")
    store.issue_missing_tokens(db, event.id)
    store.issue_missing_tokens(db, other.id)
    urls = {
        pid: checkin_url(BASE, scan_keys.codec.token_for(public_id))
        for pid, public_id in _support.live_public_ids(db).items()
    }
    return Door(event, other, active, inactive, elsewhere, urls)


def _cli(*args: str, input: str | None = None) -> tuple[Result, dict[str, object]]:
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    data = json.loads(result.stdout) if "--json" in args and result.stdout.strip().startswith("{") else {}
    return result, data


def _scans(db: Engine) -> list[sa.Row[tuple[object, ...]]]:
    with db.connect() as conn:
        return list(conn.execute(sa.select(checkin_scans).order_by(checkin_scans.c.id)))


def _assert_private(output: str, door: Door, db: Engine) -> None:
    for url in door.urls.values():
        token = token_from_scan(url)
        assert token not in output and token[PUBLIC_ID_LEN:] not in output
    for detail in _support.contact_details(db):
        assert detail not in output


def test_every_outcome_through_the_cli_is_recorded(db: Engine, door: Door, scan_keys: ScanKeys) -> None:
    slug = door.event.slug
    first = door.active[0]
    outputs: list[str] = []

    def checkin(scanned: str) -> tuple[int, dict[str, object]]:
        result, data = _cli("checkin", scanned, "--event", slug, "--json")
        outputs.append(result.output)
        assert set(data) == JSON_KEYS, result.output
        return result.exit_code, data

    code, valid = checkin(door.urls[first])
    assert (code, valid["result"], valid["participant_id"], valid["event"]) == (0, "valid", first, slug)
    assert valid["checked_in_at"] is not None and valid["offline"] is False

    code, again = checkin(door.urls[first])
    assert (code, again["result"]) == (1, "already_checked_in")
    assert again["checked_in_at"] == valid["checked_in_at"], "reports the first check-in's time"

    code, inactive = checkin(door.urls[door.inactive])
    assert (code, inactive["result"], inactive["participant_id"]) == (
        1,
        "participant_inactive",
        door.inactive,
    )

    code, wrong = checkin(door.urls[door.elsewhere])
    assert (code, wrong["result"], wrong["event"]) == (1, "wrong_event", door.other.slug)

    token = token_from_scan(door.urls[door.active[1]])
    foreign = TokenCodec.from_secret(secrets.token_urlsafe(48)).token_for(token[:PUBLIC_ID_LEN])
    for forged in ("hello", token[:-1] + ("A" if token[-1] != "A" else "B"), foreign, BASE):
        code, unknown = checkin(forged)
        assert (code, unknown["result"], unknown["participant_id"], unknown["event"]) == (
            1,
            "unknown",
            None,
            None,
        )

    result, _ = _cli("reissue-token", str(door.active[2]), "--json")
    assert result.exit_code == 0
    code, revoked = checkin(door.urls[door.active[2]])
    assert (code, revoked["result"], revoked["participant_id"]) == (1, "revoked", door.active[2])

    # '-' reads the scan from stdin, keeping the token out of argv.
    result, from_stdin = _cli("checkin", "-", "--event", slug, "--json", input=door.urls[door.active[3]] + "\n")
    assert (result.exit_code, from_stdin["result"]) == (0, "valid")
    outputs.append(result.output)

    scans = _scans(db)
    assert [s.result for s in scans] == [
        "valid",
        "already_checked_in",
        "participant_inactive",
        "wrong_event",
        *["unknown"] * 4,
        "revoked",
        "valid",
    ]
    assert all(s.event_id == door.event.id and isinstance(s.scanned_at, datetime) for s in scans)
    assert [s.participant_id for s in scans[:4]] == [first, first, door.inactive, door.elsewhere]
    assert all(s.participant_id is None and s.token_public_id is None for s in scans[4:8])
    assert scans[0].token_public_id == token_from_scan(door.urls[first])[:PUBLIC_ID_LEN]
    _assert_private("\n".join(outputs), door, db)


def test_human_output_and_exit_codes(door: Door) -> None:
    result, _ = _cli("checkin", door.urls[door.active[0]], "--event", door.event.slug)
    assert result.exit_code == 0 and result.output.startswith("VALID:")
    result, _ = _cli("checkin", door.urls[door.active[0]], "--event", door.event.slug)
    assert result.exit_code == 1 and result.output.startswith("ALREADY_CHECKED_IN:")
    result, _ = _cli("checkin", door.urls[door.active[0]], "--event", "no-such-event")
    assert result.exit_code == 1 and "no event 'no-such-event'" in result.output


def test_verify_token_reports_without_recording(db: Engine, door: Door) -> None:
    slug = door.event.slug
    cases = {
        door.urls[door.active[0]]: "valid",
        door.urls[door.inactive]: "participant_inactive",
        door.urls[door.elsewhere]: "wrong_event",
        "not-a-token": "unknown",
    }
    for scanned, expected in cases.items():
        for _ in range(2):  # asking twice changes nothing
            result, data = _cli("verify-token", scanned, "--event", slug, "--json")
            assert data["result"] == expected and result.exit_code == (0 if expected == "valid" else 1)
            _assert_private(result.output, door, db)
    # Without --event there is no door to be wrong about.
    assert _cli("verify-token", door.urls[door.elsewhere], "--json")[1]["result"] == "valid"
    assert _scans(db) == []
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(access_tokens.c.checked_in_at.is_not(None))).scalar() == 0

    assert check_in(db, door.urls[door.active[0]], ScanKeys.from_env(), event_slug=slug).ok
    result, data = _cli("verify-token", door.urls[door.active[0]], "--event", slug, "--json")
    assert data["result"] == "already_checked_in" and result.exit_code == 1
    assert len(_scans(db)) == 1


def test_simultaneous_checkins_of_one_token_admit_exactly_one(db: Engine, door: Door, scan_keys: ScanKeys) -> None:
    url = door.urls[door.active[0]]
    n = 8
    barrier = threading.Barrier(n)
    results: list[ScanResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def scan() -> None:
        try:
            barrier.wait()
            verdict = check_in(db, url, scan_keys, event_slug=door.event.slug)
            with lock:
                results.append(verdict.result)
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=scan) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(results) == sorted([ScanResult.VALID] + [ScanResult.ALREADY_CHECKED_IN] * (n - 1))
    assert sorted(s.result for s in _scans(db)) == sorted(r.value for r in results)


def test_a_revoked_token_cannot_be_marked_checked_in(db: Engine, door: Door) -> None:
    pid = door.active[0]
    with db.connect() as conn:
        old = store.live_token_for(conn, pid)
    assert old is not None
    store.reissue_token(db, pid)
    with db.begin() as conn:
        assert not store.mark_checked_in(conn, old.id, datetime.now().astimezone())


def test_reissue_keeps_an_earlier_check_in(db: Engine, door: Door, scan_keys: ScanKeys) -> None:
    pid = door.active[0]
    first = check_in(db, door.urls[pid], scan_keys, event_slug=door.event.slug)
    result, data = _cli("reissue-token", str(pid), "--json")
    assert result.exit_code == 0
    again = check_in(db, str(data["checkin_url"]), scan_keys, event_slug=door.event.slug)
    assert again.result is ScanResult.ALREADY_CHECKED_IN and again.checked_in_at == first.checked_in_at


def test_signed_tokens_check_in_at_the_server(db: Engine, door: Door, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = TokenSigner.generate()
    monkeypatch.setenv(SIGNING_KEY_ENV, signer.private_key_b64())
    keys = ScanKeys.from_env()
    assert keys.verifier is not None
    pid = door.active[0]
    with db.connect() as conn:
        record = store.live_token_for(conn, pid)
    assert record is not None
    signed = checkin_url(BASE, signed_token_for(signer, record))

    assert verify_scan(db, signed, keys, event_slug=door.event.slug).ok
    assert check_in(db, signed, keys, event_slug=door.event.slug).ok
    assert check_in(db, signed, keys, event_slug=door.event.slug).result is ScanResult.ALREADY_CHECKED_IN
    # Genuinely signed, but claiming another event than the one this public id was issued for.
    mismatched = signer.sign(event_slug="other-2026", public_id=record.public_id, issued_at=record.issued_at)
    assert verify_scan(db, mismatched, keys).result is ScanResult.UNKNOWN
    # Without the signing key configured, the server does not accept the signed form at all.
    assert verify_scan(db, signed, ScanKeys(codec=keys.codec)).result is ScanResult.UNKNOWN
    # The HMAC form keeps working next to it.
    assert verify_scan(db, door.urls[door.active[1]], keys).ok


def test_cli_refuses_to_run_without_the_token_key(door: Door, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENT_PIPELINE_TOKEN_KEY")
    assert not settings.paths().secrets_env.exists()
    result, _ = _cli("verify-token", door.urls[door.active[0]])
    assert result.exit_code == 1 and "EVENT_PIPELINE_TOKEN_KEY" in result.output
