"""Tokens + QR codes: issue an event's tokens, then one ZIP of every participant's check-in code.

``bench_tokens_qr(n)`` builds a fresh SQLite event with ``n`` participants (setup, not timed),
then times, in one run and on the same check-in URLs:

* tokens: ``issue_missing_tokens`` plus the URL of every live token (HMAC per token);
* the library path with 2 processes, ``write_qr_zip(..., processes=2)`` over all ``n`` (this plus
  tokens is ``ours_s``, the path badges and the benchmark target use: >= 3,000 codes/s on 2 cores);
* the library path in one process, over up to ``single_sample`` URLs;
* the floor, ``zxingcpp.create_barcode`` alone on those URLs (one process; for the 2-process
  figure it is halved, i.e. perfect scaling);
* both PNG writers on the same matrices: ours (numpy + zlib) and Pillow;
* naive, ``naive_qr_png`` (``qrcode``'s default path) on ``naive_sample`` URLs, extrapolated.

A random sample of the ZIP's members is decoded with zxing-cpp and must give the exact URL.

    .venv/bin/python -m bench.qr 20000
"""

from __future__ import annotations

import io
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

TARGET_CODES_PER_S = 3000
TARGET_660K_S = 240.0
BASE_URL = "https://checkin.example.com/t/"
PROCESSES = 2
SCALE, BORDER = 6, 4  # render_qr_png's defaults


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


def _pillow_png(matrix: npt.NDArray[np.bool_]) -> bytes:
    """The Pillow way to the same image: gray array, 1-bit, nearest-neighbour resize, PNG."""
    from PIL import Image

    gray = np.where(np.pad(matrix, BORDER), 0, 255).astype(np.uint8)
    image = Image.fromarray(gray).convert("1")
    image = image.resize((image.width * SCALE, image.height * SCALE), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _timed(fn: Callable[[Any], object], args: Sequence[Any]) -> float:
    start = time.perf_counter()
    for arg in args:
        fn(arg)
    return time.perf_counter() - start


def _decoded_ok(archive: Path, expected: dict[str, str], sample: int) -> tuple[int, int]:
    import zxingcpp
    from PIL import Image

    names = random.sample(sorted(expected), min(sample, len(expected)))
    ok = 0
    with zipfile.ZipFile(archive) as zf:
        for name in names:
            with Image.open(io.BytesIO(zf.read(name))) as image:
                found = zxingcpp.read_barcode(image)
            ok += found is not None and found.text == expected[name] and found.ec_level == "M"
    return ok, len(names)


def _same_image(a: bytes, b: bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(a)) as left, Image.open(io.BytesIO(b)) as right:
        return left.mode == right.mode == "1" and np.array_equal(np.asarray(left), np.asarray(right))


def _rate(rows: int, seconds: float) -> float | None:
    return rows / seconds if seconds > 0 else None


def bench_tokens_qr(
    n: int, *, single_sample: int = 20_000, png_sample: int = 2_000, naive_sample: int = 200, decode_sample: int = 300
) -> dict[str, Any]:
    import zxingcpp

    from event_pipeline import settings
    from event_pipeline.access import qr
    from event_pipeline.access.tokens import TokenCodec, checkin_url
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
        load_before = os.getloadavg()[0]

        start = time.perf_counter()
        issued = tokens_store.issue_missing_tokens(engine, event.id)
        with engine.connect() as conn:
            live = tokens_store.live_public_ids(conn, event.id)
        items = [(f"{pid}.png", checkin_url(BASE_URL, codec.token_for(public_id))) for pid, public_id in live]
        tokens_s = time.perf_counter() - start

        zip_start = time.perf_counter()
        zipped = qr.write_qr_zip(items, work / "codes-2.zip", processes=PROCESSES)
        zip2_s = time.perf_counter() - zip_start
        ours_s = tokens_s + zip2_s

        single = items[: min(single_sample, len(items))]
        single_start = time.perf_counter()
        qr.write_qr_zip(single, work / "codes-1.zip", processes=1)
        zip1_s = time.perf_counter() - single_start

        urls = [url for _, url in single]
        fmt = zxingcpp.BarcodeFormat.QRCode
        floor_s = _timed(
            lambda url: zxingcpp.create_barcode(url, fmt, ec_level=qr.QR_ERROR_CORRECTION, data_mask=qr.QR_MASK), urls
        )
        floor_per_s = _rate(len(urls), floor_s) or 0.0

        matrices = [qr.qr_matrix(url) for url in urls[:png_sample]]
        # The writer inside render_qr_png, timed apart from the encoder (one code at a time).
        zlib_s = _timed(lambda m: qr._pngs(m[None], SCALE, BORDER), matrices)
        pillow_s = _timed(_pillow_png, matrices)
        ours_png = qr._pngs(matrices[0][None], SCALE, BORDER)[0] if matrices else b""
        same_pixels = bool(matrices) and _same_image(ours_png, _pillow_png(matrices[0]))

        naive_urls = urls[: min(naive_sample, len(urls))]
        naive_sample_s = _timed(qr.naive_qr_png, naive_urls)
        naive_per_s = _rate(len(naive_urls), naive_sample_s) or 0.0

        ok, checked = _decoded_ok(work / "codes-2.zip", dict(items), decode_sample)
        codes_per_s = _rate(zipped, ours_s) or 0.0
        return {
            "rows": n,
            "ours_s": ours_s,
            "naive_s": n / naive_per_s if naive_per_s else None,  # extrapolated from the sample
            "naive_label": f"naive_qr_png (qrcode.make + PIL save), {len(naive_urls)} codes, 1 process",
            "floor_s": n / (floor_per_s * PROCESSES) if floor_per_s else None,
            "floor_label": f"zxingcpp.create_barcode alone, {len(urls)} codes, 1 process, halved for {PROCESSES}",
            "issued": issued,
            "zipped": zipped,
            "zip_bytes": (work / "codes-2.zip").stat().st_size,
            "codes_per_s": codes_per_s,
            "codes_per_s_1_process": _rate(len(single), zip1_s),
            "encoder_floor_per_s_1_process": floor_per_s,
            "naive_codes_per_s": naive_per_s,
            "ratio_to_naive": codes_per_s / naive_per_s if naive_per_s else None,
            "png_writer_us": {"numpy+zlib": 1e6 * zlib_s / len(matrices), "pillow": 1e6 * pillow_s / len(matrices)}
            if matrices
            else None,
            "png_writers_agree": same_pixels,
            "decoded_ok": f"{ok}/{checked}",
            "projected_660k_s": 660_000 / codes_per_s if codes_per_s else None,
            "meets_3000_per_s": codes_per_s >= TARGET_CODES_PER_S and ok == checked,
            "meets_660k_in_4_min": codes_per_s > 0 and 660_000 / codes_per_s <= TARGET_660K_S,
            "setup_participants_s": setup_s,
            # Other work on the machine skews wall-clock rates; this says how busy it was.
            "load_avg_1m": {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()},
            "substages": {
                "tokens (issue + urls)": {"rows": n, "ours_s": tokens_s},
                f"qr zip, {PROCESSES} processes": {
                    "rows": zipped,
                    "ours_s": zip2_s,
                    "floor_s": zipped / (floor_per_s * PROCESSES) if floor_per_s else None,
                },
                "qr zip, 1 process": {"rows": len(single), "ours_s": zip1_s, "floor_s": floor_s},
                "encoder alone (floor)": {"rows": len(urls), "ours_s": floor_s},
                "png writer: numpy+zlib": {"rows": len(matrices), "ours_s": zlib_s},
                "png writer: pillow": {"rows": len(matrices), "ours_s": pillow_s},
                "naive (qrcode)": {"rows": len(naive_urls), "ours_s": naive_sample_s},
            },
        }
    finally:
        dispose_engines()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(json.dumps(bench_tokens_qr(count), indent=2, default=str))
