"""`make bench` (quick) / `BENCH_FULL=1 make bench` (the 50 MB file).

Every stage runs in a fresh process so its peak RSS is its own; each compares our path with the
naive one and the floor measured in the same run, so ratios hold on a noisy machine.
``BENCH_ONLY=email,whole`` runs only the stages whose names contain one of those words (the full
run takes over an hour; the summary line reports what ran).
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import data
from bench import distributed as distributed_bench
from bench import load as load_bench
from bench import qr as qr_bench
from bench.pipeline import drop_to_done, email_record, import_upload, isolated

FULL = os.environ.get("BENCH_FULL", "") not in ("", "0")
ONLY = [w.strip() for w in os.environ.get("BENCH_ONLY", "").split(",") if w.strip()]
OUT = Path(os.environ.get("EVENT_PIPELINE_HOME", "var")).resolve() / "bench"


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def record(stage: str, r: dict[str, Any]) -> dict[str, Any]:
    rows = r.get("rows") or 0
    ours = r.get("ours_s")
    naive, floor = r.get("naive_s"), r.get("floor_s")
    rec = {
        "stage": stage,
        "rows": rows,
        "seconds": ours,
        "rows_per_s": rows / ours if rows and ours else None,
        "naive_s": naive,
        "ratio_to_naive": naive / ours if naive and ours else None,
        "floor_s": floor,
        "ratio_to_floor": ours / floor if floor and ours else None,
        "peak_rss_mb": r.get("peak_rss_mb") or r.get("child_peak_rss_mb"),
        "notes": {k: v for k, v in r.items() if k not in ("rows", "ours_s", "naive_s", "floor_s", "peak_rss_mb")},
    }
    print(
        f"{stage:<28} {_fmt(rows):>9} rows {_fmt(ours):>8} s {_fmt(rec['rows_per_s'], 0):>11} rows/s "
        f"x{_fmt(rec['ratio_to_naive'], 1):>6} vs naive  {_fmt(rec['ratio_to_floor'], 2):>5}x floor  "
        f"{_fmt(rec['peak_rss_mb'], 0):>6} MB",
        flush=True,
    )
    return rec


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "work"
    work.mkdir(exist_ok=True)
    reps = 3
    # Just under the 50 MB upload limit: the largest file an organiser can send.
    target = 50 * 1000 * 1000 if FULL else 5 * 1000 * 1000
    n_xlsx = 100_000 if FULL else 10_000
    n_qr = 660_000 if FULL else 20_000
    n_mail = 50_000 if FULL else 10_000
    print(f"bench: {'FULL' if FULL else 'quick'} mode; generating data in {work}", flush=True)
    csv_gen = data.csv_file_of_size(work / "participants.csv", target)
    cp949_gen = data.csv_file_of_size(work / "participants-cp949.csv", target, encoding="cp949", seed=5)
    xlsx_gen = data.xlsx_file(work / "participants.xlsx", n_xlsx)
    # Quick: the 20,000-row upload; full: the 50 MB file.
    dist_gen = csv_gen if FULL else data.csv_file(work / "participants-20k.csv", 20_000, seed=11)
    print(f"  csv {csv_gen.size_bytes / 1e6:.1f} MB / {csv_gen.rows:,} rows; xlsx {xlsx_gen.rows:,} rows", flush=True)

    from bench import stages

    results: list[dict[str, Any]] = []
    plan: list[tuple[str, Callable[..., dict[str, Any]], tuple[Any, ...]]] = [
        ("parse csv (utf-8)", stages.parse_csv, (str(csv_gen.path), reps)),
        ("parse csv (cp949)", stages.parse_csv, (str(cp949_gen.path), reps, "cp949")),
        ("parse xlsx", stages.parse_xlsx, (str(xlsx_gen.path), reps)),
        ("validate + dedupe", stages.validate, (str(csv_gen.path), reps)),
    ]
    plan += [
        ("load (sqlite+postgresql)", load_bench.bench_from_csv, (str(csv_gen.path), str(work))),
        ("tokens + qr", qr_bench.bench_tokens_qr, (n_qr,)),
        ("email dispatch (sendgrid api)", email_record, (n_mail,)),
    ]
    plan += [
        ("whole upload (dagster job)", import_upload, (str(csv_gen.path), str(work / "home-import"), str(OUT))),
        (
            "whole upload, sendgrid tls",
            import_upload,
            (str(csv_gen.path), str(work / "home-import-tls"), None, "sendgrid", 0.05),
        ),
        ("drop -> done (daemon)", drop_to_done, (str(work / "home-latency"),)),
        ("celery: 2 vs 1 workers", distributed_bench.upload_on_workers, (str(dist_gen.path), str(work))),
    ]
    print(f"{'stage':<28} {'rows':>14} {'time':>10} {'throughput':>18} {'speed-up':>15} {'cost':>11} {'peak':>9}")
    for name, fn, args in plan:
        if ONLY and not any(word in name for word in ONLY):
            continue
        try:
            out = isolated(fn, *args)
        except Exception:
            traceback.print_exc()
            results.append({"stage": name, "error": traceback.format_exc(limit=3)})
            continue
        for sub_name, sub in out.pop("substages", {}).items():
            results.append(record(f"{name}: {sub_name}", sub))
        if out.get("ours_s") is not None:
            results.append(record(name, out))

    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"results: {OUT / 'results.json'}; profile: {OUT / 'profile-top.txt'} (raw stacks: profile.raw.txt)")

    def pick(stage: str, key: str) -> Any:
        return next((r.get(key) for r in results if r.get("stage") == stage), None)

    upload_s = pick("whole upload (dagster job)", "seconds")
    upload_tls_s = pick("whole upload, sendgrid tls", "seconds")
    loaded_s = pick("whole upload (dagster job): file -> participants loaded", "seconds")
    load_rps = pick("load (sqlite+postgresql): postgresql", "rows_per_s")
    qr_rps = pick("tokens + qr", "rows_per_s")
    mail_rps = pick("email dispatch (sendgrid api)", "rows_per_s")
    peak = max((r.get("peak_rss_mb") or 0) for r in results)
    celery_1 = pick("celery: 2 vs 1 workers: 1 celery worker", "seconds")
    celery_2 = pick("celery: 2 vs 1 workers: 2 celery workers", "seconds")
    size = "50mb" if FULL else "5mb"
    print(
        f"bench: upload_{size}_mail_s={_fmt(upload_s)} upload_{size}_mail_tls_s={_fmt(upload_tls_s)} "
        f"loaded_s={_fmt(loaded_s)} "
        f"load_rows_per_s={_fmt(load_rps, 0)} "
        f"qr_per_s={_fmt(qr_rps, 0)} email_per_s={_fmt(mail_rps, 0)} "
        f"email_x_naive={_fmt(pick('email dispatch (sendgrid api)', 'ratio_to_naive'), 1)} peak_rss_mb={_fmt(peak, 0)} "
        f"celery_1_worker_s={_fmt(celery_1)} celery_2_workers_s={_fmt(celery_2)} "
        f"celery_2_vs_1={_fmt(celery_1 / celery_2 if celery_1 and celery_2 else None)}"
    )


if __name__ == "__main__":
    main()
