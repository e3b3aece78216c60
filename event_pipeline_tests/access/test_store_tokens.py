"""Token rows on both backends: issued once, one live per participant, revocations kept, no secret stored."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline import settings
from event_pipeline.access.checkin import ScanKeys, check_in, reissue
from event_pipeline.access.tokens import PUBLIC_ID_LEN, checkin_url
from event_pipeline.mail.outbox import MboxOutbox
from event_pipeline.steps import messages
from event_pipeline.steps.tickets import check_tickets
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import tokens as store
from event_pipeline.store.tables import access_tokens
from event_pipeline_tests.access import _support

BASE = "https://checkin.example.com/t/"


def test_each_participant_gets_exactly_one_token_and_reruns_issue_none(db: Engine) -> None:
    event = _support.add_event(db)
    other = _support.add_event(db, "other-2026")
    ids = _support.add_participants(db, event.id, 120)
    _support.add_participants(db, other.id, 7)

    assert store.issue_missing_tokens(db, event.id) == 120  # exact count on both backends
    first = _support.live_public_ids(db, event.id)
    assert sorted(first) == ids
    assert store.issue_missing_tokens(db, event.id) == 0
    assert _support.live_public_ids(db, event.id) == first, "a re-run must not rotate tokens"

    more = _support.add_participants(db, event.id, 5, tag="late")
    assert store.issue_missing_tokens(db, event.id) == 5
    after = _support.live_public_ids(db, event.id)
    assert {k: v for k, v in after.items() if k in first} == first
    assert set(after) == set(ids) | set(more)

    assert store.issue_missing_tokens(db, other.id) == 7
    everything = _support.all_public_ids(db)
    assert len(everything) == len(set(everything)) == 132


def test_the_database_refuses_a_second_live_token(db: Engine) -> None:
    event = _support.add_event(db)
    [pid] = _support.add_participants(db, event.id, 1)
    store.issue_missing_tokens(db, event.id)
    with pytest.raises(sa.exc.IntegrityError), db.begin() as conn:
        conn.execute(
            sa.insert(access_tokens).values(
                event_id=event.id,
                participant_id=pid,
                public_id="x" * PUBLIC_ID_LEN,
                issued_at=datetime.now(UTC),
            )
        )


def test_reissue_revokes_and_keeps_the_old_row(db: Engine) -> None:
    event = _support.add_event(db)
    [pid] = _support.add_participants(db, event.id, 1)
    store.issue_missing_tokens(db, event.id)
    with db.connect() as conn:
        old = store.live_token_for(conn, pid)
    assert old is not None

    first = store.reissue_token(db, pid)
    second = store.reissue_token(db, pid)
    assert first.revoked is not None and first.revoked.public_id == old.public_id
    assert first.revoked.status == "revoked" and first.revoked.revoked_at is not None
    assert second.revoked is not None and second.revoked.public_id == first.token.public_id
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(access_tokens.c.public_id, access_tokens.c.status).where(access_tokens.c.participant_id == pid)
        ).all()
    assert sorted(rows) == sorted(
        [(old.public_id, "revoked"), (first.token.public_id, "revoked"), (second.token.public_id, "live")]
    )
    with pytest.raises(store.UnknownParticipantError):
        store.reissue_token(db, 10_000)


def test_live_public_ids_are_the_live_tokens_of_one_event_by_participant(db: Engine) -> None:
    event = _support.add_event(db)
    other = _support.add_event(db, "other-2026")
    a, b, c = _support.add_participants(db, event.id, 3)
    _support.add_participants(db, other.id, 2)
    store.issue_missing_tokens(db, event.id)
    store.issue_missing_tokens(db, other.id)
    before = _support.live_public_ids(db, event.id)
    reissued = store.reissue_token(db, b)

    with db.connect() as conn:
        live = store.live_public_ids(conn, event.id)

    assert live == [(a, before[a]), (b, reissued.token.public_id), (c, before[c])]
    assert reissued.revoked is not None and reissued.revoked.public_id not in dict(live).values()


def test_forget_qr_paths_clears_the_paths_of_one_event_only(db: Engine) -> None:
    event = _support.add_event(db)
    other = _support.add_event(db, "other-2026")
    _support.add_participants(db, event.id, 2)
    _support.add_participants(db, other.id, 1)
    store.issue_missing_tokens(db, event.id)
    store.issue_missing_tokens(db, other.id)
    with db.begin() as conn:
        conn.execute(sa.update(access_tokens).values(qr_path="/var/uploads/qr/old.png"))

    store.forget_qr_paths(db, event.id)

    with db.connect() as conn:
        rows = set(conn.execute(sa.select(access_tokens.c.event_id, access_tokens.c.qr_path)).all())
    assert rows == {(event.id, None), (other.id, "/var/uploads/qr/old.png")}


def test_no_working_token_is_stored_anywhere_in_the_database(db: Engine, scan_keys: ScanKeys) -> None:
    """Dump every table after a full life cycle (issue, QR check, welcome mail with its code,
    check-ins, reissue) and look for tokens."""
    paths = settings.paths()
    event = _support.add_event(db)
    ids = _support.add_participants(db, event.id, 40)
    store.issue_missing_tokens(db, event.id)
    codec = scan_keys.codec
    check_tickets(db, paths, codec, event_id=event.id, event_slug=event.slug, base_url=BASE)
    assert deliveries_store.enqueue_welcome(db, event.id, None) == 40
    ctx = messages.MailContext(
        sender=MboxOutbox(paths.outbox),
        from_email="events@example.com",
        from_name="Events",
        codec=codec,
        checkin_base_url=BASE,
    )
    assert messages.dispatch(db, ctx).sent == 40  # the outbox's bookkeeping rows are in the dump too
    tokens = {pid: codec.token_for(public_id) for pid, public_id in _support.live_public_ids(db).items()}
    for pid in ids[:5]:
        assert check_in(db, checkin_url(BASE, tokens[pid]), scan_keys, event_slug=event.slug).ok
    check_in(db, tokens[ids[0]][:-2] + "AA", scan_keys, event_slug=event.slug)  # a forged scan is logged too
    outcome = reissue(db, codec, ids[1], base_url=BASE, qr_out=paths.home / "desk.png")
    tokens[-1] = outcome.checkin_url.rsplit("/", 1)[-1]

    text = _support.dump_database_text(db)
    raw = _support.database_files_bytes()
    assert all(public_id in text for public_id in _support.all_public_ids(db)), "the dump must see the rows"
    for token in tokens.values():
        mac_half = token[PUBLIC_ID_LEN:]
        assert token not in text and mac_half not in text
        assert token.encode() not in raw and mac_half.encode() not in raw
