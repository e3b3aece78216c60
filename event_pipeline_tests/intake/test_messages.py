from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table
from event_pipeline.intake.messages import MESSAGES, PHRASES, code_of

from .corpus import PNG_BYTES

HANGUL = re.compile("[가-힣]")


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(MESSAGES))
def test_each_message_has_both_languages_with_the_same_parameters(key: str) -> None:
    english, korean = MESSAGES[key]
    assert _placeholders(english) == _placeholders(korean)
    assert HANGUL.search(korean)
    if key != "no_header":  # which quotes Korean example headers
        assert not HANGUL.search(english)


@pytest.mark.parametrize("key", sorted(k for k in PHRASES if k))
def test_each_phrase_has_both_languages_with_the_same_parameters(key: str) -> None:
    english, korean = PHRASES[key]
    assert _placeholders(english) == _placeholders(korean)
    assert english and korean


def test_the_common_codes_have_messages() -> None:
    codes = {code_of(key) for key in MESSAGES}
    assert {
        "empty",
        "not_a_table",
        "undecodable",
        "missing_columns",
        "no_header",
        "no_data_rows",
        "password_protected",
        "unsupported_format",
        "too_large",
        "malformed_csv",
        "duplicate_columns",
        "corrupt",
    } <= codes


def test_every_intake_error_is_built_from_the_message_table() -> None:
    # IntakeError.of is what makes a reason localizable; a bare IntakeError("...") would not be.
    source = Path(__file__).parents[2] / "event_pipeline" / "intake"
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(source.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"\bIntakeError\(", line) and not line.lstrip().startswith("class ")
    ]
    assert offenders == []


def test_localized_falls_back_to_english(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(PNG_BYTES)
    with pytest.raises(IntakeError) as info:
        read_table(path)
    error = info.value
    english = (
        "This file is not a spreadsheet: it looks like a PNG image. "
        "Please upload the participant list as CSV, XLSX or XLS."
    )
    korean = (
        "이 파일은 스프레드시트가 아니라 PNG 이미지인 것 같습니다. 참가자 명단을 CSV, XLSX 또는 XLS 파일로 올려 주세요."
    )
    assert str(error) == english
    assert error.localized("ko") == error.localized("ko-KR") == error.localized("ko_KR") == korean
    assert error.localized("en") == error.localized("ja") == english


def test_too_large_in_korean(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"name,email\n" + b"Kim,k@example.com\n" * 1000)
    with pytest.raises(IntakeError) as info:
        read_table(path, max_bytes=1000)
    assert info.value.localized("ko") == (
        "파일이 너무 큽니다(17.6 KB). 최대 1000 bytes까지 올릴 수 있습니다. 명단을 여러 파일로 나누어 올려 주세요."
    )


def test_plain_intake_error_has_no_translation() -> None:
    assert IntakeError("Something else.", {"code": "other"}).localized("ko") == "Something else."


SECRET_ROWS = ["홍길동", "hong@example.com", "010-9876-5432", "비밀부서"]


@pytest.mark.parametrize(
    "text",
    [
        # no header: the first rows are participants
        "홍길동,hong@example.com,010-9876-5432,비밀부서\n김영희,kim@example.com,,영업\n",
        # missing email column: header cells may be named, data cells may not
        "ID,이름,부서\n1,홍길동,비밀부서\n2,hong@example.com,010-9876-5432\n",
        # duplicate columns
        "이름,이메일,Email\n홍길동,hong@example.com,010-9876-5432\n비밀부서,x@example.com,y@example.com\n",
        # a quote that never closes inside a data row
        'name,email,memo\n홍길동,hong@example.com,"010-9876-5432\n비밀부서,a@example.com,b\n',
    ],
)
def test_rejections_never_quote_data_rows(tmp_path: Path, text: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(IntakeError) as info:
        read_table(path)
    shown = str(info.value) + info.value.localized("ko") + repr(info.value.detail) + repr(info.value.params)
    for secret in SECRET_ROWS:
        assert secret not in shown, info.value.code
