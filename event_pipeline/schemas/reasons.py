"""Every reason a row (or the header row) gets in the error report, in English and Korean.

A key is a reason kind, or ``kind.variant`` where one kind has several wordings. Parameters are
counts, limits, row numbers, upload ids, field names and, for the header row only, header texts:
never a cell of a data row, because reasons go to Dagster's event log and the organiser's email,
and the row and column already point at the cell. ``field`` parameters are canonical field names
and are rendered in the language of the reason around them.
"""

from __future__ import annotations

from collections.abc import Mapping

from event_pipeline.intake.messages import PHRASES

# The intake names the same fields in its messages: one wording for both.
FIELD_NAMES: dict[str, tuple[str, str]] = {
    **{f: PHRASES[f"field.{f}"] for f in ("name", "email", "phone", "department", "position")},
    "extra": ("extra data", "추가 정보"),
}

_NOT_LOADED = (" The row was not loaded.", " 이 행은 등록되지 않았습니다.")
_EMAIL = ("not a valid email address: ", "올바른 이메일 주소가 아닙니다: ")

# key: (English, Korean)
REASONS: dict[str, tuple[str, str]] = {
    "name_required": ("name is empty.", "이름이 비어 있습니다."),
    "name_length": (
        "name must be {min} to {max} characters long (it has {length}).",
        "이름은 {min}~{max}자여야 합니다(현재 {length}자).",
    ),
    "email_required": ("email is empty.", "이메일이 비어 있습니다."),
    "email_invalid": (f"{_EMAIL[0]}it is not a valid address.", f"{_EMAIL[1]}주소 형식이 잘못되었습니다."),
    "email_invalid.no_at": (f"{_EMAIL[0]}it has no @ sign.", f"{_EMAIL[1]}@ 기호가 없습니다."),
    "email_invalid.wide_at": (
        f"{_EMAIL[0]}it has a full-width or special at sign instead of @.",
        f"{_EMAIL[1]}@ 대신 전각 문자 등 다른 기호가 들어 있습니다.",
    ),
    "email_invalid.nothing_before_at": (
        f"{_EMAIL[0]}there is nothing before the @ sign.",
        f"{_EMAIL[1]}@ 앞에 아무것도 없습니다.",
    ),
    "email_invalid.nothing_after_at": (
        f"{_EMAIL[0]}there is nothing after the @ sign.",
        f"{_EMAIL[1]}@ 뒤에 아무것도 없습니다.",
    ),
    "email_invalid.domain": (
        f"{_EMAIL[0]}the part after the @ sign is not a domain such as example.com.",
        f"{_EMAIL[1]}@ 뒤 부분이 example.com 같은 도메인이 아닙니다.",
    ),
    "email_invalid.reserved": (
        f"{_EMAIL[0]}the part after the @ sign is a reserved name that cannot receive mail.",
        f"{_EMAIL[1]}@ 뒤 부분이 메일을 받을 수 없는 예약된 이름입니다.",
    ),
    "email_invalid.characters": (
        f"{_EMAIL[0]}it contains characters an address cannot have (spaces, a second @, brackets, ...).",
        f"{_EMAIL[1]}주소에 쓸 수 없는 문자(공백, 두 번째 @, 괄호 등)가 들어 있습니다.",
    ),
    "email_invalid.dots": (
        f"{_EMAIL[0]}a period or hyphen is misplaced (at the start or end, or two in a row).",
        f"{_EMAIL[1]}마침표나 하이픈의 위치가 잘못되었습니다(맨 앞이나 맨 뒤, 또는 연속).",
    ),
    "email_invalid.too_long": (f"{_EMAIL[0]}it is too long.", f"{_EMAIL[1]}주소가 너무 깁니다."),
    "email_invalid.display_name": (
        f"{_EMAIL[0]}it has a name or angle brackets around the address; keep the address only.",
        f"{_EMAIL[1]}주소 앞뒤에 이름이나 꺾쇠괄호가 있습니다. 주소만 남겨 주세요.",
    ),
    "phone_required": ("phone is empty (phone is required).", "전화번호가 비어 있습니다(필수 항목입니다)."),
    "phone_invalid": (
        "not a valid phone number (default region {region}).",
        "올바른 전화번호가 아닙니다(기본 국가 {region}).",
    ),
    "phone_unrecognised": (
        "phone number not recognised (default region {region}); kept as given.",
        "전화번호 형식을 알 수 없어(기본 국가 {region}) 입력된 그대로 저장했습니다.",
    ),
    "too_long": (
        "{field} is longer than {limit} characters (it has {length})." + _NOT_LOADED[0],
        "{field}이(가) {limit}자를 넘습니다(현재 {length}자)." + _NOT_LOADED[1],
    ),
    "duplicate": (
        "repeats row {first_row} (the same email); only row {first_row} was loaded.",
        "{first_row}행과 이메일이 같은 중복 행입니다. {first_row}행만 등록되었습니다.",
    ),
    "duplicate.other_name": (
        "repeats row {first_row} (the same email under another name); only row {first_row} was loaded. "
        "Check which person is meant.",
        "{first_row}행과 이메일이 같지만 이름이 다른 중복 행입니다. {first_row}행만 등록되었으니 "
        "어느 분이 맞는지 확인해 주세요.",
    ),
    "stale": (
        "same person as an earlier upload: {field} not changed, the newer upload {upload} already set this "
        "field (counted unchanged).",
        "이전 업로드와 같은 참가자입니다: 더 최근 업로드 {upload}에서 이미 정한 {field} 값은 바꾸지 "
        "않았습니다(변경 없음으로 집계).",
    ),
    "unmapped_columns": (
        "column(s) {columns} are not a known field; their values are kept aside as extra data, not loaded "
        "into any field. Every known field was found.",
        "{columns} 열은 알려진 항목이 아니어서 어느 항목에도 등록하지 않고 추가 정보로 따로 보관했습니다. "
        "알려진 항목은 모두 있습니다.",
    ),
    "unmapped_columns.missing": (
        "column(s) {columns} are not a known field; their values are kept aside as extra data, not loaded "
        "into any field. If one of them is meant to be a field, head it with a known header: {aliases}.",
        "{columns} 열은 알려진 항목이 아니어서 어느 항목에도 등록하지 않고 추가 정보로 따로 보관했습니다. "
        "어떤 항목에 넣을 열이라면 머리글을 다음 중 하나로 바꿔 주세요: {aliases}.",
    ),
    # Intake's notes come as English text; until intake gives them message keys, Korean readers
    # get them as they are, introduced in Korean.
    "intake_note": ("{note}", "파일을 읽을 때 참고 사항(영문): {note}"),
    "strict_rejected": (
        "strict mode: {invalid} of {rows} rows are invalid, nothing was loaded (first: row {row}, column {column})",
        "전체 검사 모드: {rows}행 중 {invalid}행이 잘못되어 아무것도 등록하지 않았습니다"
        "(첫 오류: {row}행, {column} 열)",
    ),
}


def _params(params: Mapping[str, object], index: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in params.items():
        if name in ("field", "column") and isinstance(value, str) and value in FIELD_NAMES:
            value = FIELD_NAMES[value][index]
        out[name] = value
    return out


def render(key: str, params: Mapping[str, object]) -> tuple[str, str]:
    """(English, Korean) text of reason ``key`` with ``params`` filled in."""
    english, korean = REASONS[key]
    return english.format(**_params(params, 0)), korean.format(**_params(params, 1))


def field_name(field: str, language: str) -> str:
    """A canonical column as an organiser reads it in ``language`` ("ko" or "en")."""
    names = FIELD_NAMES.get(field)
    if names is None:
        return field
    return names[1] if language == "ko" else names[0]
