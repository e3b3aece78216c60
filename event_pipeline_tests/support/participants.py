"""Generated participant files for tests: known rows, known mistakes, exact expected counts."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

HEADER = ["이름", "이메일", "휴대폰", "소속", "직급"]
FAMILY = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
GIVEN = ["민준", "서연", "지호", "수아", "예준", "하은", "도윤", "지우", "서준", "하린"]


@dataclass(frozen=True)
class Sample:
    rows: list[list[str]]
    invalid_rows: list[int]  # spreadsheet row numbers (header is row 1)
    duplicate_rows: list[int]

    @property
    def distinct_valid(self) -> int:
        return len(self.rows) - len(self.invalid_rows) - len(self.duplicate_rows)


def sample(n: int = 20, *, invalid: int = 3, duplicates: int = 2, domain: str = "example.com", seed: int = 0) -> Sample:
    """``n`` data rows; the last ``invalid`` rows are broken in different ways, and ``duplicates``
    rows before them repeat earlier emails in another case."""
    rows: list[list[str]] = []
    for i in range(n):
        name = FAMILY[(i + seed) % 10] + GIVEN[(i * 7 + seed) % 10]
        rows.append([name, f"p{seed}-{i}@{domain}", f"010-{1000 + i:04d}-{5000 + i:04d}", "개발팀", "사원"])
    broken: list[tuple[str | None, str | None]] = [("", None), (None, "not-an-email"), (None, "x@no-dot")]
    invalid_rows = []
    for k in range(invalid):
        idx = n - 1 - k
        bad_name, bad_email = broken[k % len(broken)]
        if bad_name is not None:
            rows[idx][0] = bad_name
        if bad_email is not None:
            rows[idx][1] = bad_email
        invalid_rows.append(idx + 2)
    duplicate_rows = []
    for k in range(duplicates):
        idx = n - 1 - invalid - k
        rows[idx][1] = rows[k][1].upper()
        duplicate_rows.append(idx + 2)
    return Sample(rows=rows, invalid_rows=sorted(invalid_rows), duplicate_rows=sorted(duplicate_rows))


def csv_bytes(
    rows: list[list[str]], *, header: list[str] = HEADER, encoding: str = "utf-8", delimiter: str = ","
) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode(encoding)


def write_csv(path: Path, rows: list[list[str]], **kwargs: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(csv_bytes(rows, **kwargs))  # type: ignore[arg-type]
    return path
