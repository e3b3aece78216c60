"""Excel cell values (as python-calamine / openpyxl return them) to the text a person typed."""

from __future__ import annotations

import datetime as dt
import math

# Floats are exact integers only up to 2**53; beyond that "integral" is an artefact.
_EXACT_INT_LIMIT = 2**53


def cell_text(value: object) -> str:
    """Text for one non-str cell.

    Numbers typed into Excel come back as floats: integral ones become integer text (a phone
    1012345678.0 -> "1012345678", never "1012345678.0"); the leading 0 Excel dropped cannot be
    recovered here and is left to phone normalisation, which knows the region. Dates and times
    become ISO 8601 (a date-only datetime becomes a date).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _EXACT_INT_LIMIT:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
