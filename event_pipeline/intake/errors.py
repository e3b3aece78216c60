"""The one exception intake raises: a whole file is refused, with a reason a person can read."""

from __future__ import annotations

from collections.abc import Mapping


class IntakeError(Exception):
    """File-level rejection.

    ``str(e)`` (and ``e.reason``) is the human reason, written for the organiser who sent the
    file. ``e.detail`` carries machine-readable facts (always a ``"code"``, e.g. ``"too_large"``,
    ``"not_a_table"``, ``"missing_columns"``) so callers can branch without parsing prose.
    Detail never contains cell values, only headers, counts, offsets and row numbers.
    """

    def __init__(self, reason: str, detail: Mapping[str, object] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail: dict[str, object] = dict(detail or {})

    def __reduce__(self) -> tuple[type[IntakeError], tuple[str, dict[str, object]]]:
        # Keep detail across pickling (Dagster moves exceptions between processes).
        return (type(self), (self.reason, self.detail))

    @property
    def code(self) -> str:
        return str(self.detail.get("code", "rejected"))

    def __str__(self) -> str:
        return self.reason
