"""Participants load throughput: our bulk path against a naive row-by-row path and the floor.

Plain functions; ``make bench`` (bench/__main__.py) calls ``bench_from_csv``. All paths are
measured in the same run, on the same database, so the ratios hold on a noisy machine:

- ours:  ``store.participants.load_participants`` into a fresh event, then a re-load of the same
         rows into that event (every row already there, nothing written);
- naive: SELECT-then-INSERT/UPDATE per row in one transaction, timed on a sample and extrapolated;
- floor: the same rows into a table with no key, index or constraint, by the fastest means the
         backend has (COPY on PostgreSQL, one executemany on SQLite);
- constrained floor: the same COPY / executemany straight into ``participants`` for a fresh event,
         i.e. what the table's primary key, unique (event_id, email_norm) index and foreign key
         cost any loader before it classifies anything.

Timings of ours and of both floors are the best of ``repeats`` runs (the first run on a new
cluster also pays for creating WAL segments); naive runs once.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from event_pipeline.store import bulk
from event_pipeline.store.db import dispose_engines, is_postgres, make_engine
from event_pipeline.store.events import create_event
from event_pipeline.store.migrate import upgrade
from event_pipeline.store.participants import BLANK, DATA_FIELDS, frame_for_load, load_participants
from event_pipeline.store.tables import participants

COLUMNS = ("source_row", "email", "name", "phone", "department", "position", "extra")
# About the row count of a 50 MB participants CSV (the upload size limit).
ROWS_50MB = 660_000
NAIVE_SAMPLE = 5_000
REPEATS = 2
TARGET_VS_NAIVE = 6.0
TARGET_VS_FLOOR = 2.5

_FAMILY = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "Smith", "García", "Kim", "O'Brien"]
_GIVEN = ["민준", "서연", "도윤", "하은", "지호", "수아", "James", "María", "Wei", "Anna"]
_DEPTS = ["", "Engineering", "영업부", "Marketing", "인사팀", "Research & Development", "재무팀"]
_POSITIONS = ["", "Manager", "팀장", "Engineer", "대리", "Director", "Intern"]


def generate_rows(n: int = ROWS_50MB, *, seed: int = 0) -> pd.DataFrame:
    """``n`` distinct, already-normalised participants, shaped like a deduplicated validated upload."""
    rng = random.Random(seed)
    return pd.DataFrame(
        {
            "email": [f"p{i:07d}.{rng.randrange(36**4):x}@example{i % 113}.co.kr" for i in range(n)],
            "name": [f"{rng.choice(_FAMILY)} {rng.choice(_GIVEN)}" for _ in range(n)],
            "phone": [f"+8210{rng.randrange(10**8):08d}" if i % 10 else "" for i in range(n)],
            "department": [rng.choice(_DEPTS) for _ in range(n)],
            "position": [rng.choice(_POSITIONS) for _ in range(n)],
            "extra": [json.dumps({"table": i % 40, "diet": "vegan"}) if i % 4 == 0 else "{}" for i in range(n)],
        },
        columns=list(COLUMNS),
    )


def _best(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    runs = [fn() for _ in range(max(1, repeats))]
    return min(runs), runs


def _fresh_event(engine: Engine, label: str) -> int:
    slug = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    return create_event(engine, slug=slug, name=slug, organiser_email="bench@example.com").id


def time_ours(engine: Engine, rows: pd.DataFrame, *, repeats: int = REPEATS) -> dict[str, Any]:
    reloads: list[float] = []

    def once() -> float:
        event_id = _fresh_event(engine, "ours")
        started = time.perf_counter()
        counts = load_participants(engine, event_id=event_id, upload_id="bench-ours", upload_seq=1, rows=rows)
        seconds = time.perf_counter() - started
        if counts.new != len(rows):
            raise AssertionError(f"bench load counted {counts} for {len(rows)} fresh rows")
        started = time.perf_counter()
        again = load_participants(engine, event_id=event_id, upload_id="bench-ours-again", upload_seq=2, rows=rows)
        reloads.append(time.perf_counter() - started)
        if again.unchanged != len(rows):
            raise AssertionError(f"re-load counted {again} for {len(rows)} unchanged rows")
        return seconds

    best, runs = _best(once, repeats)
    return {
        "rows": len(rows),
        "seconds": best,
        "runs": runs,
        "rows_per_s": len(rows) / best,
        "reload_seconds": min(reloads),
        "reload_rows_per_s": len(rows) / min(reloads),
    }


def _as_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """The load's frame as participants columns: its row numbers are for the report only."""
    return frame_for_load(rows).drop(columns=["source_row"], errors="ignore")


def time_naive(engine: Engine, rows: pd.DataFrame, *, sample: int = NAIVE_SAMPLE) -> dict[str, Any]:
    """What a straightforward loader does: look each email up, then insert or update it."""
    event_id = _fresh_event(engine, "naive")
    frame = _as_columns(rows.head(sample))
    now = datetime.now(UTC)
    find = sa.select(participants.c.id, *(participants.c[f] for f in DATA_FIELDS)).where(
        participants.c.event_id == event_id, participants.c.email_norm == sa.bindparam("email")
    )
    started = time.perf_counter()
    with engine.begin() as conn:
        for rec in frame.to_dict("records"):
            found = conn.execute(find, {"email": rec["email_norm"]}).first()
            if found is None:
                conn.execute(
                    sa.insert(participants).values(
                        event_id=event_id,
                        **rec,
                        created_upload_id="bench-naive",
                        updated_upload_id="bench-naive",
                        created_at=now,
                        updated_at=now,
                    )
                )
                continue
            merged = {f: rec[f] if rec[f] != BLANK[f] else found._mapping[f] for f in DATA_FIELDS}
            if any(merged[f] != found._mapping[f] for f in DATA_FIELDS):
                conn.execute(
                    sa.update(participants).where(participants.c.id == found.id).values(**merged, updated_at=now)
                )
    seconds = time.perf_counter() - started
    rate = len(frame) / seconds
    return {"rows": len(frame), "seconds": seconds, "rows_per_s": rate, "extrapolated_seconds": len(rows) / rate}


def _bulk_write(conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
    if is_postgres(conn):
        bulk.copy_frame(conn, table, frame)
    else:
        bulk.insert_many(conn, table, frame)


def time_floor(engine: Engine, rows: pd.DataFrame, *, repeats: int = REPEATS) -> dict[str, Any]:
    """The same rows into a table with no constraints, as fast as the backend takes them."""
    frame = frame_for_load(rows)
    cols = ", ".join(f'"{c}" TEXT' for c in frame.columns)

    def once() -> float:
        table = f"bench_floor_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {table} ({cols})")
        try:
            started = time.perf_counter()
            with engine.begin() as conn:
                _bulk_write(conn, table, frame_for_load(rows))
            return time.perf_counter() - started
        finally:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP TABLE {table}")

    best, runs = _best(once, repeats)
    return {"rows": len(frame), "seconds": best, "runs": runs, "rows_per_s": len(frame) / best}


def time_constrained_floor(engine: Engine, rows: pd.DataFrame, *, repeats: int = REPEATS) -> dict[str, Any]:
    """Straight into participants for a fresh event: the table's own constraints, nothing else."""

    def once() -> float:
        event_id = _fresh_event(engine, "floor")
        now = datetime.now(UTC).isoformat(sep=" ")
        started = time.perf_counter()
        frame = _as_columns(rows).assign(
            event_id=str(event_id),
            created_upload_id="bench-floor",
            updated_upload_id="bench-floor",
            created_at=now,
            updated_at=now,
        )
        with engine.begin() as conn:
            _bulk_write(conn, "participants", frame)
        return time.perf_counter() - started

    best, runs = _best(once, repeats)
    return {"rows": len(rows), "seconds": best, "runs": runs, "rows_per_s": len(rows) / best}


def bench_load(
    url: str, rows_df: pd.DataFrame, *, naive_sample: int = NAIVE_SAMPLE, repeats: int = REPEATS
) -> dict[str, Any]:
    """Measure ours, naive and both floors on ``url`` (migrated here if needed) with ``rows_df``."""
    engine = make_engine(url)
    upgrade(engine)
    floor = time_floor(engine, rows_df, repeats=repeats)
    constrained = time_constrained_floor(engine, rows_df, repeats=repeats)
    ours = time_ours(engine, rows_df, repeats=repeats)
    naive = time_naive(engine, rows_df, sample=naive_sample)
    vs_naive = ours["rows_per_s"] / naive["rows_per_s"]
    vs_floor = ours["seconds"] / floor["seconds"]
    postgres = engine.dialect.name == "postgresql"
    return {
        "backend": engine.dialect.name,
        "rows": len(rows_df),
        "ours": ours,
        "naive": naive,
        "floor": floor,
        "constrained_floor": constrained,
        "ours_vs_naive": vs_naive,
        "ours_vs_floor": vs_floor,
        "ours_vs_constrained_floor": ours["seconds"] / constrained["seconds"],
        "constrained_floor_vs_floor": constrained["seconds"] / floor["seconds"],
        "targets": {
            "ours_vs_naive_min": TARGET_VS_NAIVE,
            "ours_vs_floor_max": TARGET_VS_FLOOR,
            "met_naive": vs_naive >= TARGET_VS_NAIVE,
            # The floor target is set for PostgreSQL, where COPY is the floor.
            "met_floor": vs_floor <= TARGET_VS_FLOOR if postgres else None,
        },
    }


def clean_rows_from_csv(path: str) -> pd.DataFrame:
    """A participants file through the real intake, validation and in-file dedupe: the frame the
    load step receives."""
    from event_pipeline.intake import read_table
    from event_pipeline.schemas import dedupe_in_file, validate_participants

    parsed = read_table(Path(path))
    outcome = validate_participants(parsed.frame)
    kept = dedupe_in_file(outcome.valid).kept
    return kept[[c for c in COLUMNS if c in kept.columns]]


def bench_from_csv(csv_path: str, work_dir: str) -> dict[str, Any]:
    """Both backends on the clean rows of ``csv_path``: SQLite in ``work_dir``, PostgreSQL on a
    throwaway server (the test suite's), in the shape ``bench/__main__.py`` records."""
    from event_pipeline_tests.support.postgres import PostgresServer, PostgresUnavailable

    rows = clean_rows_from_csv(csv_path)
    substages: dict[str, dict[str, Any]] = {}
    sqlite_file = Path(work_dir) / f"load-bench-{uuid.uuid4().hex[:8]}.sqlite"
    try:
        substages["sqlite"] = _as_record(bench_load(f"sqlite:///{sqlite_file}", rows))
    finally:
        dispose_engines()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite_file}{suffix}").unlink(missing_ok=True)
    pg_dir = Path(tempfile.mkdtemp(prefix="load-bench-pg-", dir=work_dir))
    server = PostgresServer(pg_dir)
    try:
        server.start()
        substages["postgresql"] = _as_record(bench_load(server.create_database(), rows))
    except PostgresUnavailable as exc:
        substages["postgresql"] = {"rows": 0, "ours_s": None, "skipped": str(exc)}
    finally:
        dispose_engines()
        server.cleanup()
        shutil.rmtree(pg_dir, ignore_errors=True)
    return {"substages": substages}


def _as_record(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "rows": result["rows"],
        "ours_s": result["ours"]["seconds"],
        "naive_s": result["naive"]["extrapolated_seconds"],
        "floor_s": result["floor"]["seconds"],
        "constrained_floor_s": result["constrained_floor"]["seconds"],
        "reload_s": result["ours"]["reload_seconds"],
        "naive_label": f"SELECT then INSERT/UPDATE per row ({result['naive']['rows']:,}-row sample, extrapolated)",
        "floor_label": "COPY / executemany into a table without constraints",
    }
