"""Stages that run the real pipeline: the whole upload through the Dagster job, drop-to-done
latency through a real daemon, and a profile of one import. Each runs in its own process."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
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


def import_upload(
    path: str, home: str, profile_dir: str | None = None, mail: str = "outbox", latency_s: float = 0.05
) -> dict[str, Any]:
    """The whole upload through the real Dagster job, in process, on a fresh var dir: from the
    file to every welcome mail in the outbox (``mail="outbox"``) or accepted by the TLS
    SendGrid stand-in (``mail="sendgrid"``, ``latency_s`` per request).

    With ``profile_dir``, py-spy samples the import from outside (a few % overhead, unlike an
    in-process profiler), so the profile is of this very run.
    """
    shutil.rmtree(home, ignore_errors=True)  # a second `make bench` starts from scratch too
    env = {**os.environ, "EVENT_PIPELINE_HOME": home, "DAGSTER_HOME": f"{home}/dagster_home"}
    env.pop("DATABASE_URL", None)
    server = None
    if mail == "sendgrid":
        from bench.email import StandIn

        server = StandIn(latency_s, 0.0)
        env.update(
            EVENT_PIPELINE_MAIL_BACKEND="sendgrid",
            SENDGRID_HOST=server.host,
            SENDGRID_API_KEY=server.api_key,
            SSL_CERT_FILE=server.ca_file,
        )
    try:
        return _import(path, home, env, profile_dir, server)
    finally:
        if server is not None:
            server.stop()


def _import(path: str, home: str, env: dict[str, str], profile_dir: str | None, server: Any) -> dict[str, Any]:
    cli = str(Path(sys.executable).parent / "event-pipeline")
    subprocess.run([cli, "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        [cli, "event", "add", "bench", "--name", "Bench", "--organiser-email", "o@example.com"],
        env=env,
        check=True,
        capture_output=True,
    )
    command = [cli, "import", path, "--event", "bench", "--json"]
    py_spy = Path(sys.executable).parent / "py-spy"
    raw_profile = Path(profile_dir) / "profile.raw.txt" if profile_dir else None
    if raw_profile is not None and py_spy.exists():
        raw_profile.parent.mkdir(parents=True, exist_ok=True)
        command = [str(py_spy), "record", "--rate", "50", "--subprocesses", "--format", "raw",
                   "-o", str(raw_profile), "--", *command]  # fmt: skip
    start = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    text = out.stdout
    # The summary is the JSON object that starts on a line of its own (Dagster's run log comes
    # before it, py-spy may print its own lines after it).
    start_at = text.find("\n{\n") + 1 if "\n{\n" in text else text.find("{")
    summary = (
        json.JSONDecoder().raw_decode(text, start_at)[0]
        if start_at >= 0
        else {"status": "error", "stderr": out.stderr[-2000:]}
    )
    # ru_maxrss of the largest child (the import process) is what a 50 MB upload costs.
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    counts = summary.get("counts")
    rows = int(counts.get("rows_in_file") or 0) if isinstance(counts, dict) else 0
    accepted = None
    if server is not None:
        accepted = server.inspect("/__inspect/connections")
        accepted["messages"] = len(server.inspect("/__inspect/custom_args"))
    return {
        "rows": rows,
        "ours_s": seconds,
        "stand_in": accepted,
        "summary": summary,
        "child_peak_rss_mb": rss,
        "substages": _step_times(f"{home}/dagster_home", rows),
        "profile": summarise_profile(raw_profile) if raw_profile and raw_profile.exists() else None,
    }


def summarise_profile(raw: Path, top: int = 12) -> dict[str, Any]:
    """Self and inclusive time per function from py-spy's collapsed stacks, ours marked."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for frame in set(frames):
            if "event_pipeline/" in frame:
                inclusive[frame] += n
    top_self = [(f, round(100 * n / max(total, 1), 1)) for f, n in self_time.most_common(top)]
    top_own = [(f, round(100 * n / max(total, 1), 1)) for f, n in inclusive.most_common(top)]
    lines = [f"{total} samples (py-spy, 50 Hz)", "", "self time (% of samples):"]
    lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in top_self]
    lines += ["", "inclusive time in event_pipeline code:"]
    lines += [f"  {pct:5.1f}%  {frame}" for frame, pct in top_own]
    raw.with_name("profile-top.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"samples": total, "top_self": top_self, "top_own_inclusive": top_own}


def _step_times(dagster_home: str, rows: int) -> dict[str, dict[str, Any]]:
    """Per-asset step durations of the run just made, and the time until participants were loaded."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = dagster_home
    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_records(dg.RunsFilter(job_name="import_upload"), limit=1)[0]
        stats = instance.get_run_step_stats(run.dagster_run.run_id)
    out: dict[str, dict[str, Any]] = {}
    first_start = min((s.start_time or 0.0) for s in stats) if stats else 0.0
    for step in sorted(stats, key=lambda s: s.start_time or 0.0):
        if step.start_time is None or step.end_time is None:
            continue
        out[step.step_key] = {"rows": rows, "ours_s": step.end_time - step.start_time}
        if step.step_key == "participants":
            out["file -> participants loaded"] = {"rows": rows, "ours_s": step.end_time - first_start}
    return out


def email_record(n: int) -> dict[str, Any]:
    """bench.email's run, in the shape of a stage: the first round is the whole queue at full speed."""
    from bench.email import bench_email

    result = bench_email(n)
    ours, naive, floor = result["ours"], result["naive"], result["floor"]
    return {
        "rows": ours["sent"],
        "ours_s": ours["seconds"],
        # naive and floor at the same number of messages, from their measured rates
        "naive_s": ours["sent"] / naive["sends_per_s"] if naive["sends_per_s"] else None,
        "floor_s": ours["sent"] / floor["sends_per_s"] if floor["sends_per_s"] else None,
        **result,
    }


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
    # No secrets passed: the code location reads the var dir's secrets.env like any process.
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
                    return {"rows": 200, "ours_s": time.perf_counter() - start}
            time.sleep(0.2)
        raise TimeoutError("the dropped file was not imported within 180 s")
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=30)
