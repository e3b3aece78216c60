"""Vectorised normalisation and the per-value library checks behind the validation rules.

Everything here works column-wise: regexes run over the whole column (pyarrow/RE2 when pandas
uses Arrow strings), and the per-value libraries (email-validator, phonenumbers) only see the
distinct values the fast path could not settle, with results cached across calls.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
import phonenumbers

from event_pipeline.identity import email_verdict, normalise_email

# Unicode whitespace spelled out (NBSP and the full-width space U+3000 come with Korean Excel
# exports), plus zero-width space and BOM. Patterns here avoid \s, \d and $ on purpose: pandas
# runs regexes without them on Arrow strings with RE2 (~10x faster) and falls back to Python's re
# for them, because their meaning differs between the engines.
_WS = "[ \t\n\r\f\v\x1c-\x1f\x85\u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]"
_EDGE_WS = f"^{_WS}+|{_WS}+\\Z"
_INNER_WS = f"{_WS}+"


def as_text(series: pd.Series) -> pd.Series:
    """The column as pandas' string dtype with missing values as ""."""
    return series.astype("str").fillna("")


# Decomposed text (macOS writes Hangul as conjoining jamo, accents as combining marks) looks the
# same but compares differently. Full NFC over every value costs ~0.3 s per 660k-row column, so
# only values containing such code points are normalised.
_DECOMPOSED = "[\u0300-\u036f\u1100-\u11ff\u3099\u309a]"


def to_nfc(series: pd.Series) -> pd.Series:
    decomposed = series.str.contains(_DECOMPOSED, regex=True)
    if not decomposed.any():
        return series
    return series.where(~decomposed, series.str.normalize("NFC"))


def collapse_whitespace(series: pd.Series) -> pd.Series:
    """NFC, trim Unicode whitespace (NBSP, U+3000 included), collapse inner runs to one space."""
    text = to_nfc(as_text(series))
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
_NEEDS_LIBRARY = r"^[^@]{65,}@|@.*[a-z0-9\-]{64,}|[.@](?:arpa|invalid|local|localhost|onion|test)\Z"


_NON_ASCII = "[^\\x00-\\x7f]"


def normalise_email_text(series: pd.Series) -> pd.Series:
    """Trim; lower-case the values that are all ASCII, where str.lower() folds A-Z and nothing else.

    Values with any other character are left for ``identity.normalise_email`` (they never pass the
    fast regex), whose rule this is: str.lower() would fold "İ" or the Kelvin sign into ASCII.
    """
    text = trim(series)
    return text.str.lower().where(~text.str.contains(_NON_ASCII, regex=True), text)


def fast_email_mask(emails: pd.Series) -> pd.Series:
    """True where the cheap regex settles the address as valid."""
    fast = emails.str.fullmatch(FAST_EMAIL) & (emails.str.len() <= 254)
    return fast & ~emails.str.contains(_NEEDS_LIBRARY, regex=True)


def normalise_emails(series: pd.Series) -> pd.Series:
    """``identity.normalise_email`` over a column: the fast regex settles plain ASCII addresses,
    every other value containing "@" gets the per-value rule (once per distinct value)."""
    emails = normalise_email_text(series)
    slow = (emails != "") & ~fast_email_mask(emails) & emails.str.contains("@", regex=False)
    if slow.any():
        replacements = {}
        for value in emails[slow].unique():
            normalised = normalise_email(value)
            if normalised != value:
                replacements[value] = normalised
        if replacements:
            emails = emails.where(~emails.isin(replacements.keys()), emails.map(replacements))
    return emails


# email-validator's wording for a value without "@": ``email_problem`` names that kind without
# asking the library, and a test checks the library says the same.
NO_AT_SIGN = "An email address must have an @-sign."


def valid_email_mask(emails: pd.Series) -> pd.Series:
    """Vectorised validity of already-normalised emails ("" counts as valid: emptiness is separate).

    Values without "@" (a shifted column, a footer) are settled without the library: a file whose
    email column holds names must not cost a library call per row.
    """
    fast = fast_email_mask(emails)
    ok = fast | (emails == "")
    slow = ~ok & emails.str.contains("@", regex=False)
    if slow.any():
        verdicts = {value: email_verdict(value)[0] is not None for value in emails[slow].unique()}
        ok = ok | emails.map(verdicts).fillna(False).astype(bool)
    return ok


# email-validator's messages, by what they say, as reason keys of ``schemas.reasons``. Its own
# wording quotes parts of the address ("invalid characters: ','", the domain), and a reason must
# not quote a cell; the kinds are also what can be said in Korean. First match wins.
_EMAIL_PROBLEMS: tuple[tuple[str, str], ...] = (
    ("full-width", "wide_at"),
    ("small commercial at", "wide_at"),
    ("display name", "display_name"),
    ("angle bracket", "display_name"),
    ("too long", "too_long"),
    ("so many characters", "too_long"),
    ("something before the @-sign", "nothing_before_at"),
    ("something after the @-sign", "nothing_after_at"),
    ("special-use or reserved", "reserved"),
    ("should have a period", "domain"),
    ("top-level domain", "domain"),
    ("period", "dots"),
    ("hyphen", "dots"),
    ("character", "characters"),
    ("ASCII", "characters"),
    ("quot", "characters"),
)


def email_problem(value: str) -> str:
    """The reason key (``email_invalid[.kind]``) for an address email-validator refuses."""
    if "@" not in value:
        # Korean IMEs type the full-width ＠: worth saying, since it looks right on screen.
        return "email_invalid.wide_at" if "＠" in value or "﹫" in value else "email_invalid.no_at"
    message = email_verdict(value)[1]
    for needle, kind in _EMAIL_PROBLEMS:
        if needle in message:
            return f"email_invalid.{kind}"
    return "email_invalid"


# ---------------------------------------------------------------------------------------------
# Phone: Korean 010 mobile numbers (nearly every phone in a Korean participant list) are turned
# into E.164 by regex. The pattern is phonenumbers' KR mobile metadata restricted to 010 + 8
# digits (010-597x..010-599x are unassigned, hence the 5 branch); a test checks it against
# phonenumbers for every 010 prefix. Everything else goes to phonenumbers, once per value.
_PHONE_SEPARATORS = "[ \t\u00a0\\-.()]"
_KR_010 = r"10(?:[0-46-9][0-9]{7}|5(?:[0-8][0-9]|9[0-6])[0-9]{5})"
_KR_MOBILE_NATIONAL = rf"(?:\+82|0)?{_KR_010}"
_KR_MOBILE_INTERNATIONAL = rf"\+82{_KR_010}"


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
