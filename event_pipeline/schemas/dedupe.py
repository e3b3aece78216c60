"""In-file duplicates: the same (normalised) email twice in one upload."""

from __future__ import annotations

import pandas as pd

from event_pipeline.schemas.results import DedupeOutcome, Finding


def dedupe_in_file(valid: pd.DataFrame) -> DedupeOutcome:
    """Keep the first occurrence (lowest source_row) of each email; report the others.

    ``duplicates`` has ``source_row``, ``email``, ``first_row`` (the row that was kept) and
    ``other_name`` (the two rows give different names), so the report can say "row 57 repeats
    row 12" and warn when that is probably two people sharing an address.
    """
    # Intake emits rows in file order, so the sort is usually a no-op worth skipping.
    ordered = valid if valid["source_row"].is_monotonic_increasing else valid.sort_values("source_row", kind="stable")
    repeated = ordered.duplicated("email", keep="first")
    kept = ordered.loc[~repeated].reset_index(drop=True)
    first = kept.set_index("email")
    dupes = ordered.loc[repeated, ["source_row", "email"]].reset_index(drop=True)
    dupes["first_row"] = dupes["email"].map(first["source_row"]).astype("int64")
    if "name" in ordered:
        names = ordered.loc[repeated, "name"].astype("str").str.casefold().reset_index(drop=True)
        dupes["other_name"] = (names != dupes["email"].map(first["name"]).astype("str").str.casefold()).astype(bool)
    else:
        dupes["other_name"] = pd.Series(False, index=dupes.index, dtype=bool)
    return DedupeOutcome(kept=kept, duplicates=dupes)


def duplicate_findings(duplicates: pd.DataFrame) -> list[Finding]:
    """One error per dropped row (``DedupeOutcome.duplicates``), naming the row it repeats, and
    whether under another name, without quoting either."""
    other = duplicates["other_name"] if "other_name" in duplicates else pd.Series(False, index=duplicates.index)
    keys = {True: "duplicate.other_name", False: "duplicate"}
    return [
        Finding.of(int(row), "email", "error", keys[bool(differs)], first_row=int(first))
        for row, first, differs in zip(duplicates["source_row"], duplicates["first_row"], other, strict=True)
    ]
