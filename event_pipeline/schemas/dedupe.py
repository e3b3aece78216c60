"""In-file duplicates: the same (normalised) email twice in one upload."""

from __future__ import annotations

import pandas as pd

from event_pipeline.schemas.results import DedupeOutcome


def dedupe_in_file(valid: pd.DataFrame) -> DedupeOutcome:
    """Keep the first occurrence (lowest source_row) of each email; report the others.

    ``duplicates`` has ``source_row``, ``email`` and ``first_row`` (the row that was kept), so the
    import report can say "row 57 repeats row 12".
    """
    # Intake emits rows in file order, so the sort is usually a no-op worth skipping.
    ordered = valid if valid["source_row"].is_monotonic_increasing else valid.sort_values("source_row", kind="stable")
    repeated = ordered.duplicated("email", keep="first")
    kept = ordered.loc[~repeated].reset_index(drop=True)
    first_row = kept.set_index("email")["source_row"]
    dupes = ordered.loc[repeated, ["source_row", "email"]].reset_index(drop=True)
    dupes["first_row"] = dupes["email"].map(first_row).astype("int64")
    return DedupeOutcome(kept=kept, duplicates=dupes)
