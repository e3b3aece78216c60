"""One rule per identity: slugs, organiser and participant emails, phones, datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from event_pipeline import identity


@pytest.mark.parametrize(
    ("given", "masked"),
    [
        ("kim@example.com", "k***@example.com"),
        ("  kim@example.com ", "k***@example.com"),
        ("a@b.kr", "a***@b.kr"),
        ("@example.com", "***@example.com"),
        ("not-an-email", "***"),
        ("", "***"),
    ],
)
def test_mask_email(given: str, masked: str) -> None:
    assert identity.mask_email(given) == masked


def test_mask_email_hides_all_but_the_first_letter_of_the_local_part() -> None:
    masked = identity.mask_email("secretname@example.com")
    assert "ecretname" not in masked


@pytest.mark.parametrize(
    ("given", "masked"),
    [
        ("010-1234-5678", "010-****-5678"),
        ("010 1234 5678", "010 **** 5678"),
        ("01012345678", "010****5678"),
        ("+82 10-1234-5678", "+82 **-****-5678"),
        ("02-123-4567", "02-***-4567"),
        ("1234567", "***4567"),
        ("1234", "****"),
        ("", ""),
    ],
)
def test_mask_phone(given: str, masked: str) -> None:
    assert identity.mask_phone(given) == masked


# -- slugs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["devcon-2026", "a", "x" * 48, "2026", "a-b-c"])
def test_valid_slugs_come_back_unchanged(slug: str) -> None:
    assert identity.validate_slug(slug) == slug


@pytest.mark.parametrize(
    "slug", ["devcon\n", "devcon\r\n", "\ndevcon", " devcon", "DevCon", "-x", "x-", "", "x" * 49, "a/b", "ı", "ａ"]
)
def test_slugs_outside_the_rule_are_refused_showing_the_value(slug: str) -> None:
    with pytest.raises(ValueError, match="invalid event slug") as info:
        identity.validate_slug(slug)
    assert repr(slug) in str(info.value)  # a trailing newline shows as \n in the message


# -- organiser email ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "org@example.com\r\n",
        "org@example.com\n",
        "org@example.com\r\nBcc: everyone@example.com",
        "org\u2028@example.com",
        "org@exa\u200bmple.com",
        "\torg@example.com",
    ],
)
def test_organiser_email_with_control_characters_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="one address on one line"):
        identity.validate_organiser_email(text)


@pytest.mark.parametrize("text", ["a@x.com, b@x.com", "Org <org@example.com>", "nobody", "a@b", "a@@b.com"])
def test_organiser_email_must_be_one_valid_address(text: str) -> None:
    with pytest.raises(ValueError, match="organiser email is not a valid address"):
        identity.validate_organiser_email(text)


def test_organiser_email_is_returned_normalised() -> None:
    assert identity.validate_organiser_email("  Org@Example.COM ") == "org@example.com"
    assert identity.validate_organiser_email("org@xn--bcher-kva.de") == "org@bücher.de"


# -- participant email normalisation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("  Kim@Example.COM\u00a0", "kim@example.com"),
        ("\ufeffkim@example.com\u200b", "kim@example.com"),
        ("x@BÜCHER.de", "x@bücher.de"),
        ("x@xn--bcher-kva.de", "x@bücher.de"),  # a bounce report names the A-label form
        ("Ü@example.com", "Ü@example.com"),  # non-ASCII letters keep their case
        ("not an address", "not an address"),
        ("BAD@@X", "bad@@x"),
    ],
)
def test_normalise_email(given: str, normalised: str) -> None:
    assert identity.normalise_email(given) == normalised


@pytest.mark.parametrize(
    ("special", "plain"),
    [
        ("\u0130sa@x.com", "isa@x.com"),  # Turkish dotted capital I: str.lower() gives "i" + U+0307
        ("\u212aim@x.com", "kim@x.com"),  # Kelvin sign: str.lower() and NFC both give ASCII k/K
        ("\u212aim@x.com", "Kim@x.com"),
        ("\u0131sa@x.com", "isa@x.com"),  # dotless i
        ("\ufb00@x.com", "ff@x.com"),  # the ff ligature, which casefold() expands
    ],
)
def test_addresses_differing_in_non_ascii_letters_are_never_merged(special: str, plain: str) -> None:
    assert identity.normalise_email(special) != identity.normalise_email(plain)
    assert identity.normalise_email(special).rpartition("@")[0] == special.rpartition("@")[0]


def test_normalise_email_is_idempotent() -> None:
    for value in ["Kim@Example.COM", "x@BÜCHER.de", "\u0130sa@x.com", "\u212aim@x.com", "junk"]:
        once = identity.normalise_email(value)
        assert identity.normalise_email(once) == once


# -- sending -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "sent"),
    [
        ("x@bücher.de", "x@xn--bcher-kva.de"),
        ("x@BÜCHER.de", "x@xn--bcher-kva.de"),
        ("Kim@example.com", "Kim@example.com"),  # the local part as given, even its case
        ("김@bücher.de", "김@xn--bcher-kva.de"),  # an SMTPUTF8 local part stays as given
        ("\u212aim@x.com", "\u212aim@x.com"),
        ("org@xn--bcher-kva.de", "org@xn--bcher-kva.de"),
    ],
)
def test_address_for_sending_puts_the_domain_in_a_labels(stored: str, sent: str) -> None:
    assert identity.address_for_sending(stored) == sent


def test_address_for_sending_refuses_a_non_address_without_quoting_it() -> None:
    with pytest.raises(ValueError) as info:
        identity.address_for_sending("secret-person")
    assert "secret-person" not in str(info.value)


# -- datetimes ---------------------------------------------------------------------------------

SEOUL = timezone(timedelta(hours=9))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("2026-12-01T09:00:00", datetime(2026, 12, 1, 9)),
        ("2026-12-01 09:00", datetime(2026, 12, 1, 9)),
        ("2026-12-01T09:00", datetime(2026, 12, 1, 9)),
        ("2026-12-01", datetime(2026, 12, 1)),
        ("2026-12-01T09:00:30.5", datetime(2026, 12, 1, 9, 0, 30, 500000)),
        ("2026-12-01T09:00:00+09:00", datetime(2026, 12, 1, 9, tzinfo=SEOUL)),
        ("2026-12-01T09:00+09:00", datetime(2026, 12, 1, 9, tzinfo=SEOUL)),
        ("2026-12-01T00:00:00Z", datetime(2026, 12, 1, tzinfo=UTC)),
        (" 2026-12-01T09:00 ", datetime(2026, 12, 1, 9)),
    ],
)
def test_parse_datetime_takes_iso_8601_with_seconds_and_offsets(text: str, parsed: datetime) -> None:
    result = identity.parse_datetime(text)
    assert result == parsed
    assert result.utcoffset() == parsed.utcoffset()


@pytest.mark.parametrize("text", ["12/01/2026", "2026-13-01", "tomorrow 9am", "", "2026-12-01T25:00"])
def test_parse_datetime_refuses_anything_else_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not an ISO 8601 date and time; use e\.g\. 2026-12-01"):
        identity.parse_datetime(text)


def test_event_wall_time_keeps_the_clock_reading_as_written() -> None:
    assert identity.event_wall_time(datetime(2026, 12, 1, 9, tzinfo=SEOUL)) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert identity.event_wall_time(datetime(2026, 12, 1, 9)) == datetime(2026, 12, 1, 9, tzinfo=UTC)
