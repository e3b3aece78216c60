"""The outbox: mbox files any mail reader opens, private, and exactly one message per delivery
even when a dispatcher is killed mid-write (``mail.outbox``)."""

from __future__ import annotations

import io
import logging
import mailbox
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy.engine import Engine

from event_pipeline.mail.message import InlineImage, OutgoingMessage
from event_pipeline.mail.outbox import MboxOutbox, outbox_messages
from event_pipeline.mail.policy import MAX_ATTEMPTS
from event_pipeline.steps import messages
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store import outbox_files
from event_pipeline_tests.mail.helpers import MailWorld, checkin_url_of, mbox_delivery_ids, outbox_per_delivery

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["Ada Lovelace", "<script>alert('x')</script> & Co", "김민준"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _message(delivery_id: int, text: str = "Hello", **kwargs: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "to": f"p{delivery_id}@example.org",
        "from_email": "events@example.com",
        "subject": "Hi",
        "text": text,
        "html": "<p>Hello</p>",
        "custom_args": {"delivery_id": str(delivery_id), "kind": "welcome"},
        "key": f"welcome:{delivery_id}",
    }
    fields.update(kwargs)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def _committed(engine: Engine, path: Path) -> int | None:
    with engine.connect() as conn:
        return outbox_files.committed_bytes(conn, path.name)


def _subparts(message: Message) -> list[Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    parts = [p for p in payload if isinstance(p, Message)]
    assert len(parts) == len(payload)
    return parts


def _parts(message: Message) -> list[str]:
    return [p.get_content_type() for p in _subparts(message)]


def _body(part: Message) -> bytes:
    raw = part.get_payload(decode=True)
    assert isinstance(raw, bytes)
    return raw


def _text(part: Message) -> str:
    return _body(part).decode(part.get_content_charset() or "ascii")


def test_welcome_mail_is_an_mbox_with_alternative_parts_and_a_decodable_inline_qr(
    world_factory: Callable[..., MailWorld],
) -> None:
    world = world_factory(NAMES)
    world.enqueue()

    stats = messages.dispatch(world.engine, world.ctx(MboxOutbox(world.paths.outbox)))

    assert stats.sent == 3
    [path] = world.paths.outbox.glob("*.mbox")
    box = mailbox.mbox(path, create=False)  # the stdlib reader, as mutt or Thunderbird would read it
    mails = list(box)
    box.close()
    assert len(mails) == 3
    for mail in mails:
        assert mail.get_content_type() == "multipart/alternative"
        assert _parts(mail) == ["text/plain", "multipart/related"]
        text, related = _subparts(mail)
        assert _parts(related) == ["text/html", "image/png"]
        html, image = _subparts(related)
        assert image.get_content_disposition() == "inline"
        cid = str(image["Content-ID"]).strip("<>")
        assert f'src="cid:{cid}"' in _text(html)
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(_body(image))))
        assert len(decoded) == 1 and decoded[0].format == zxingcpp.BarcodeFormat.QRCode
        participant_id = int(str(mail["X-Event-Pipeline-Participant-Id"]))
        assert decoded[0].text == checkin_url_of(world.engine, participant_id)
        assert decoded[0].text in _text(text)  # the link is in the text part too
        headers = {k: str(v) for k, v in mail.items() if k.startswith("X-Event-Pipeline")}
        assert set(headers) == {
            "X-Event-Pipeline-Delivery-Id",
            "X-Event-Pipeline-Event-Id",
            "X-Event-Pipeline-Kind",
            "X-Event-Pipeline-Participant-Id",
        }
        assert headers["X-Event-Pipeline-Kind"] == "welcome" and not any("@" in v for v in headers.values())
    assert sorted(str(m["To"]) for m in mails) == sorted(world.emails)
    [script] = [m for m in mails if "script" in _text(_subparts(m)[0])]
    text, related = _subparts(script)
    escaped = _text(_subparts(related)[0])
    assert "<script>alert('x')</script> & Co" in _text(text)
    assert "&lt;script&gt;" in escaped and "<script>" not in escaped
    assert [m["X-Event-Pipeline-Kind"] for m in outbox_messages(world.paths.outbox, "welcome")] == ["welcome"] * 3
    assert list(outbox_messages(world.paths.outbox, "import_complete")) == []


def test_a_body_line_starting_with_from_does_not_split_the_message(
    world_factory: Callable[..., MailWorld],
) -> None:
    world = world_factory(["Ada"])
    outbox = MboxOutbox(world.paths.outbox)
    text = "From the organisers:\nFrom now on, bring this code.\n\nFrom "
    outbox.open(world.engine)
    try:
        for delivery_id in (1, 2, 3):
            outbox.send(_message(delivery_id, text=text, html=f"<p>{text}</p>"))
        assert outbox.current_file is not None
        path = outbox.current_file
        with world.engine.begin() as conn:
            outbox.checkpoint(conn, [1, 2, 3])
    finally:
        outbox.close()

    # Only the three separators start a line with "From " in the file...
    assert sum(line.startswith(b"From ") for line in path.read_bytes().split(b"\n")) == 3
    # ...so a reader sees three messages, each with its text exactly as written.
    box = mailbox.mbox(path, create=False)
    mails = list(box)
    box.close()
    assert [int(str(m["X-Event-Pipeline-Delivery-Id"])) for m in mails] == [1, 2, 3]
    assert all(_text(_subparts(m)[0]) == text for m in mails)


def test_outbox_files_are_0600_in_a_0700_folder(world_factory: Callable[..., MailWorld], tmp_path: Path) -> None:
    world = world_factory(["Ada"])
    world.paths.outbox.chmod(0o755)  # an existing folder is tightened too
    fresh = tmp_path / "new" / "outbox"
    for folder in (world.paths.outbox, fresh):
        outbox = MboxOutbox(folder)
        outbox.open(world.engine)
        try:
            outbox.send(_message(1, inline_images=(InlineImage("qr", "qr.png", b"\x89PNG fake"),)))
        finally:
            outbox.close()
        [path] = folder.glob("*.mbox")
        assert _mode(folder) == 0o700
        assert _mode(path) == 0o600


def _crashed_mid_way(world: MailWorld) -> bool:
    """The child has recorded some outcomes and written messages past them."""
    files = list(world.paths.outbox.glob("*.mbox"))
    if len(files) != 1:
        return False
    size, committed = files[0].stat().st_size, _committed(world.engine, files[0])
    return committed is not None and size > committed and world.statuses().get("sent", 0) > 0


def test_a_killed_dispatcher_leaves_exactly_one_message_per_delivery(
    world_factory: Callable[..., MailWorld], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = 1500  # two claim batches (1,000 each for the outbox): the kill lands mid-dispatch
    world = world_factory([f"Person {i}" for i in range(n)])
    assert world.enqueue() == n
    outbox = world.paths.outbox
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "event_pipeline_tests.mail.outbox_proc",
            world.engine.url.render_as_string(hide_password=False),
            str(outbox),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not _crashed_mid_way(world):
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the dispatcher finished before it could be killed"

    [path] = outbox.glob("*.mbox")
    size_at_kill, committed = path.stat().st_size, _committed(world.engine, path)
    assert committed is not None and 0 < committed < size_at_kill
    rows = world.rows()
    sent = {r["id"] for r in rows if r["status"] == "sent"}
    sending = {r["id"] for r in rows if r["status"] == "sending"}
    assert sent and sending
    # The committed length covers exactly the deliveries recorded as sent, nothing more.
    prefix = tmp_path / "committed.mbox"
    prefix.write_bytes(path.read_bytes()[:committed])
    assert sorted(mbox_delivery_ids(prefix)) == sorted(sent)
    # Bytes past it are messages of deliveries still `sending`: they will be sent again.
    assert len(mbox_delivery_ids(path)) > len(sent)

    assert deliveries_store.release_stale_claims(
        world.engine, older_than=timedelta(0), max_attempts=MAX_ATTEMPTS
    ) == len(sending)
    caplog.set_level(logging.WARNING, logger="event_pipeline.mail.outbox")
    stats = messages.dispatch(world.engine, world.ctx(MboxOutbox(outbox)))

    assert stats.sent == n - len(sent)
    assert world.statuses() == {"sent": n}
    per_delivery = outbox_per_delivery(outbox)
    assert per_delivery == {r["id"]: 1 for r in world.rows()}  # every delivery, each exactly once
    assert f"outbox {path.name}: cut {size_at_kill - committed} uncommitted bytes" in caplog.text
    # The resumed dispatch took the same (cut) file and committed all of it.
    assert [p.name for p in outbox.glob("*.mbox")] == [path.name]
    assert _committed(world.engine, path) == path.stat().st_size


def test_the_next_dispatcher_cuts_what_a_dead_one_never_recorded(
    world_factory: Callable[..., MailWorld], caplog: pytest.LogCaptureFixture
) -> None:
    world = world_factory(["Ada"])
    dead = MboxOutbox(world.paths.outbox)
    dead.open(world.engine)
    dead.send(_message(1))
    with world.engine.begin() as conn:
        dead.checkpoint(conn, [1])
    dead.send(_message(2))  # written, outcome never recorded
    assert dead.current_file is not None
    path = dead.current_file
    dead.close()  # its lock goes, as when a process dies
    committed = _committed(world.engine, path)
    assert committed is not None and path.stat().st_size > committed

    caplog.set_level(logging.WARNING, logger="event_pipeline.mail.outbox")
    following = MboxOutbox(world.paths.outbox)
    following.open(world.engine)
    following.close()

    assert path.stat().st_size == committed
    assert mbox_delivery_ids(path) == [1]
    assert f"outbox {path.name}: cut" in caplog.text
    assert "@" not in caplog.text  # file name and byte count, no address


def test_a_second_dispatcher_at_the_same_time_writes_its_own_file(world_factory: Callable[..., MailWorld]) -> None:
    world = world_factory(["Ada"])
    first, second = MboxOutbox(world.paths.outbox), MboxOutbox(world.paths.outbox)
    first.open(world.engine)
    second.open(world.engine)
    try:
        assert first.current_file is not None and second.current_file is not None
        one, two = first.current_file, second.current_file
        assert one.name.endswith(".mbox") and two.name == one.name.removesuffix(".mbox") + ".2.mbox"
        first.send(_message(1))
        second.send(_message(2))
        second.send(_message(3))
        with world.engine.begin() as conn:
            first.checkpoint(conn, [1])
            second.checkpoint(conn, [2, 3])
    finally:
        first.close()
        second.close()

    assert (mbox_delivery_ids(one), mbox_delivery_ids(two)) == ([1], [2, 3])
    assert (_committed(world.engine, one), _committed(world.engine, two)) == (one.stat().st_size, two.stat().st_size)
    assert _mode(two) == 0o600
    assert sorted(outbox_per_delivery(world.paths.outbox).items()) == [(1, 1), (2, 1), (3, 1)]


def test_uncommitted_bytes_of_a_live_writer_are_not_cut(world_factory: Callable[..., MailWorld]) -> None:
    world = world_factory(["Ada"])
    writer = MboxOutbox(world.paths.outbox)
    writer.open(world.engine)
    try:
        writer.send(_message(1))
        with world.engine.begin() as conn:
            writer.checkpoint(conn, [1])
        writer.send(_message(2))  # on its way: not recorded yet
        assert writer.current_file is not None
        path = writer.current_file
        size = path.stat().st_size
        committed = _committed(world.engine, path)
        assert committed is not None and committed < size

        other = MboxOutbox(world.paths.outbox)
        other.open(world.engine)  # looks at every file, cuts only those nobody holds
        other.close()

        assert path.stat().st_size == size
        writer.send(_message(3))
        with world.engine.begin() as conn:
            writer.checkpoint(conn, [2, 3])
    finally:
        writer.close()

    assert mbox_delivery_ids(path) == [1, 2, 3]
    assert _committed(world.engine, path) == path.stat().st_size
