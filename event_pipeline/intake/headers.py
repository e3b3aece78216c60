"""Header aliases and header-row detection.

Organisers' files carry titles, blank lines and notes above the header, and headers in Korean
or English with any spacing and case. A header row is the first row (within HEADER_SCAN_ROWS)
where at least two cells are known aliases and one of them is name or email; failing that, the
first row with a name or email alias and any other filled cell (``ID,이름,가격``), so that the
organiser hears which column is missing rather than that there is no header.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from event_pipeline.intake.errors import IntakeError
from event_pipeline.intake.messages import Phrase
from event_pipeline.intake.table import REQUIRED_COLUMNS

HEADER_SCAN_ROWS = 20

ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "full name", "이름", "성명", "참가자명", "참가자 이름", "participant name"),
    "email": (
        "email",
        "e-mail",
        "email address",
        "e-mail address",
        "이메일",
        "메일",
        "전자우편",
        "이메일 주소",
    ),
    "phone": (
        "phone",
        "mobile",
        "tel",
        "phone number",
        "mobile phone",
        "전화번호",
        "휴대폰",
        "연락처",
        "핸드폰",
        "휴대전화",
        "휴대폰 번호",
    ),
    "department": ("department", "dept", "부서", "소속", "부서명"),
    "position": ("position", "title", "job title", "직급", "직위", "직책"),
}

# Separators people put inside headers ("E-mail", "Full_Name", "전화 번호").
_IGNORED = re.compile(r"[\s_\-.·]+")
# A trailing required-marker or annotation: "이메일*", "Name (required)", "연락처[선택]".
_ANNOTATION = re.compile(r"(\*+|\([^()]*\)|\[[^\[\]]*\])$")


def normalise_header(text: str) -> str:
    """NFKC (full-width letters, compatibility jamo), trim, casefold, drop inner separators."""
    key = unicodedata.normalize("NFKC", text).strip().casefold()
    previous = None
    while key and key != previous:
        previous = key
        key = _ANNOTATION.sub("", key).strip()
    return _IGNORED.sub("", key)


_LOOKUP: dict[str, str] = {
    normalise_header(alias): canonical for canonical, aliases in ALIASES.items() for alias in aliases
}


def canonical_for(header: str) -> str | None:
    return _LOOKUP.get(normalise_header(header)) if header else None


def find_header_row(rows: Sequence[Sequence[str]]) -> int | None:
    """Index of the header among ``rows`` (the first HEADER_SCAN_ROWS rows of a sheet), or None."""
    fallback = None
    for index, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        known = [c for c in (canonical_for(cell) for cell in row) if c is not None]
        if not any(field in REQUIRED_COLUMNS for field in known):
            continue
        if len(known) >= 2:
            return index
        if fallback is None and sum(1 for cell in row if cell.strip()) >= 2:
            fallback = index
    return fallback


def display_aliases(field: str) -> str:
    """The accepted headers of ``field`` as people write them, Korean first: "이메일 / ... / E-mail"."""
    aliases = ALIASES[field]
    korean = [a for a in aliases if not a.isascii()]
    english = [a.capitalize() for a in aliases if a.isascii()]
    return " / ".join(korean + english)


def column_label(position: int) -> str:
    """Spreadsheet-style letter for a 0-based column position (0 -> A, 27 -> AB)."""
    label = ""
    position += 1
    while position:
        position, rem = divmod(position - 1, 26)
        label = chr(ord("A") + rem) + label
    return label


@dataclass(frozen=True)
class HeaderMap:
    canonical: dict[str, int]  # canonical field -> column position
    sources: dict[str, str]  # canonical field -> header as written
    extras: list[tuple[str, int]]  # (JSON key, column position) for unrecognised columns
    warnings: list[str]


def map_headers(header: Sequence[str], header_row: int, has_data: Sequence[bool]) -> HeaderMap:
    """Assign each column of the header row to a canonical field or to ``extra``.

    ``has_data[i]`` says whether column i has any non-blank cell below the header: a column with
    neither header nor data is trailing padding (``a,b,c,``) and is dropped silently.
    """
    canonical: dict[str, int] = {}
    sources: dict[str, str] = {}
    extras: list[tuple[str, int]] = []
    warnings: list[str] = []
    duplicates: dict[str, list[int]] = {}
    seen_extra: dict[str, int] = {}
    for position, raw in enumerate(header):
        text = raw.strip()
        field = canonical_for(text)
        if field is not None:
            if field in canonical:
                duplicates.setdefault(field, [canonical[field]]).append(position)
                continue
            canonical[field] = position
            sources[field] = raw
            continue
        if not text:
            if not has_data[position]:
                continue
            key = f"(column {column_label(position)})"
            warnings.append(
                f"Column {column_label(position)} has data but no header; it is kept as extra data '{key}'."
            )
        else:
            key = text
            count = seen_extra.get(text, 0) + 1
            seen_extra[text] = count
            if count > 1:
                key = f"{text} ({count})"
                warnings.append(
                    f"The header '{text}' appears more than once (row {header_row}); "
                    f"column {column_label(position)} is kept as '{key}'."
                )
        extras.append((key, position))
    # Header cells may be quoted below: this row was identified as the header, so it holds column
    # names, not a participant's data.
    if duplicates:
        described = [
            Phrase(
                "duplicate_field",
                {
                    "field": Phrase(f"field.{field}"),
                    "columns": ", ".join(f"{column_label(p)} '{header[p]}'" for p in positions),
                },
            )
            for field, positions in duplicates.items()
        ]
        raise IntakeError.of(
            "duplicate_columns",
            {"header_row": header_row, "fields": sorted(duplicates)},
            header_row=header_row,
            described=described,
        )
    missing = [field for field in REQUIRED_COLUMNS if field not in canonical]
    if missing:
        found = [cell for cell in header if cell.strip()]
        headers: object = ", ".join(f"'{h}'" for h in found)
        if len(canonical) < 2:
            # Taken as the header on one known name alone: it may be a form row ("성명 | 홍길동"),
            # so only the recognised cell is quoted and the others are counted.
            others = len(found) - len(canonical)
            found = [header[p] for p in canonical.values()]
            headers = Phrase("weak_headers", {"known": ", ".join(f"'{h}'" for h in found), "others": others})
        raise IntakeError.of(
            "missing_columns",
            {"missing": missing, "headers": found, "header_row": header_row},
            fields=[Phrase(f"field.{field}") for field in missing],
            header_row=header_row,
            headers=headers,
            aliases=" / ".join(display_aliases(field) for field in missing),
        )
    return HeaderMap(canonical=canonical, sources=sources, extras=extras, warnings=warnings)


def no_header_error(rows: Sequence[Sequence[str]], source_rows: Sequence[int]) -> IntakeError:
    """No row qualifies as the header: then the first rows are data or notes, so no cell is quoted."""
    first = next((i for i, row in enumerate(rows[:HEADER_SCAN_ROWS]) if any(c.strip() for c in row)), None)
    if first is None:
        return IntakeError.of("empty")
    first_row = int(source_rows[first])
    return IntakeError.of(
        "no_header",
        {"scanned_rows": HEADER_SCAN_ROWS, "first_row": first_row},
        rows=HEADER_SCAN_ROWS,
        first_row=first_row,
    )
