"""Vectorised normalisation and the per-value library checks behind the validation rules.

Everything here works column-wise: regexes run over the whole column (pyarrow/RE2 when pandas
uses Arrow strings), and the per-value libraries (email-validator, phonenumbers) only see the
distinct values the fast path could not settle, with results cached across calls.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
import phonenumbers
from email_validator import EmailNotValidError, validate_email

# Unicode whitespace spelled out, because RE2's \s (used on Arrow strings) is ASCII-only while
# Python's is not: NBSP and the full-width space (U+3000) come with Korean Excel exports.
_WS = "[\\s\u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff\x0b\x1c-\x1f\x85]"
_EDGE_WS = f"^{_WS}+|{_WS}+$"
_INNER_WS = f"{_WS}+"


def as_text(series: pd.Series) -> pd.Series:
    """The column as pandas' string dtype with missing values as ""."""
    return series.astype("str").fillna("")


def collapse_whitespace(series: pd.Series) -> pd.Series:
    """Trim Unicode whitespace (NBSP, U+3000 included) and collapse inner runs to one space."""
    text = as_text(series)
    return text.str.replace(_EDGE_WS, "", regex=True).str.replace(_INNER_WS, " ", regex=True)


def trim(series: pd.Series) -> pd.Series:
    return as_text(series).str.replace(_EDGE_WS, "", regex=True)


# ---------------------------------------------------------------------------------------------
# Email: a strict regex that only accepts what email-validator certainly accepts (checked by a
# property test); everything else goes to email-validator, once per distinct value.
_LOCAL_ATOM = r"[a-z0-9_%+\-]+"
_LABEL = r"[a-z0-9]+(?:-[a-z0-9]+)*"
FAST_EMAIL = rf"{_LOCAL_ATOM}(?:\.{_LOCAL_ATOM})*@(?:{_LABEL}\.)+[a-z]{{2,63}}"
# Shapes the regex lets through but email-validator refuses or treats specially.
_NEEDS_LIBRARY = r"^[^@]{65,}@|@.*[a-z0-9\-]{64,}|[.@](?:arpa|invalid|local|localhost|onion|test)$"


def normalise_email_text(series: pd.Series) -> pd.Series:
    return trim(series).str.lower()


@lru_cache(maxsize=200_000)
def email_verdict(value: str) -> tuple[str | None, str]:
    """(normalised address or None, reason if invalid) from email-validator, cached."""
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    return result.normalized.lower(), ""


def fast_email_mask(emails: pd.Series) -> pd.Series:
    """True where the cheap regex settles the address as valid."""
    fast = emails.str.fullmatch(FAST_EMAIL) & (emails.str.len() <= 254)
    return fast & ~emails.str.contains(_NEEDS_LIBRARY, regex=True)


def normalise_emails(series: pd.Series) -> pd.Series:
    """Trim + lower-case; addresses only the library can judge get its normalised form."""
    emails = normalise_email_text(series)
    slow = (emails != "") & ~fast_email_mask(emails)
    if slow.any():
        replacements = {}
        for value in emails[slow].unique():
            normalised, _reason = email_verdict(value)
            if normalised is not None and normalised != value:
                replacements[value] = normalised
        if replacements:
            emails = emails.where(~emails.isin(replacements.keys()), emails.map(replacements))
    return emails


def valid_email_mask(emails: pd.Series) -> pd.Series:
    """Vectorised validity of already-normalised emails ("" counts as valid: emptiness is separate)."""
    fast = fast_email_mask(emails)
    ok = fast | (emails == "")
    slow = ~ok
    if slow.any():
        verdicts = {value: email_verdict(value)[0] is not None for value in emails[slow].unique()}
        ok = ok | emails.map(verdicts).fillna(False).astype(bool)
    return ok


def email_reason(value: str) -> str:
    """Why email-validator refuses a value (for row messages)."""
    reason = email_verdict(value)[1]
    return reason or "it is not a valid email address."


# ---------------------------------------------------------------------------------------------
# Phone: the common Korean mobile shapes are turned into E.164 by regex; the pattern is a strict
# subset of phonenumbers' KR mobile metadata (010 + 8 digits, 4th digit not 5, whose ranges are
# partly unassigned), checked by a test against phonenumbers. All else goes to phonenumbers.
_PHONE_SEPARATORS = r"[\s\-.()\u00a0]"
_KR_MOBILE_NATIONAL = r"(?:\+82|0)?10[0-46-9]\d{7}"
_KR_MOBILE_INTERNATIONAL = r"\+8210[0-46-9]\d{7}"


@lru_cache(maxsize=200_000)
def phone_e164(value: str, region: str) -> str | None:
    """E.164 form of a phone number if phonenumbers considers it valid, else None (cached)."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _phone_fast(phones: pd.Series, region: str) -> tuple[pd.Series, pd.Series]:
    digits = phones.str.replace(_PHONE_SEPARATORS, "", regex=True)
    pattern = _KR_MOBILE_NATIONAL if region.upper() == "KR" else _KR_MOBILE_INTERNATIONAL
    fast = digits.str.fullmatch(pattern)
    return fast, "+82" + digits.str.slice(-10)


def normalise_phones(series: pd.Series, region: str) -> tuple[pd.Series, pd.Series]:
    """(E.164 where valid else the trimmed value as given, validity mask; "" is not valid)."""
    phones = trim(series)
    fast, fast_e164 = _phone_fast(phones, region)
    out = phones.where(~fast, fast_e164)
    ok = fast.copy()
    slow = (phones != "") & ~fast
    if slow.any():
        results = {value: phone_e164(value, region) for value in phones[slow].unique()}
        good = {value: e164 for value, e164 in results.items() if e164 is not None}
        if good:
            hit = slow & phones.isin(good.keys())
            out = out.where(~hit, phones.map(good))
            ok = ok | hit
    return out.astype("str"), ok.astype(bool)
