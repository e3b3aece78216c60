"""The row rules as a pandera schema, with the reasons organisers read when a rule fails.

Built per call because two rules depend on call arguments (default phone region, whether phone
is required). Each check is vectorised over the column; a failing cell becomes one error Finding
whose reason (a key of ``schemas.reasons``) never quotes the cell.

Column length limits are read from the table definitions (``store.tables``), so a row the
database cannot store is a row error here instead of a failed load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

from event_pipeline.schemas.normalise import email_problem, normalise_phones, valid_email_mask
from event_pipeline.store.tables import participants

NAME_MIN, NAME_MAX = 2, 100
# Fields whose only length rule is the column's: name has a stricter rule of its own and email
# is bounded by the address syntax (254), both far inside their columns.
LIMITED_FIELDS = ("phone", "department", "position")


def column_limit(field: str) -> int:
    """Characters the participants column for ``field`` holds (PostgreSQL enforces it)."""
    length = getattr(participants.c[field].type, "length", None)
    if not isinstance(length, int):
        raise TypeError(f"participants.{field} has no length limit")
    return length


LENGTH_LIMITS: Mapping[str, int] = {field: column_limit(field) for field in LIMITED_FIELDS}

Reason = tuple[str, dict[str, object]]


@dataclass(frozen=True)
class Rule:
    column: str
    name: str
    test: Callable[[pd.Series], pd.Series]
    # The failing (normalised) value -> (reason key, parameters); the value is for measuring, never quoted.
    reason: Callable[[str], Reason]


def _name_length_ok(names: pd.Series) -> pd.Series:
    length = names.str.len()
    return (length == 0) | ((length >= NAME_MIN) & (length <= NAME_MAX))


def _fixed(key: str, **params: object) -> Callable[[str], Reason]:
    return lambda _value: (key, dict(params))


def _length_rule(field: str, limit: int) -> Rule:
    return Rule(
        field,
        f"{field}_max_length",
        lambda s: s.str.len() <= limit,
        lambda v: ("too_long", {"field": field, "limit": limit, "length": len(v)}),
    )


def row_rules(*, default_region: str, phone_required: bool) -> list[Rule]:
    rules = [
        Rule("name", "name_required", lambda s: s != "", _fixed("name_required")),
        Rule(
            "name",
            "name_length",
            _name_length_ok,
            lambda v: ("name_length", {"min": NAME_MIN, "max": NAME_MAX, "length": len(v)}),
        ),
        Rule("email", "email_required", lambda s: s != "", _fixed("email_required")),
        Rule("email", "email_valid", valid_email_mask, lambda v: (email_problem(v), {})),
    ]
    if phone_required:
        rules += [
            Rule("phone", "phone_required", lambda s: s != "", _fixed("phone_required")),
            Rule(
                "phone",
                "phone_valid",
                lambda s: (s == "") | normalise_phones(s, default_region)[1],
                _fixed("phone_invalid", region=default_region),
            ),
        ]
    rules += [_length_rule(field, limit) for field, limit in LENGTH_LIMITS.items()]
    return rules


def rules_schema(rules: list[Rule]) -> pa.DataFrameSchema:
    columns: dict[str, list[pa.Check]] = {}
    for rule in rules:
        columns.setdefault(rule.column, []).append(pa.Check(rule.test, name=rule.name, error=rule.name))
    return pa.DataFrameSchema(
        {column: pa.Column(str, checks=checks) for column, checks in columns.items()},
        strict=False,
        coerce=False,
    )
