"""The one exception intake raises: a whole file is refused, with a reason a person can read."""

from __future__ import annotations

import re
from collections.abc import Mapping

from event_pipeline.intake.messages import code_of, render


class IntakeError(Exception):
    """File-level rejection.

    ``str(e)`` (and ``e.reason``) is the human reason in English, written for the organiser who
    sent the file; ``e.localized("ko")`` is the same reason in Korean. ``e.detail`` carries
    machine-readable facts (always a ``"code"``, e.g. ``"too_large"``, ``"not_a_table"``,
    ``"missing_columns"``) so callers can branch without parsing prose.
    Neither reason nor detail contains cell values of data rows (they end up in Dagster's event
    log): only headers of the identified header row, counts, offsets and row numbers.
    """

    def __init__(
        self,
        reason: str,
        detail: Mapping[str, object] | None = None,
        *,
        key: str | None = None,
        params: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail: dict[str, object] = dict(detail or {})
        self.key = key
        self.params: dict[str, object] = dict(params or {})

    @classmethod
    def of(cls, key: str, detail: Mapping[str, object] | None = None, **params: object) -> IntakeError:
        """The error for message ``key`` of intake.messages; its code is the key's part before any dot."""
        return cls(render(key, "en", params), {"code": code_of(key), **(detail or {})}, key=key, params=params)

    def __reduce__(
        self,
    ) -> tuple[type[IntakeError], tuple[str, dict[str, object]], dict[str, object]]:
        # Keep detail and the message key across pickling (Dagster moves exceptions between processes).
        return (type(self), (self.reason, self.detail), {"key": self.key, "params": self.params})

    @property
    def code(self) -> str:
        return str(self.detail.get("code", "rejected"))

    def localized(self, language: str) -> str:
        """The reason in ``language`` ("ko" or "ko-KR": Korean); English for any other language."""
        if self.key is None:
            return self.reason
        return render(self.key, language, self.params)

    def __str__(self) -> str:
        return self.reason


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_MAX_LIBRARY_TEXT = 200


def library_error(exc: BaseException) -> str:
    """A parser library's error as text for a reason, with quoted fragments blanked.

    Libraries quote the offending input ("could not convert string to float: '홍길동'"), which
    can be a participant's data; what is left (error kind, line/column, sector) is enough.
    """
    text = _QUOTED.sub("'…'", str(exc)).strip() or exc.__class__.__name__
    if len(text) > _MAX_LIBRARY_TEXT:
        text = text[: _MAX_LIBRARY_TEXT - 1] + "…"
    return f"{exc.__class__.__name__}: {text}"
