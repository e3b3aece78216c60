from __future__ import annotations

import pandas as pd
import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from event_pipeline.schemas.normalise import (
    collapse_whitespace,
    fast_email_mask,
    normalise_emails,
    normalise_phones,
    valid_email_mask,
)


def _s(values: list[str]) -> pd.Series:
    return pd.Series(values, dtype="str")


def test_collapse_whitespace() -> None:
    values = ["\u00a0김\u3000 철수\t", "  Lee   Min\nho ", "\ufeffPark\u200b", "", "   "]
    assert collapse_whitespace(_s(values)).tolist() == ["김 철수", "Lee Min ho", "Park", "", ""]


def test_emails_trimmed_and_lower_cased() -> None:
    assert normalise_emails(_s(["  Kim@Example.COM\u00a0", "LEE@EXÄMPLE.COM", ""])).tolist() == [
        "kim@example.com",
        "lee@exämple.com",
        "",
    ]


@pytest.mark.parametrize(
    ("email", "fast", "valid"),
    [
        ("kim@example.com", True, True),
        ("kim.min-su+event@mail.example.co.kr", True, True),
        ("a@b.c", False, True),  # one-letter TLD: only the library accepts it
        ("홍길동@example.com", False, True),
        ("a@exämple.com", False, True),
        ("a..b@example.com", False, False),
        (".a@example.com", False, False),
        ("a@-example.com", False, False),
        ("a@example", False, False),
        ("a@example.test", False, False),
        ("a@example.localhost", False, False),
        ("kim <k@example.com>", False, False),
        ("k@example..com", False, False),
        ("x" * 65 + "@example.com", False, True),  # email-validator only enforces 64 in strict mode
        ("a@" + "b" * 64 + ".com", False, False),
        ("합계", False, False),
    ],
)
def test_email_fast_path_and_library(email: str, fast: bool, valid: bool) -> None:
    assert fast_email_mask(_s([email])).tolist() == [fast]
    assert valid_email_mask(_s([email])).tolist() == [valid]


EMAILISH = st.text(alphabet="abcxyz019._%+-@", min_size=3, max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(EMAILISH, min_size=1, max_size=40))
def test_fast_email_regex_only_accepts_what_email_validator_accepts(values: list[str]) -> None:
    fast = fast_email_mask(_s(values)).tolist()
    for value, accepted in zip(values, fast, strict=True):
        if not accepted:
            continue
        try:
            result = validate_email(value, check_deliverability=False)
        except EmailNotValidError as exc:  # pragma: no cover - the failure this test exists for
            raise AssertionError(f"regex accepted {value!r} but email-validator says: {exc}") from exc
        assert result.normalized.lower() == value


@pytest.mark.parametrize(
    ("given", "e164"),
    [
        ("010-1234-5678", "+821012345678"),
        ("01012345678", "+821012345678"),
        ("010 1234 5678", "+821012345678"),
        ("010.1234.5678", "+821012345678"),
        ("(010) 1234-5678", "+821012345678"),
        ("+82 10-1234-5678", "+821012345678"),
        ("+82-10-1234-5678", "+821012345678"),
        ("+82 010-1234-5678", "+821012345678"),
        ("1012345678", "+821012345678"),  # a numeric Excel cell that lost its leading 0
        ("821012345678", "+821012345678"),
        ("１０１２３４５６７８", "+821012345678"),
        ("02-123-4567", "+8221234567"),
        ("+1 415 555 2671", "+14155552671"),
        (" 010-9999-0000 ", "+821099990000"),
    ],
)
def test_phones_to_e164(given: str, e164: str) -> None:
    out, ok = normalise_phones(_s([given]), "KR")
    assert out.tolist() == [e164]
    assert ok.tolist() == [True]


@pytest.mark.parametrize("given", ["12345", "abc", "010-5970-1234", "+82 99", "-"])
def test_unparseable_phones_kept_as_given(given: str) -> None:
    out, ok = normalise_phones(_s([given, ""]), "KR")
    assert out.tolist() == [given, ""]
    assert ok.tolist() == [False, False]


def test_phone_default_region_matters() -> None:
    out, ok = normalise_phones(_s(["020 7946 0958", "010-1234-5678", "+821012345678"]), "GB")
    assert out.tolist() == ["+442079460958", "010-1234-5678", "+821012345678"]
    assert ok.tolist() == [True, False, True]


def test_kr_mobile_fast_path_agrees_with_phonenumbers_for_every_010_prefix() -> None:
    values = [f"010{prefix:04d}{suffix}" for prefix in range(10_000) for suffix in ("0000", "9876")]
    out, ok = normalise_phones(_s(values), "KR")
    for value, e164, valid in zip(values, out.tolist(), ok.tolist(), strict=True):
        parsed = phonenumbers.parse(value, "KR")
        expected_valid = phonenumbers.is_valid_number(parsed)
        assert valid == expected_valid, value
        if expected_valid:
            assert e164 == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def test_decomposed_hangul_is_composed() -> None:
    import unicodedata

    nfd = unicodedata.normalize("NFD", " 홍길동 ")
    assert nfd != " 홍길동 "
    assert collapse_whitespace(_s([nfd, "Kim"])).tolist() == ["홍길동", "Kim"]


@pytest.mark.parametrize("value", ["abc", "홍길동", "010-1234-5678", "a b c", "합계", "kim.example.com", "x" * 300])
def test_no_at_sign_shortcut_matches_library_wording(value: str) -> None:
    from event_pipeline.schemas.normalise import NO_AT_SIGN, email_problem

    with pytest.raises(EmailNotValidError) as info:
        validate_email(value, check_deliverability=False)
    assert str(info.value) == NO_AT_SIGN
    assert email_problem(value) == "email_invalid.no_at"
    assert valid_email_mask(_s([value])).tolist() == [False]


# Turkish dotted capital I and the Kelvin sign: str.lower() folded both into ASCII ("İ" -> "i" +
# U+0307, Kelvin -> "k"), so two different mailboxes became one participant.
_LOOKALIKES = ["\u0130sa@x.com", "isa@x.com", "Isa@x.com", "\u212aim@x.com", "kim@x.com", "\u0131sa@x.com"]


def test_email_column_keeps_addresses_differing_in_non_ascii_letters_apart() -> None:
    emails = normalise_emails(_s(_LOOKALIKES)).tolist()
    assert emails == ["\u0130sa@x.com", "isa@x.com", "isa@x.com", "\u212aim@x.com", "kim@x.com", "\u0131sa@x.com"]


@given(st.lists(st.sampled_from([*_LOOKALIKES, " A@B.CO ", "x@BÜCHER.de", "x@xn--bcher-kva.de", "Ü@x.com", "z"])))
@settings(max_examples=60, deadline=None)
def test_email_column_is_the_per_value_rule(values: list[str]) -> None:
    from event_pipeline.identity import normalise_email

    assert normalise_emails(_s(values)).tolist() == [normalise_email(v) for v in values]


def test_load_and_dedupe_keep_dotted_i_and_kelvin_sign_addresses_as_their_own_participants() -> None:
    from event_pipeline.schemas import dedupe_in_file, validate_participants

    raw = pd.DataFrame(
        {
            "source_row": [2, 3, 4, 5, 6],
            "name": ["Isa One", "Isa Two", "Kim One", "Kim Two", "Kim Three"],
            "email": ["\u0130sa@x.com", "isa@x.com", "\u212aim@x.com", "kim@x.com", "KIM@x.com"],
        }
    ).astype({"name": "str", "email": "str"})
    outcome = validate_participants(raw)
    assert outcome.valid["source_row"].tolist() == [2, 3, 4, 5, 6]  # the clean model takes "İsa@x.com"
    deduped = dedupe_in_file(outcome.valid)
    assert deduped.kept["email"].tolist() == ["\u0130sa@x.com", "isa@x.com", "\u212aim@x.com", "kim@x.com"]
    assert deduped.duplicates["source_row"].tolist() == [6]  # only the ASCII KIM repeats kim
