"""Issue 12, "Fuzzing": whatever bytes arrive, intake ends in exactly one of two ways.

(a) accepted: every row of the file is accounted for once (``rows == to_load + rejected +
    duplicates_in_file``, ``rejected + duplicates_in_file`` == the distinct rows with an error
    finding, as ``steps.rows.Judgement.counts`` states it) and every finding names a row and has a
    reason in English and Korean;
(b) rejected: an ``IntakeError`` (which ``steps.rows.parse_upload`` turns into ``UploadRejected``)
    with a non-empty reason in both languages.

Nothing else may escape, and no case may hang. Three families of input: random bytes (with the
magic numbers of ZIP, OLE2 and BOMs, and real workbooks cut short or with bytes flipped),
plausible CSV (Korean and English headers, every dialect and encoding intake accepts, titles,
blank lines, padding, long and formula-looking cells), and plausible workbooks (openpyxl XLSX
with several sheets, merged cells and typed cells; xlwt XLS). Most cases go through
``read_table`` + ``judge``, the layer every step calls; a smaller set goes through the steps
themselves (receive, parse, validate, load) on a real var dir and SQLite, so the upload store,
the findings file, the error report and the upload's counts are checked too.

Reproducible: ``derandomize=True`` and no example database, so CI sees the same cases every run.
``--hypothesis-show-statistics`` prints how many cases each test ran.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import openpyxl
import pandas as pd
import pytest
import xlwt
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from event_pipeline import settings as app_settings
from event_pipeline.intake import DEFAULT_MAX_BYTES, IntakeError, ParsedTable, read_table
from event_pipeline.intake.headers import ALIASES
from event_pipeline.intake.sniff import BOMS, OLE2_MAGIC, ZIP_MAGICS
from event_pipeline.schemas.results import SEVERITIES, Finding
from event_pipeline.steps import imports
from event_pipeline.steps.inbox import register_local_file
from event_pipeline.steps.rows import (
    PARSED,
    Judgement,
    UploadRejected,
    intake_findings,
    invariant_holds,
    judge,
    load_findings,
    rejection_reason,
    upload_findings,
)
from event_pipeline_tests.support.pipeline import engine, make_event

# A hang fails the test here instead of at the suite's 600 s timeout.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

Outcome = Literal["accepted", "rejected"]

# Generous per case (a 2-core machine shared with other sessions), yet a hang still fails fast.
FUZZ = settings(
    database=None,
    derandomize=True,
    deadline=dt.timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


# --- the invariant -----------------------------------------------------------------------------


def assert_refusal(exc: IntakeError) -> None:
    """A whole-file refusal the organiser can act on, in both languages."""
    assert str(exc).strip(), f"empty reason ({exc.detail})"
    assert exc.localized("ko").strip(), f"empty Korean reason ({exc.detail})"
    assert exc.code and exc.code != "rejected", exc.detail


def assert_finding(finding: Finding, rows: set[int], header_row: int) -> None:
    assert isinstance(finding.row, int) and finding.row >= 1, finding
    assert finding.severity in SEVERITIES, finding
    assert finding.reason.strip() and finding.reason_ko.strip(), finding
    if finding.severity == "error":
        assert finding.row in rows, f"error on row {finding.row}, which is not a data row"
    else:
        assert finding.row in rows or finding.row == header_row, f"warning on row {finding.row}"


def assert_accounted(parsed: ParsedTable, verdict: Judgement) -> None:
    """Every data row is loaded, rejected or a duplicate, exactly once, and the counts say so."""
    frame = parsed.frame
    rows = frame["source_row"].tolist()
    assert len(rows) == len(set(rows)) == parsed.rows, "source rows must number each row once"
    assert parsed.empty_rows >= 0
    counts = verdict.counts
    assert counts["rows"] == parsed.rows
    assert counts["rows"] == counts["to_load"] + counts["rejected"] + counts["duplicates_in_file"], counts
    assert counts["valid"] == counts["to_load"] + counts["duplicates_in_file"], counts
    assert counts["not_loaded"] == counts["rejected"] + counts["duplicates_in_file"], counts
    findings = verdict.findings
    for finding in findings:
        assert_finding(finding, set(rows), parsed.header_row)
    error_rows = {f.row for f in findings if f.severity == "error"}
    kept_rows = set(verdict.kept["source_row"].tolist())
    assert not kept_rows & error_rows, "a row with an error would be loaded"
    assert kept_rows | error_rows == set(rows), "a row is neither loaded nor explained"
    assert verdict.kept["email"].is_unique
    # Reasons reach Dagster's event log: they point at a row, never quote a participant's address.
    addresses = {e.strip() for e in frame["email"].tolist() if "@" in e and len(e.strip()) >= 6}
    assert not any(a in f.reason or a in f.reason_ko for f in findings for a in addresses)
    if verdict.strict and counts["rejected"]:
        english, korean = verdict.rejection_localized or ("", "")
        assert english.strip() and korean.strip()


def intake_outcome(data: bytes, suffix: str = ".csv", *, strict: bool = False) -> Outcome:
    """read_table + judge on ``data``, asserting the invariant of whichever outcome it has."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            parsed = read_table(path)
        except IntakeError as exc:
            assert_refusal(exc)
            event(f"rejected: {exc.code}")
            return "rejected"
    verdict = judge(parsed.frame, strict=strict, default_region="KR", intake=intake_findings(parsed))
    event("accepted, rows to load" if len(verdict.kept) else "accepted, no row valid")
    assert_accounted(parsed, verdict)
    return "accepted"


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in ``n`` draws. Hypothesis starts (and shrinks) from the all-zero choice,
    which this maps to False: the simplest case is the ordinary one, not the rare branch."""
    return draw(st.integers(1, n)) == n


# --- strategy 1: random bytes ------------------------------------------------------------------


def _sample_xlsx() -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in (
        ["이름", "이메일", "연락처"],
        ["김민준", "kim@example.com", "010-1234-5678"],
        ["Lee", "lee@x.org", 1012345678],
    ):
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _sample_xls() -> bytes:
    workbook = xlwt.Workbook(encoding="utf-8")
    sheet = workbook.add_sheet("명단")
    for r, row in enumerate([["성명", "메일"], ["박서연", "park@example.com"], ["Choi", "choi@example.com"]]):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _recompressed(xlsx: bytes, compression: int) -> bytes:
    """The same workbook with every member stored under another ZIP compression method."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as source, zipfile.ZipFile(out, "w", compression) as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
    return out.getvalue()


SAMPLE_XLSX = _sample_xlsx()
SAMPLE_XLS = _sample_xls()
# Each compression method has its own decompressor, and so its own errors on damaged data.
SAMPLE_ZIPS = (
    SAMPLE_XLSX,
    *(_recompressed(SAMPLE_XLSX, c) for c in (zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)),
)
MAGICS = (
    *ZIP_MAGICS,
    OLE2_MAGIC,
    *BOMS,
    b"\xef\xbb\xbf\xef\xbb\xbf",
    b"%PDF-1.7\n",
    b"MZ\x90\x00",
    b"BZh91AY&SY",
    b"RIFF\x00\x00\x00\x00WAVE",
    b"sep=;\n",
    b"<?xml version='1.0'?>",
    b"\x00\x00\x01\x00",
    b"name,email\r\n",
    "이름,이메일\n".encode(),
    "이름,이메일\n".encode("cp949"),
    "이름\t이메일\n".encode("utf-16-le"),
)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """A real file cut short and/or with a few bytes overwritten."""
    data = bytearray(original[: draw(st.integers(min_value=0, max_value=len(original)))])
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if data:
            data[draw(st.integers(min_value=0, max_value=len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


random_bytes = st.one_of(
    st.binary(max_size=4096),
    st.tuples(st.sampled_from(MAGICS), st.binary(max_size=2048)).map(b"".join),
    st.lists(st.sampled_from([b"\x00", b",", b'"', b"\r\n", b"\n", b"\xff", b"\xfe", b"\xef\xbb\xbf", b"a", b"@"])).map(
        b"".join
    ),
    st.sampled_from(SAMPLE_ZIPS).flatmap(mutated),
    mutated(SAMPLE_XLS),
)


# --- strategy 2: plausible CSV -----------------------------------------------------------------

HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
SPECIALS = st.sampled_from(['"', ",", ";", "\t", "|", "\n", "\r", " ", "\u00a0", "\u3000", "'"])
# Control characters only through SPECIALS (and one NUL as damage below): a NUL anywhere makes a
# UTF-8 file binary, and the plausible files should mostly get past the sniffer.
FREE_TEXT = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), HANGUL, SPECIALS), max_size=20
)
FORMULAS = st.sampled_from(
    ["=1+2", '=HYPERLINK("http://x","y")', "+82 10", "-", "@SUM(A1)", "＝1", "\t=1", "=cmd|' /C'"]
)
LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=12)
DOMAIN = st.sampled_from(["example.com", "EXAMPLE.com", "x.org", "예시.한국", "localhost", "a..b", "gmail.com"])


@st.composite
def emails(draw: st.DrawFn) -> str:
    # Mostly valid (a row needs a valid name and email to reach dedupe and the load), then each kind of wrong.
    shape = draw(st.sampled_from(["plain"] * 8 + ["upper", "spaced", "no_at", "two_at", "blank", "free"]))
    address = f"{draw(LOCAL)}@{draw(DOMAIN)}"
    if shape == "upper":
        return address.upper()
    if shape == "spaced":
        return f"  {address} "
    if shape == "no_at":
        return address.replace("@", "")
    if shape == "two_at":
        return address + "@x"
    if shape == "blank":
        return draw(st.sampled_from(["", " ", "\u00a0"]))
    if shape == "free":
        return draw(st.one_of(FREE_TEXT, FORMULAS))
    return address


def cells_for(field: str) -> st.SearchStrategy[str]:
    if field == "name":
        typical = st.one_of(
            st.text(alphabet=HANGUL, min_size=2, max_size=4), st.sampled_from(["Kim Minjun", "O'Brien"])
        )
    elif field == "email":
        typical = emails()
    elif field == "phone":
        typical = st.sampled_from(["010-1234-5678", "+82 10 1234 5678", "1012345678", "02-123-4567", "abc", "0"])
    else:
        typical = st.sampled_from(["개발팀", "R&D", "Sales, EMEA", 'say "hi"', "line\nbreak", "팀장"])
    long_cell = st.integers(min_value=50, max_value=1500).map(lambda n: "홍길동 " * n)
    odd = st.one_of(FREE_TEXT, FORMULAS, long_cell, st.just(""))
    return st.sampled_from([False] * 4 + [True]).flatmap(lambda is_odd: odd if is_odd else typical)


@st.composite
def header_cell(draw: st.DrawFn, field: str) -> str:
    alias = draw(st.sampled_from(ALIASES[field]))
    dressed = draw(st.sampled_from([alias, alias.upper(), alias.title(), f" {alias} ", f"{alias}*", f"{alias} (필수)"]))
    return dressed


@st.composite
def table_rows(draw: st.DrawFn) -> tuple[list[list[str]], int]:
    """Title rows, a header of known aliases (sometimes a required one missing or doubled), data
    rows; and the header's index."""
    fields = draw(st.lists(st.sampled_from(list(ALIASES)), min_size=1, max_size=5, unique=True))
    if not one_in(draw, 10):  # mostly both required columns, in any order
        fields = draw(st.permutations(["name", "email", *[f for f in fields if f not in ("name", "email")]]))
    if one_in(draw, 20):
        fields = [*fields, draw(st.sampled_from(fields))]  # a field twice: refused as ambiguous
    extras = draw(st.lists(st.sampled_from(["비고", "memo", "식단", "", "비고"]), max_size=2))
    header = [draw(header_cell(f)) for f in fields] + extras
    kinds = list(fields) + ["extra"] * len(extras)
    pool: list[str] = []  # emails seen, to repeat: in-file duplicates
    body: list[list[str]] = []
    # Mostly at least one data row: a header alone is refused, which one case in ten checks.
    for _ in range(draw(st.integers(min_value=0 if one_in(draw, 10) else 1, max_value=12))):
        row = []
        for kind in kinds:
            if kind == "email" and pool and one_in(draw, 5):
                value = draw(st.sampled_from(pool))
            else:
                value = draw(cells_for(kind)) if kind != "extra" else draw(FREE_TEXT)
            if kind == "email":
                pool.append(value)
            row.append(value)
        if one_in(draw, 7):
            row = [""] * len(row)  # a blank line inside the data
        body.append(row)
    titles = draw(
        st.lists(
            st.sampled_from(["2026 개발자 행사 참가자 명단", "", "Exported 2026-11-30", "※ 개인정보 주의"]), max_size=3
        )
    )
    width = len(header) + draw(st.integers(min_value=0, max_value=2))  # trailing empty columns
    rows = [[t] + [""] * (width - 1) for t in titles]
    rows += [r + [""] * (width - len(r)) for r in [header, *body]]
    return rows, len(titles)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    rows, _ = draw(table_rows())
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    terminator = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    quoting: Literal[0, 1, 2] = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=terminator, quoting=quoting).writerows(rows)
    text = buffer.getvalue()
    if one_in(draw, 8):
        # Hand-typed damage after a real header: stray quotes, ragged rows, delimiters of another dialect.
        header = text.splitlines(keepends=True)[0] if text else ""
        tokens = st.one_of(SPECIALS, st.sampled_from(['""', '"a""b"', "kim@example.com", "홍길동", "=1"]), FREE_TEXT)
        text = header + "".join(draw(st.lists(tokens, max_size=60)))
    if one_in(draw, 10):
        text = f"sep={delimiter}{terminator}" + text
    damage = draw(st.sampled_from(["none"] * 12 + ["cut", "stray_quote", "flip", "nul"]))
    if damage == "nul":
        # Survives the sniffer only in UTF-16, where NULs are normal; then it reaches the rules.
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + "\x00" + text[at:]
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp949", "utf-16", "utf-16-le", "utf-16-be"]))
    data = text.encode(encoding, errors="replace")
    if damage == "cut" and data:
        data = data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
    elif damage == "stray_quote":
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + b'"' + data[at:]
    elif damage == "flip" and data:
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


# --- strategy 3: plausible workbooks -----------------------------------------------------------

TYPED = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.dates(min_value=dt.date(1900, 3, 1), max_value=dt.date(2100, 1, 1)),
    st.datetimes(min_value=dt.datetime(1900, 3, 1), max_value=dt.datetime(2100, 1, 1)),
    st.booleans(),
    st.none(),
)
# openpyxl refuses control characters in cell text (the XML could not hold them).
XML_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), HANGUL, st.sampled_from(["\n", "\t", '"'])
    ),
    max_size=20,
)


@st.composite
def sheet_rows(draw: st.DrawFn, text: st.SearchStrategy[str]) -> list[list[Any]]:
    """A sheet's rows: a plausible table whose title and data cells may be numbers, dates or None."""
    rows: list[list[Any]] = []
    table, header_at = draw(table_rows())
    for index, row in enumerate(table):
        out: list[Any] = []
        for value in row:
            pick = draw(st.integers(0, 9)) if index != header_at else 0
            if pick == 9:
                out.append(draw(TYPED))
            elif pick == 8:
                out.append(draw(text))
            else:
                out.append(value)
        rows.append(out)
    return rows


def _xml_safe(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(ch for ch in value if ch in "\t\n\r" or ord(ch) >= 0x20)[:32767]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None  # not storable in a cell
    return value


@st.composite
def xlsx_files(draw: st.DrawFn) -> bytes:
    workbook = openpyxl.Workbook()
    sheet_count = draw(st.integers(min_value=1, max_value=3))
    for index in range(sheet_count):
        worksheet = workbook.active if index == 0 else workbook.create_sheet()
        assert worksheet is not None
        worksheet.title = draw(st.sampled_from(["Sheet", "명단", "참가자", "Lookup", "빈 시트"])) + str(index)
        kind = draw(st.sampled_from(["table", "table", "empty", "junk"]))
        if kind == "table":
            rows = draw(sheet_rows(XML_TEXT))
        elif kind == "junk":
            rows = draw(st.lists(st.lists(st.one_of(TYPED, XML_TEXT), max_size=4), max_size=4))
        else:
            rows = []
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                value = _xml_safe(value)
                if value is not None and value != "":
                    worksheet.cell(row=r, column=c, value=value)
        merge = draw(st.booleans())
        if rows and merge:
            # Merged title cells (row 1), and sometimes a merge reaching into the header or the data.
            top = draw(st.integers(min_value=1, max_value=len(rows))) if one_in(draw, 3) else 1
            width = max((len(r) for r in rows), default=1)
            right = draw(st.integers(min_value=1, max_value=max(width, 1)))
            bottom = min(top + draw(st.integers(0, 2)), len(rows) + 2)
            if right > 1 or bottom > top:
                worksheet.merge_cells(start_row=top, start_column=1, end_row=bottom, end_column=right)
        if index and one_in(draw, 4):
            worksheet.sheet_state = "hidden"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@st.composite
def xls_files(draw: st.DrawFn) -> bytes:
    workbook = xlwt.Workbook(encoding="utf-8")
    worksheet = workbook.add_sheet(draw(st.sampled_from(["Sheet1", "명단"])))
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for r, row in enumerate(draw(sheet_rows(XML_TEXT))):
        for c, value in enumerate(row[:256]):
            value = _xml_safe(value)
            if value is None:
                continue
            if isinstance(value, dt.date):
                worksheet.write(r, c, value, date_style)
            elif isinstance(value, int) and not isinstance(value, bool):
                worksheet.write(r, c, float(value))
            else:
                worksheet.write(r, c, value)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


_events = itertools.count()


def steps_outcome(paths: app_settings.Paths, data: bytes, suffix: str, *, strict: bool) -> Outcome:
    """receive, parse, validate and load ``data`` through the steps the assets call, on the real
    upload store and database, asserting the invariant of whichever outcome it has. Each call
    registers a new event, so the same bytes drawn twice are a fresh upload."""
    slug = f"fuzz-{next(_events)}"
    make_event(slug)
    source = paths.home / "drops" / slug / f"upload{suffix}"
    source.parent.mkdir(parents=True)
    source.write_bytes(data)
    eng = engine()
    upload, created = register_local_file(eng, paths, event_slug=slug, source=source, strict=strict)
    assert created
    try:
        imports.receive(eng, upload.id)
        imports.parse(eng, paths, upload.id, sheet=None, max_bytes=DEFAULT_MAX_BYTES)
        imports.validate(eng, paths, upload.id, strict=None, default_region="KR")
        imports.load(eng, paths, upload.id)
    except UploadRejected as exc:
        assert str(exc).strip()
        upload = imports.get_upload(eng, upload.id)
        event("rejected, strict" if upload.rejected_rows and upload.strict else "rejected")
        assert upload.status == "rejected" and upload.reason, upload
        assert (rejection_reason(paths, upload, "ko") or "").strip()
        return "rejected"
    upload = imports.get_upload(eng, upload.id)
    ok, counts = invariant_holds(upload)
    event("loaded" if counts["loaded_new"] else "accepted, nothing new loaded")
    assert ok, counts
    assert counts["rows_in_file"] >= 1
    findings = upload_findings(upload)
    assert not findings or upload.error_report_path
    parsed = pd.read_parquet(paths.upload_dir(upload.id) / PARSED)
    data_rows = set(parsed["source_row"].tolist())
    assert len(data_rows) == len(parsed) == counts["rows_in_file"]
    # Intake's notes sit on the header row, which is above every data row.
    header_rows = {f.row for f in findings if f.column in ("", "extra")}
    assert len(header_rows) <= 1 and all(row < min(data_rows) for row in header_rows), header_rows
    for finding in findings:
        assert_finding(finding, data_rows, next(iter(header_rows), 0))
    error_rows = {f.row for f in findings if f.severity == "error"}
    assert counts["rejected"] + counts["duplicates_in_file"] == len(error_rows), (counts, len(error_rows))
    # The findings file holds what the report lists.
    saved = load_findings(paths, upload)
    assert sorted(saved["rows"] + saved["load"], key=lambda f: (f.row, f.column, f.reason)) == sorted(
        findings, key=lambda f: (f.row, f.column, f.reason)
    )
    return "accepted"


# --- the tests ---------------------------------------------------------------------------------


@settings(FUZZ, max_examples=600)
@given(data=random_bytes, suffix=st.sampled_from([".csv", ".xlsx", ".xls", ""]))
def test_random_bytes_are_accepted_or_refused_with_a_reason(data: bytes, suffix: str) -> None:
    intake_outcome(data, suffix)


@settings(FUZZ, max_examples=200)
@given(data=csv_files(), strict=st.booleans())
def test_plausible_csv_is_accounted_for_or_refused(data: bytes, strict: bool) -> None:
    intake_outcome(data, ".csv", strict=strict)


@settings(FUZZ, max_examples=60)
@given(data=xlsx_files(), strict=st.booleans())
def test_plausible_xlsx_is_accounted_for_or_refused(data: bytes, strict: bool) -> None:
    intake_outcome(data, ".xlsx", strict=strict)


@settings(FUZZ, max_examples=40)
@given(data=xls_files())
def test_plausible_xls_is_accounted_for_or_refused(data: bytes) -> None:
    intake_outcome(data, ".xls")


# One var dir for all cases (fresh event per case), so the function-scoped fixture is intended.
@settings(
    FUZZ, max_examples=40, suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture]
)
@given(
    # Mostly files that get as far as the load; the refusals are covered above, case for case.
    case=st.one_of(
        csv_files().map(lambda d: (d, ".csv")),
        csv_files().map(lambda d: (d, ".csv")),
        xlsx_files().map(lambda d: (d, ".xlsx")),
        xls_files().map(lambda d: (d, ".xls")),
        random_bytes.map(lambda d: (d, ".csv")),
    ),
    strict=st.sampled_from([False, False, False, True]),
)
def test_steps_end_accepted_with_counts_or_rejected_with_a_reason(
    var_home: app_settings.Paths, case: tuple[bytes, str], strict: bool
) -> None:
    data, suffix = case
    steps_outcome(var_home, data, suffix, strict=strict)
