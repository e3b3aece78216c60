"""The row rules as a pandera schema, with the messages organisers read when a rule fails.

Built per call because two rules depend on call arguments (default phone region, whether phone
is required). Each check is vectorised over the column; a failing cell becomes one RowError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

from event_pipeline.schemas.normalise import email_reason, normalise_phones, valid_email_mask

NAME_MIN, NAME_MAX = 2, 100


@dataclass(frozen=True)
class Rule:
    column: str
    name: str
    test: Callable[[pd.Series], pd.Series]
    message: Callable[[str], str]


def _name_length_ok(names: pd.Series) -> pd.Series:
    length = names.str.len()
    return (length == 0) | ((length >= NAME_MIN) & (length <= NAME_MAX))


def _name_length_message(value: str) -> str:
    return f"name must be {NAME_MIN} to {NAME_MAX} characters long (it has {len(value)})."


def row_rules(*, default_region: str, phone_required: bool) -> list[Rule]:
    rules = [
        Rule("name", "name_required", lambda s: s != "", lambda _v: "name is empty."),
        Rule("name", "name_length", _name_length_ok, _name_length_message),
        Rule("email", "email_required", lambda s: s != "", lambda _v: "email is empty."),
        Rule(
            "email",
            "email_valid",
            valid_email_mask,
            lambda v: f"not a valid email address: {email_reason(v)}",
        ),
    ]
    if phone_required:
        rules += [
            Rule("phone", "phone_required", lambda s: s != "", lambda _v: "phone is empty (phone is required)."),
            Rule(
                "phone",
                "phone_valid",
                lambda s: (s == "") | normalise_phones(s, default_region)[1],
                lambda _v: f"not a valid phone number (default region {default_region}).",
            ),
        ]
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
