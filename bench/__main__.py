"""`make bench` (quick) / `BENCH_FULL=1 make bench` (the 50 MB file).

Every stage runs in a fresh process so its peak RSS is its own; each compares our path with the
naive one and the floor measured in the same run, so ratios hold on a noisy machine.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench import data

FULL = os.environ.get("BENCH_FULL", "") not in ("", "0")
OUT = Path(os.environ.get("EVENT_PIPELINE_HOME", "var")).resolve() / "bench"
REPO = Path(__file__).resolve().parents[1]


def _child(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> dict[str, Any]:
    result = fn(*args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def isolated(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_child, fn, args).result()


def import_upload(path: str, home: str) -> dict[str, Any]:
    """The whole upload through the real Dagster job, in process, on a fresh var dir."""
    env = {**os.environ, "EVENT_PIPELINE_HOME": home, "DAGSTER_HOME": f"{home}/dagster_home"}
    env.pop("DATABASE_URL", None)
    cli = str(Path(sys.executable).parent / "event-pipeline")
    subprocess.run([cli, "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        [cli, "event", "add", "bench", "--name", "Bench", "--organiser-email", "o@example.com"],
        env=env,
        check=True,
        capture_output=True,
    )
    start = time.perf_counter()
    out = subprocess.run([cli, "import", path, "--event", "bench", "--json"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    text = out.stdout
    summary = json.loads(text[text.index("{") :]) if "{" in text else {"status": "error", "stderr": out.stderr[-2000:]}
    # ru_maxrss of the largest child (the import process) is what a 50 MB upload costs.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"rows": summary.get("rows_in_file") or 0, "ours_s": seconds, "summary": summary, "child_peak_rss_mb": rss}


def drop_to_done(home: str) -> dict[str, Any]:
    """Latency of a small file through a real dagster-daemon: drop -> upload done."""
    import sqlalchemy as sa

    env = {
        **os.environ,
        "EVENT_PIPELINE_HOME": home,
        "DAGSTER_HOME": f"{home}/dagster_home",
        "EVENT_PIPELINE_SENSOR_INTERVAL": "1",
    }
    env.pop("DATABASE_URL", None)
    binp = Path(sys.executable).parent
    subprocess.run([str(binp / "event-pipeline"), "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        [str(binp / "event-pipeline"), "event", "add", "lat", "--name", "L", "--organiser-email", "o@example.com"],
        env=env,
        check=True,
        capture_output=True,
    )
    daemon = subprocess.Popen(
        [str(binp / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    engine = sa.create_engine(f"sqlite:///{home}/event_pipeline.sqlite")
    try:
        time.sleep(15)  # let the daemon and its code server come up: we time the pipeline, not the boot
        rows, _, _ = data.rows(200, seed=3)
        tmp = Path(home) / "inbox" / "lat" / ".f.part"
        data.write_csv(tmp, rows)
        start = time.perf_counter()
        os.replace(tmp, tmp.with_name("f.csv"))
        while time.perf_counter() - start < 180:
            with engine.connect() as conn:
                if conn.execute(sa.text("SELECT status FROM uploads")).scalars().all() == ["done"]:
                    break
            time.sleep(0.2)
        return {"rows": 200, "ours_s": time.perf_counter() - start}
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=30)


def profile_import(path: str, home: str, out: Path) -> dict[str, Any]:
    """pyinstrument over one in-process import; the top costs go into the note."""
    from pyinstrument import Profiler

    os.environ.update({"EVENT_PIPELINE_HOME": home, "DAGSTER_HOME": f"{home}/dagster_home"})
    from click.testing import CliRunner

    from event_pipeline.cli import main

    runner = CliRunner()
    runner.invoke(main, ["init"])
    runner.invoke(main, ["event", "add", "prof", "--name", "P", "--organiser-email", "o@example.com"])
    profiler = Profiler(interval=0.005)
    profiler.start()
    runner.invoke(main, ["import", path, "--event", "prof", "--json"])
    profiler.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.html").write_text(profiler.output_html(), encoding="utf-8")
    (out / "profile.txt").write_text(profiler.output_text(unicode=False, color=False, show_all=False), encoding="utf-8")
    return {"rows": 0, "ours_s": profiler.last_session.duration if profiler.last_session else 0.0}


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
    target = 50 * 1024 * 1024 if FULL else 5 * 1024 * 1024
    n_csv = data.rows_for_size(target)
    n_xlsx = 100_000 if FULL else 10_000
    n_qr = 660_000 if FULL else 20_000
    n_mail = 20_000 if FULL else 2_000
    print(f"bench: {'FULL' if FULL else 'quick'} mode; generating data in {work}", flush=True)
    csv_gen = data.csv_file(work / "participants.csv", n_csv)
    cp949_gen = data.csv_file(work / "participants-cp949.csv", n_csv // 4, encoding="cp949", seed=5)
    xlsx_gen = data.xlsx_file(work / "participants.xlsx", n_xlsx)
    print(f"  csv {csv_gen.size_bytes / 1e6:.1f} MB / {csv_gen.rows:,} rows; xlsx {xlsx_gen.rows:,} rows", flush=True)

    from bench import stages

    results: list[dict[str, Any]] = []
    plan: list[tuple[str, Callable[..., dict[str, Any]], tuple[Any, ...]]] = [
        ("parse csv (utf-8)", stages.parse_csv, (str(csv_gen.path), reps)),
        ("parse csv (cp949)", stages.parse_csv, (str(cp949_gen.path), reps)),
        ("parse xlsx", stages.parse_xlsx, (str(xlsx_gen.path), reps)),
        ("validate + dedupe", stages.validate, (str(csv_gen.path), reps)),
    ]
    try:
        from bench import load as load_bench

        plan.append(("load (sqlite+postgresql)", load_bench.bench_from_csv, (str(csv_gen.path), str(work))))
    except (ImportError, AttributeError):
        pass
    try:
        from bench import qr as qr_bench

        plan.append(("tokens + qr", qr_bench.bench_tokens_qr, (n_qr,)))
    except (ImportError, AttributeError):
        pass
    try:
        from bench import email as email_bench

        plan.append(("email render + dispatch", email_bench.bench_email, (n_mail,)))
    except (ImportError, AttributeError):
        pass
    plan += [
        ("whole upload (dagster job)", import_upload, (str(csv_gen.path), str(work / "home-import"))),
        ("drop -> done (daemon)", drop_to_done, (str(work / "home-latency"),)),
    ]
    print(f"{'stage':<28} {'rows':>14} {'time':>10} {'throughput':>18} {'speed-up':>15} {'cost':>11} {'peak':>9}")
    for name, fn, args in plan:
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

    isolated(profile_import, str(csv_gen.path), str(work / "home-profile"), OUT)
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    print(f"results: {OUT / 'results.json'}; profile: {OUT / 'profile.html'}")

    def pick(stage_prefix: str, key: str) -> Any:
        for r in results:
            if r.get("stage", "").startswith(stage_prefix) and r.get(key) is not None:
                return r[key]
        return None

    upload_s = pick("whole upload", "seconds")
    load_rps = pick("load (sqlite+postgresql): postgresql", "rows_per_s") or pick("load", "rows_per_s")
    qr_rps = pick("tokens + qr", "rows_per_s")
    mail_rps = pick("email", "rows_per_s")
    peak = max((r.get("peak_rss_mb") or 0) for r in results)
    print(
        f"bench: upload_{'50mb' if FULL else '5mb'}_s={_fmt(upload_s)} load_rows_per_s={_fmt(load_rps, 0)} "
        f"qr_per_s={_fmt(qr_rps, 0)} email_per_s={_fmt(mail_rps, 0)} peak_rss_mb={_fmt(peak, 0)}"
    )


if __name__ == "__main__":
    main()
