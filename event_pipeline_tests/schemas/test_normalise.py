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
    from event_pipeline.schemas.normalise import NO_AT_SIGN, email_reason

    with pytest.raises(EmailNotValidError) as info:
        validate_email(value, check_deliverability=False)
    assert str(info.value) == NO_AT_SIGN == email_reason(value)
    assert valid_email_mask(_s([value])).tolist() == [False]
