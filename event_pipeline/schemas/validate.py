"""validate_participants: raw text rows -> normalised valid rows + row errors with reasons."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from event_pipeline.schemas.models import CLEAN_COLUMNS, OPTIONAL_FIELDS, CleanParticipants, RawParticipants
from event_pipeline.schemas.normalise import (
    as_text,
    collapse_whitespace,
    normalise_emails,
    normalise_phones,
)
from event_pipeline.schemas.results import RowError, ValidationOutcome, preview
from event_pipeline.schemas.rules import Rule, row_rules, rules_schema


def _normalise(frame: pd.DataFrame, region: str) -> tuple[pd.DataFrame, pd.Series]:
    """The candidate clean frame (same index as ``frame``) and the phone validity mask."""
    n = len(frame)
    blank = pd.Series([""] * n, index=frame.index, dtype="str")
    phones, phone_ok = normalise_phones(frame["phone"] if "phone" in frame else blank, region)
    work = pd.DataFrame(
        {
            "source_row": frame["source_row"].astype("int64"),
            "name": collapse_whitespace(frame["name"]),
            "email": normalise_emails(frame["email"]),
            "phone": phones,
            "department": collapse_whitespace(frame["department"]) if "department" in frame else blank,
            "position": collapse_whitespace(frame["position"]) if "position" in frame else blank,
            "extra": as_text(frame["extra"]).replace("", "{}")
            if "extra" in frame
            else blank.replace("", "{}"),
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


def validate_participants(
    frame: pd.DataFrame, *, default_region: str = "KR", phone_required: bool = False
) -> ValidationOutcome:
    """Normalise and check every row; never raises for bad data, only for a malformed frame.

    ``frame`` is ``ParsedTable.frame`` (RawParticipants). Rows failing any rule are left out of
    ``valid`` and described in ``errors`` (a row may have several); an unparseable phone is an
    error only when ``phone_required``, otherwise a warning with the phone kept as given.
    """
    RawParticipants.validate(frame, lazy=True)
    work, phone_ok = _normalise(frame, default_region)
    rules = row_rules(default_region=default_region, phone_required=phone_required)
    by_name = {rule.name: rule for rule in rules}
    cases = _failures(work, rules)

    errors: list[RowError] = []
    bad_index: set[object] = set()
    if len(cases):
        source_rows = work["source_row"]
        for column, check, index in cases[["column", "check", "index"]].itertuples(index=False):
            original = frame.at[index, column] if column in frame else ""
            normalised = str(work.at[index, column])
            errors.append(
                RowError(
                    row=int(source_rows.at[index]),
                    column=str(column),
                    value_preview=preview(original),
                    message=by_name[str(check)].message(normalised),
                )
            )
            bad_index.add(index)
        column_order = {c: i for i, c in enumerate(CLEAN_COLUMNS)}
        errors.sort(key=lambda e: (e.row, column_order.get(e.column, 99)))

    warnings: list[RowError] = []
    if not phone_required and "phone" in frame:
        unparsed = (work["phone"] != "") & ~phone_ok
        if unparsed.any():
            for index in work.index[unparsed.to_numpy()]:
                if index in bad_index:
                    continue
                warnings.append(
                    RowError(
                        row=int(work.at[index, "source_row"]),
                        column="phone",
                        value_preview=preview(frame.at[index, "phone"]),
                        message=f"phone number not recognised (default region {default_region}); kept as given.",
                    )
                )

    valid = work.loc[~work.index.isin(list(bad_index))] if bad_index else work
    valid = valid.reset_index(drop=True)[list(CLEAN_COLUMNS)]
    CleanParticipants.validate(valid, lazy=True)
    return ValidationOutcome(valid=valid, errors=errors, invalid_rows=len(bad_index), warnings=warnings)
