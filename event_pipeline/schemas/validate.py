"""validate_participants: raw text rows -> normalised valid rows + row findings with reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from event_pipeline.schemas.models import CLEAN_COLUMNS, CleanParticipants, RawParticipants
from event_pipeline.schemas.normalise import (
    as_text,
    collapse_whitespace,
    normalise_emails,
    normalise_phones,
)
from event_pipeline.schemas.results import Finding, ValidationOutcome
from event_pipeline.schemas.rules import Rule, row_rules, rules_schema


def _without_nul(frame: pd.DataFrame) -> pd.DataFrame:
    """NUL characters (UTF-16 files, odd Excel cells) mean nothing in a name or address, and
    PostgreSQL refuses text containing them, which would fail a whole load over one cell."""
    text_columns = [c for c in frame.columns if c != "source_row"]
    dirty = [c for c in text_columns if frame[c].astype("str").str.contains("\x00", regex=False).any()]
    if not dirty:
        return frame
    cleaned = frame.copy()
    for column in dirty:
        cleaned[column] = cleaned[column].astype("str").str.replace("\x00", "", regex=False)
    return cleaned


def _normalise(frame: pd.DataFrame, region: str) -> tuple[pd.DataFrame, pd.Series]:
    """The candidate clean frame (same index as ``frame``) and the phone validity mask."""
    frame = _without_nul(frame)
    n = len(frame)
    blank = pd.Series([""] * n, index=frame.index, dtype="str")
    phones, phone_ok = normalise_phones(frame.get("phone", blank), region)
    work = pd.DataFrame(
        {
            "source_row": frame["source_row"].astype("int64"),
            "name": collapse_whitespace(frame["name"]),
            "email": normalise_emails(frame["email"]),
            "phone": phones,
            "department": collapse_whitespace(frame["department"]) if "department" in frame else blank,
            "position": collapse_whitespace(frame["position"]) if "position" in frame else blank,
            "extra": as_text(frame["extra"]).replace("", "{}") if "extra" in frame else blank.replace("", "{}"),
        },
        index=frame.index,
    )
    return work, phone_ok


def _failures(work: pd.DataFrame, rules: list[Rule]) -> pd.DataFrame:
    """pandera's failure cases (column, check, index) for the row rules, lazily collected."""
    try:
        rules_schema(rules).validate(work, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        unexpected = cases[~cases["check"].isin({r.name for r in rules})]
        if not unexpected.empty:
            raise
        return cases
    return pd.DataFrame(columns=["column", "check", "index"])


def _row_errors(work: pd.DataFrame, cases: pd.DataFrame, rules: dict[str, Rule]) -> tuple[list[Finding], np.ndarray]:
    """Error findings for pandera's failure cases, ordered by row then column; and the failing positions.

    Built column-wise (one reason per distinct check and value) because a file whose email column
    is shifted fails on every row, and 660k per-row lookups would dominate the run.
    """
    if cases.empty:
        return [], np.zeros(0, dtype=np.int64)
    # ``work`` has a RangeIndex, so failure-case index labels are positions.
    positions = cases["index"].to_numpy(dtype=np.int64)
    columns = cases["column"].astype(str).to_numpy(dtype=object)
    checks = cases["check"].astype(str).to_numpy(dtype=object)
    source_rows = work["source_row"].to_numpy(dtype=np.int64)[positions]
    column_rank = np.array([CLEAN_COLUMNS.index(c) for c in columns], dtype=np.int64)
    order = np.lexsort((column_rank, source_rows))

    made: dict[tuple[str, str, str], Finding] = {}

    def reason(column: str, check: str, value: str) -> Finding:
        found = made.get((column, check, value))
        if found is None:
            key, params = rules[check].reason(value)
            found = made[(column, check, value)] = Finding.of(0, column, "error", key, **params)
        return found

    reasons = np.empty(len(cases), dtype=object)
    for column in np.unique(columns):
        in_column = columns == column
        normalised = work[column].to_numpy(dtype=object)[positions[in_column]]
        reasons[in_column] = [
            reason(str(column), check, value) for check, value in zip(checks[in_column], normalised, strict=True)
        ]
    errors = [
        Finding(
            row=int(source_rows[i]),
            column=reasons[i].column,
            severity="error",
            reason=reasons[i].reason,
            reason_ko=reasons[i].reason_ko,
        )
        for i in order
    ]
    return errors, np.unique(positions)


def validate_participants(
    frame: pd.DataFrame, *, default_region: str = "KR", phone_required: bool = False
) -> ValidationOutcome:
    """Normalise and check every row; never raises for bad data, only for a malformed frame.

    ``frame`` is ``ParsedTable.frame`` (RawParticipants). Rows failing any rule are left out of
    ``valid`` and described in ``errors`` (a row may have several); an unparseable phone is an
    error only when ``phone_required``, otherwise a warning with the phone kept as given. A value
    longer than its database column is an error of its row, so a load never fails over one cell.
    """
    RawParticipants.validate(frame, lazy=True)
    # Row lookups below go by index label; a caller's non-unique index must not alias rows.
    frame = frame.reset_index(drop=True)
    work, phone_ok = _normalise(frame, default_region)
    rules = row_rules(default_region=default_region, phone_required=phone_required)
    cases = _failures(work, rules)

    errors, bad_positions = _row_errors(work, cases, {rule.name: rule for rule in rules})

    keep = np.ones(len(work), dtype=bool)
    keep[bad_positions] = False

    warnings: list[Finding] = []
    if not phone_required and "phone" in frame:
        # Rejected rows get no phone warning: the report already sends the organiser to them.
        unparsed = np.flatnonzero(((work["phone"] != "") & ~phone_ok).to_numpy(dtype=bool) & keep)
        if unparsed.size:
            note = Finding.of(0, "phone", "warning", "phone_unrecognised", region=default_region)
            rows = work["source_row"].to_numpy(dtype=np.int64)[unparsed]
            warnings = [Finding(int(row), "phone", "warning", note.reason, note.reason_ko) for row in rows.tolist()]

    valid = work.loc[keep].reset_index(drop=True)[list(CLEAN_COLUMNS)]
    CleanParticipants.validate(valid, lazy=True)
    return ValidationOutcome(valid=valid, errors=errors, invalid_rows=len(bad_positions), warnings=warnings)
