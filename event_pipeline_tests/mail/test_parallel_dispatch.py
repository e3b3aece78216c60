"""Welcome mail for a big upload dispatched from several processes (``MailContext.processes``):
each process claims its own deliveries, so every one goes out exactly once and counts add up."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from event_pipeline.mail.outbox import MboxOutbox
from event_pipeline.steps import messages
from event_pipeline.store import outbox_files
from event_pipeline_tests.mail.helpers import MailWorld, mbox_delivery_ids, outbox_per_delivery


def _outbox_ctx(world: MailWorld, processes: int) -> messages.MailContext:
    outbox = world.paths.outbox
    return world.ctx(MboxOutbox(outbox), processes=processes, sender_args={"backend": "outbox", "outbox_dir": outbox})


def test_two_processes_deliver_a_big_batch_exactly_once(world_factory: Callable[..., MailWorld]) -> None:
    # Three times the smallest batch worth a second process: with only PARALLEL_MIN, a loaded
    # machine let this process drain the queue before the spawned one had imported its modules.
    n = 3 * messages.PARALLEL_MIN
    world = world_factory([f"Person {i}" for i in range(n)])
    assert world.enqueue() == n

    stats = messages.dispatch(world.engine, _outbox_ctx(world, processes=2))

    # Both processes did work: each held its own file (the second one writes `<day>.2.mbox`).
    files = sorted(world.paths.outbox.glob("*.mbox"))
    assert sorted(p.name.count(".") for p in files) == [1, 2]
    per_file = {p.name: mbox_delivery_ids(p) for p in files}
    assert all(per_file.values()), {name: len(ids) for name, ids in per_file.items()}
    assert outbox_per_delivery(world.paths.outbox) == {r["id"]: 1 for r in world.rows()}
    assert world.statuses() == {"sent": n}
    # The counts are the sum over both processes.
    assert (stats.claimed, stats.sent, stats.retrying, stats.failed, stats.skipped) == (n, n, 0, 0, 0)
    assert stats.attempts == Counter({1: n})
    with world.engine.connect() as conn:
        assert [outbox_files.committed_bytes(conn, p.name) for p in files] == [p.stat().st_size for p in files]


def test_a_small_batch_stays_in_one_process(world_factory: Callable[..., MailWorld]) -> None:
    world = world_factory([f"Person {i}" for i in range(20)])
    world.enqueue()

    stats = messages.dispatch(world.engine, _outbox_ctx(world, processes=2))

    assert stats.sent == 20
    [only] = world.paths.outbox.glob("*.mbox")
    assert sorted(mbox_delivery_ids(only)) == sorted(r["id"] for r in world.rows())
