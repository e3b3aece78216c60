"""Seeded, realistic participant files: Korean and Latin names, mixed phone formats, about 1 %
invalid rows and 2 % duplicate emails, as CSV (UTF-8 or cp949) and XLSX."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

KO_FAMILY = (
    "김이박최정강조윤장임한오서신권황안송류전홍고문양손배백허유남심노하곽성차주우구민진나지엄채원천방공현함변염여추도소석선설"
    "마길연위표명기반왕금옥육인맹제모탁국어은편용"
)
KO_GIVEN = [
    "민준",
    "서연",
    "지호",
    "수아",
    "예준",
    "하은",
    "도윤",
    "지우",
    "서준",
    "하린",
    "시우",
    "채원",
    "주원",
    "지안",
    "유준",
    "다인",
    "건우",
    "서윤",
    "현우",
    "소율",
    "우진",
    "예린",
    "선우",
    "나은",
    "연우",
    "지유",
    "정우",
    "윤서",
]
LATIN_FIRST = ["Emma", "Lucas", "Olivia", "Noah", "Mia", "Leo", "Sofia", "Ethan", "Chloé", "José", "Zoë", "Liam"]
LATIN_LAST = ["Wilson", "Martin", "García", "Müller", "Rossi", "Dubois", "Smith", "Nguyen", "O'Brien", "Kowalski"]
DEPTS = ["개발팀", "디자인팀", "영업팀", "인사팀", "재무팀", "마케팅팀", "Engineering", "Sales", "운영팀", "법무팀"]
POSITIONS = ["사원", "대리", "과장", "차장", "부장", "선임", "책임", "수석", "Manager", "Director", "Engineer"]
HEADER = ["이름", "이메일", "휴대폰", "소속", "직급", "식단", "메모"]


@dataclass(frozen=True)
class Generated:
    path: Path
    rows: int
    invalid: int
    duplicates: int
    size_bytes: int


def _phone(rng: random.Random, i: int) -> str:
    mid, end = rng.randrange(1000, 10000), rng.randrange(1000, 10000)
    style = i % 5
    if style == 0:
        return f"010-{mid}-{end}"
    if style == 1:
        return f"010{mid}{end}"
    if style == 2:
        return f"+82 10 {mid} {end}"
    if style == 3:
        return f"010 {mid} {end}"
    return f"+82-10-{mid}-{end}"


def rows(
    n: int, *, seed: int = 42, invalid_ratio: float = 0.01, duplicate_ratio: float = 0.02
) -> tuple[list[list[str]], int, int]:
    rng = random.Random(seed)
    out: list[list[str]] = []
    invalid = duplicates = 0
    for i in range(n):
        if i % 10 == 7:
            name = f"{rng.choice(LATIN_FIRST)} {rng.choice(LATIN_LAST)}"
        else:
            name = rng.choice(KO_FAMILY) + rng.choice(KO_GIVEN)
        email = f"user{i}.{seed}@example{i % 7}.co.kr"
        r = rng.random()
        if r < invalid_ratio:
            email = email.replace("@", " at ") if i % 2 else email
            name = name if i % 2 else ""
            invalid += 1
        elif r < invalid_ratio + duplicate_ratio and out:
            email = out[rng.randrange(len(out))][1].upper()
            duplicates += 1
        memo = "" if i % 3 else f'메모 {i}, "quoted"'
        out.append([name, email, _phone(rng, i), rng.choice(DEPTS), rng.choice(POSITIONS), "", memo])
    return out, invalid, duplicates


def write_csv(path: Path, data: list[list[str]], *, encoding: str = "utf-8") -> int:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(data)
    raw = buf.getvalue().encode(encoding, errors="replace")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return len(raw)


def csv_file(path: Path, n: int, *, encoding: str = "utf-8", seed: int = 42) -> Generated:
    data, invalid, duplicates = rows(n, seed=seed)
    size = write_csv(path, data, encoding=encoding)
    return Generated(path, n, invalid, duplicates, size)


def csv_file_of_size(path: Path, target_bytes: int, *, encoding: str = "utf-8", seed: int = 42) -> Generated:
    """The largest file of this generator's rows that stays under ``target_bytes``."""
    n = max(1000, target_bytes // 80)
    generated = csv_file(path, n, encoding=encoding, seed=seed)
    while generated.size_bytes > target_bytes:
        n = int(n * target_bytes / generated.size_bytes * 0.995)
        generated = csv_file(path, n, encoding=encoding, seed=seed)
    return generated


def xlsx_file(path: Path, n: int, *, seed: int = 7) -> Generated:
    from openpyxl import Workbook

    data, invalid, duplicates = rows(n, seed=seed)
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("참가자")
    ws.append(["2026 행사 참가자 명단"])  # a title row above the header, as exports have
    ws.append([])
    ws.append(HEADER)
    for i, r in enumerate(data):
        phone = r[2]
        digits = phone.replace("-", "").replace(" ", "")
        # Excel users often end up with numeric phone cells.
        ws.append([r[0], r[1], int(digits) if digits.isdigit() and i % 2 else phone, *r[3:]])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return Generated(path, n, invalid, duplicates, path.stat().st_size)
