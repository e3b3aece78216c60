"""pandera models: the raw text frame intake produces and the clean frame validation returns."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from event_pipeline.schemas.normalise import FAST_EMAIL

OPTIONAL_FIELDS = ("phone", "department", "position")
CLEAN_COLUMNS = ("source_row", "name", "email", "phone", "department", "position", "extra")


class RawParticipants(pa.DataFrameModel):
    """What ``intake.read_table`` hands over: text exactly as in the file, one row per source row."""

    source_row: Series[int] = pa.Field(ge=1, unique=True)
    name: Series[str]
    email: Series[str]
    phone: Series[str] | None
    department: Series[str] | None
    position: Series[str] | None
    extra: Series[str] | None

    class Config:
        strict = False
        coerce = False


class CleanParticipants(pa.DataFrameModel):
    """Rows that passed validation, normalised; the shape ``store`` loads.

    Emails are normalised by ``identity.normalise_email`` (trimmed, A-Z lower-case, IDNA domain);
    phones are E.164 when they could be parsed, otherwise kept as given (only possible when phone
    was not required), "" when absent.
    """

    source_row: Series[int] = pa.Field(ge=1, unique=True)
    name: Series[str] = pa.Field(str_length={"min_value": 2, "max_value": 100})
    email: Series[str] = pa.Field(str_matches=r"[^@ \t\r\n]+@[^@ \t\r\n]+\Z")
    phone: Series[str]
    department: Series[str]
    position: Series[str]
    extra: Series[str] = pa.Field(str_startswith="{")

    @pa.check("email", name="email_lower_case")
    @classmethod
    def email_lower_case(cls, email: Series[str]) -> Series[bool]:
        # A-Z only: other letters keep their case, so "İ" and "i" stay two addresses.
        return ~email.str.contains("[A-Z]", regex=True)

    @pa.check("name", name="name_trimmed")
    @classmethod
    def name_trimmed(cls, name: Series[str]) -> Series[bool]:
        return name == name.str.strip()

    class Config:
        strict = "filter"
        ordered = False
        coerce = False


__all__ = ["CLEAN_COLUMNS", "FAST_EMAIL", "OPTIONAL_FIELDS", "CleanParticipants", "RawParticipants"]
