"""Stage measurements that need nothing but the files: parse, validate, dedupe, each beside the
naive path (seed-style per-row code) and the floor (the bare library call)."""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median seconds over ``reps`` runs, and the last result."""
    times = []
    result: Any = None
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def parse_csv(path: str, reps: int, encoding: str = "utf-8-sig") -> dict[str, Any]:
    import pandas as pd

    from event_pipeline.intake import read_table

    ours_s, parsed = timed(lambda: read_table(Path(path)), reps)
    # The floor and the naive loop are told the encoding; ours has to find it.
    floor_s, _ = timed(lambda: pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding), reps)

    def naive() -> int:
        with open(path, encoding=encoding, newline="") as fh:
            return sum(1 for _ in csv.DictReader(fh))

    naive_s, _ = timed(naive, 1)
    return {
        "rows": parsed.rows,
        "ours_s": ours_s,
        "naive_s": naive_s,
        "floor_s": floor_s,
        "naive_label": "csv.DictReader loop",
        "floor_label": "pandas.read_csv(dtype=str)",
    }


def parse_xlsx(path: str, reps: int) -> dict[str, Any]:
    from openpyxl import load_workbook

    from event_pipeline.intake import read_table

    ours_s, parsed = timed(lambda: read_table(Path(path)), reps)

    def naive() -> int:
        wb = load_workbook(path, read_only=True, data_only=True)
        n = sum(1 for _ in wb.worksheets[0].iter_rows(values_only=True))
        wb.close()
        return n

    naive_s, _ = timed(naive, 1)
    return {
        "rows": parsed.rows,
        "ours_s": ours_s,
        "naive_s": naive_s,
        "floor_s": None,
        "naive_label": "openpyxl read-only iter_rows",
        "floor_label": "",
    }


def validate(path: str, reps: int, sample: int = 5000) -> dict[str, Any]:
    import phonenumbers
    from email_validator import EmailNotValidError, validate_email

    from event_pipeline.intake import read_table
    from event_pipeline.schemas import dedupe_in_file, validate_participants

    frame = read_table(Path(path)).frame
    ours_s, outcome = timed(lambda: validate_participants(frame), reps)
    dedupe_s, deduped = timed(lambda: dedupe_in_file(outcome.valid), reps)
    part = frame.head(sample)

    def naive() -> int:
        ok = 0
        for rec in part.to_dict("records"):
            try:
                validate_email(str(rec.get("email", "")).strip(), check_deliverability=False)
                phonenumbers.format_number(
                    phonenumbers.parse(str(rec.get("phone", "")), "KR"), phonenumbers.PhoneNumberFormat.E164
                )
                ok += 1
            except (EmailNotValidError, phonenumbers.NumberParseException):
                pass
        return ok

    naive_sample_s, _ = timed(naive, 1)
    naive_s = naive_sample_s * len(frame) / max(1, len(part))
    return {
        "rows": len(frame),
        "ours_s": ours_s,
        "naive_s": naive_s,
        "floor_s": None,
        "naive_label": f"per-row email-validator + phonenumbers ({len(part)} rows, extrapolated)",
        "floor_label": "",
        "invalid_rows": outcome.invalid_rows,
        "dedupe_s": dedupe_s,
        "duplicates_in_file": len(deduped.duplicates),
    }
