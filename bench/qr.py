"""Tokens + QR codes end to end, the way the import's access_tokens and qr_codes steps do them.

``bench_tokens_qr(n)`` builds a fresh SQLite event with ``n`` participants (setup, not timed),
then times ``issue_missing_tokens`` + ``render_missing_qr_codes`` (tokens, HMACs, URLs, PNG
files, path bookkeeping), checks a random sample of the PNGs decodes to the exact check-in URL,
and times plain ``qrcode.make(url).save(path)`` on a sample in the same run for the ratio.

    .venv/bin/python -m bench.qr 660000
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TARGET_CODES_PER_S = 3000
TARGET_660K_S = 240.0
BASE_URL = "https://checkin.example.com/t/"


@contextmanager
def _timing(module: Any, name: str, into: dict[str, float]) -> Iterator[None]:
    """Add up the time spent in ``module.name`` while the block runs (sub-stage breakdown)."""
    real: Callable[..., Any] = getattr(module, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            into[name] = into.get(name, 0.0) + time.perf_counter() - start

    setattr(module, name, timed)
    try:
        yield
    finally:
        setattr(module, name, real)


def _add_participants(engine: Any, event_id: int, n: int) -> None:
    from event_pipeline.store.tables import participants

    # The text SQLAlchemy would store, since these rows bypass it for speed.
    processor = participants.c.created_at.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    now = processor(datetime.now(UTC)) if processor is not None else datetime.now(UTC)
    sql = (
        "INSERT INTO participants (event_id, email_norm, name, phone, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
    )
    with engine.begin() as conn:
        for start in range(0, n, 100_000):
            conn.exec_driver_sql(
                sql,
                [
                    (event_id, f"p{i}@example.com", f"참가자 {i}", f"+8210{i:08d}", now, now)
                    for i in range(start, min(n, start + 100_000))
                ],
            )


def _decode(path: Path) -> str | None:
    import zxingcpp
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(path))
    return str(found[0].text) if len(found) == 1 else None


def bench_tokens_qr(n: int, *, naive_sample: int = 300, decode_sample: int = 300) -> dict[str, Any]:
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    from event_pipeline import settings
    from event_pipeline.access.tokens import TokenCodec, checkin_url
    from event_pipeline.steps import tickets
    from event_pipeline.store import tokens as tokens_store
    from event_pipeline.store.db import dispose_engines, make_engine
    from event_pipeline.store.events import create_event
    from event_pipeline.store.migrate import upgrade

    work = Path(tempfile.mkdtemp(prefix="bench-tokens-qr-"))
    try:
        paths = settings.paths(work)
        engine = make_engine(f"sqlite:///{paths.db_file}")
        upgrade(engine)
        event = create_event(engine, slug="bench-qr", name="Bench", organiser_email="o@example.com")
        setup_start = time.perf_counter()
        _add_participants(engine, event.id, n)
        setup_s = time.perf_counter() - setup_start
        codec = TokenCodec.from_secret(secrets.token_urlsafe(48))

        parts: dict[str, float] = {}
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        issued = tokens_store.issue_missing_tokens(engine, event.id)
        issue_s = time.perf_counter() - start
        with _timing(tokens_store, "set_qr_paths", parts), _timing(tokens_store, "tokens_missing_qr", parts):
            render_start = time.perf_counter()
            rendered = tickets.render_missing_qr_codes(
                engine, paths, codec, event_id=event.id, event_slug=event.slug, base_url=BASE_URL
            )
            render_s = time.perf_counter() - render_start
        total_s = time.perf_counter() - start

        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT public_id, qr_path FROM access_tokens WHERE status = 'live'").all()
        picked = random.sample(rows, min(decode_sample, len(rows)))
        decoded_ok = sum(
            1 for public_id, path in picked if _decode(Path(path)) == checkin_url(BASE_URL, codec.token_for(public_id))
        )

        naive_dir = work / "naive"
        naive_dir.mkdir()
        sample_rows = rows[: min(naive_sample, len(rows))]
        naive_start = time.perf_counter()
        for public_id, _ in sample_rows:
            url = checkin_url(BASE_URL, codec.token_for(public_id))
            qrcode.make(url, error_correction=ERROR_CORRECT_M).save(naive_dir / f"{public_id}.png")
        naive_per_s = len(sample_rows) / (time.perf_counter() - naive_start)

        codes_per_s = rendered / total_s if total_s else 0.0
        qr_s = render_s - parts.get("set_qr_paths", 0.0) - parts.get("tokens_missing_qr", 0.0)
        db_s = issue_s + parts.get("set_qr_paths", 0.0) + parts.get("tokens_missing_qr", 0.0)
        return {
            "rows": n,
            "ours_s": total_s,
            "naive_s": n / naive_per_s,  # extrapolated from the sample, for the harness's ratio
            "naive_label": f"qrcode.make(url).save(path), {len(sample_rows)} codes",
            "issued": issued,
            "rendered": rendered,
            "codes_per_s": codes_per_s,
            "png_per_s": rendered / qr_s if qr_s > 0 else None,
            "naive_codes_per_s": naive_per_s,
            "ratio_to_naive": codes_per_s / naive_per_s,
            "decoded_ok": f"{decoded_ok}/{len(picked)}",
            "projected_660k_s": 660_000 / codes_per_s if codes_per_s else None,
            "meets_3000_per_s": codes_per_s >= TARGET_CODES_PER_S,
            "meets_660k_in_4_min": codes_per_s > 0 and 660_000 / codes_per_s <= TARGET_660K_S,
            "setup_participants_s": setup_s,
            # Other work on the machine skews wall-clock rates; this says how busy it was.
            "load_avg_1m": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()},
            "substages": {
                "issue_missing_tokens": {"rows": n, "ours_s": issue_s},
                "tokens_missing_qr": {"rows": n, "ours_s": parts.get("tokens_missing_qr", 0.0)},
                "render + write PNGs": {"rows": rendered, "ours_s": qr_s},
                "set_qr_paths": {"rows": rendered, "ours_s": parts.get("set_qr_paths", 0.0)},
            },
            "db_share": db_s / total_s if total_s else None,
        }
    finally:
        dispose_engines()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(json.dumps(bench_tokens_qr(count), indent=2, default=str))
