"""Who and what an input names: event slugs, emails, phones, datetimes — one rule each.

Every door (CLI, manifest, inbox folder names, the store's ``create_event``) validates through
these functions so that a value accepted at one door is accepted at all of them, and a value one
door refuses none lets through.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

# ---------------------------------------------------------------------------------------------
# Event slugs become folder names, Dagster partition keys and the prefix of upload ids, so they
# stay boring. fullmatch: with ``$`` a slug ending in a newline would pass.
_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?", re.ASCII)


def validate_slug(text: str) -> str:
    """``text`` if it is a valid event slug, exactly as given (nothing is trimmed); else ValueError."""
    if not _SLUG.fullmatch(text):
        raise ValueError(
            f"invalid event slug {text!r}: use 1-48 lower-case letters, digits and inner hyphens (e.g. 'devcon-2026')"
        )
    return text


# ---------------------------------------------------------------------------------------------
# Emails. Only ASCII letters are case-folded: str.lower() turns "İ" into "i" + U+0307 and the
# Kelvin sign into "k", and NFC (which email-validator applies to the local part) turns the
# Kelvin sign into "K", so either would make two different mailboxes one participant. The local
# part is therefore kept as given apart from A-Z; the domain takes IDNA's mapping, which is the
# rule DNS itself resolves by (so "K.com" with a Kelvin sign *is* k.com).
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Unicode whitespace (NBSP, U+3000) plus zero-width space and BOM: what spreadsheets leave around.
_EDGE = re.compile(r"^[\s\u200b\ufeff]+|[\s\u200b\ufeff]+\Z")


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


@lru_cache(maxsize=200_000)
def email_verdict(text: str) -> tuple[str | None, str]:
    """(normalised address, "") if email-validator accepts ``text``, else (None, its reason).

    Cached: an import asks once per distinct value the column's fast path could not settle.
    """
    value = _EDGE.sub("", text)
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    local = value.rpartition("@")[0]
    return f"{_ascii_lower(local)}@{result.domain}", ""


def normalise_email(text: str) -> str:
    """The one participant-email normalisation: trim, A-Z to a-z, domain by IDNA (U-labels).

    Two addresses that differ in any non-ASCII letter stay different. A value email-validator
    refuses is only trimmed and ASCII-lower-cased (whether it is valid is judged separately).
    """
    normalised, _reason = email_verdict(text)
    return normalised if normalised is not None else _ascii_lower(_EDGE.sub("", text))


def _controls(text: str) -> list[str]:
    # Cc (CR, LF, NUL, ...), Cf (zero-width, bidi marks) and the Unicode line/paragraph separators:
    # none belongs in a header, and a CR/LF there made the organiser's notice fail on every retry.
    return sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")})


def validate_organiser_email(text: str) -> str:
    """One address on one line, valid by email-validator; returned normalised. Else ValueError.

    Surrounding spaces are forgiven; control characters anywhere (a trailing CR/LF included) are
    not, because they are a sign of a pasted header or a broken script rather than a typo.
    """
    found = _controls(text)
    if found:
        raise ValueError(f"organiser email must be one address on one line; it contains {', '.join(found)}")
    normalised, reason = email_verdict(text.strip(" "))
    if normalised is None:
        raise ValueError(f"organiser email is not a valid address: {reason}")
    return normalised


# Something shaped like an address inside free text (a provider's error, a reason): what is
# redacted from logs and masked in mail bodies. One pattern, so both hide the same things.
EMAIL_IN_TEXT = re.compile(r"[^\s<>()\[\]{},;:\"'@]+@[^\s<>()\[\]{},;:\"'@]+")


@lru_cache(maxsize=10_000)
def address_for_sending(email: str) -> str:
    """The address as it goes into ``To``: local part as given, domain as A-labels (punycode).

    ``x@bücher.de`` -> ``x@xn--bcher-kva.de``: a MIME library would otherwise put an IDN address
    into an encoded word, which no server delivers. A non-ASCII local part stays as given (it
    needs SMTPUTF8, and no encoding of it is deliverable either).
    """
    value = _EDGE.sub("", email)
    local, at, domain = value.rpartition("@")
    if value.isascii() and at and local and domain:
        return value  # nothing to convert: the common case, and validating costs ~50 µs a message
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("not a deliverable email address") from None
    return f"{value.rpartition('@')[0]}@{result.ascii_domain}"


# ---------------------------------------------------------------------------------------------
# Datetimes.
_DATETIME_HINT = "2026-12-01, 2026-12-01T09:00, 2026-12-01 09:00:00 or 2026-12-01T09:00:00+09:00"


def parse_datetime(text: str) -> datetime:
    """ISO 8601 (``datetime.fromisoformat``): a date, a time with or without seconds, ``T`` or a
    space, an offset or ``Z``. A value without an offset is naive: it is the event's local wall
    time. Anything else is a ValueError naming the accepted forms."""
    value = text.strip()
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time; use e.g. {_DATETIME_HINT}") from None


def event_wall_time(value: datetime) -> datetime:
    """An event's start as it is stored: the wall-clock reading as written, labelled UTC.

    Events have no time zone column and every message shows the time as the organiser typed it,
    so ``09:00+09:00`` is kept as 09:00 (not converted to 00:00 UTC); the UTC label is only the
    store's convention (``store.db.as_utc``), identical on SQLite and PostgreSQL.
    """
    return value.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Masks, for anything a person or a log sees about a participant without needing the value.
_DIGIT = re.compile(r"\d")
_DIGIT_RUN = re.compile(r"\d+")

# Digits a masked phone keeps at its end: enough for a person to recognise the number.
_PHONE_TAIL = 4


def mask_email(text: str) -> str:
    """``kim@example.com`` -> ``k***@example.com``: enough to tell whose, not enough to write to.

    The domain is kept (it says which provider, not who); a value without ``@`` is masked whole.
    """
    value = text.strip()
    local, at, domain = value.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(text: str) -> str:
    """``010-1234-5678`` -> ``010-****-5678``: the first group and the last four digits stay.

    Separators are kept as given so the shape stays readable. A number written without separators
    keeps its first three digits as its "first group"; a number too short to hide anything once
    those are kept shows only its last four digits, and one of four digits or fewer is masked whole.
    """
    value = text.strip()
    runs = _DIGIT_RUN.findall(value)
    total = sum(len(run) for run in runs)
    if total <= _PHONE_TAIL:
        return _DIGIT.sub("*", value)
    head = len(runs[0]) if len(runs) > 1 else min(3, len(runs[0]))
    if head + _PHONE_TAIL >= total:
        head = 0
    out: list[str] = []
    seen = 0
    for char in value:
        if char.isdigit():
            keep = seen < head or seen >= total - _PHONE_TAIL
            out.append(char if keep else "*")
            seen += 1
        else:
            out.append(char)
    return "".join(out)
