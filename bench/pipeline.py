"""Stages that run the real pipeline: the whole upload through the Dagster job, drop-to-done
latency through a real daemon, and a profile of one import. Each runs in its own process."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench import data

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
