"""Every row accounted for: judge(), the error report and the upload's counts say the same thing."""

from __future__ import annotations

import json
from importlib.resources import files as package_files
from pathlib import Path

import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.intake import read_table
from event_pipeline.schemas import read_findings
from event_pipeline.schemas.rules import LENGTH_LIMITS
from event_pipeline.steps import rows
from event_pipeline.steps.rows import intake_findings, judge, rejection_reason
from event_pipeline.store import tables
from event_pipeline_tests.steps._imports import import_steps
from event_pipeline_tests.support.participants import csv_bytes, sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event

SAMPLE = Path(str(package_files("event_pipeline") / "sample" / "participants_demo.csv"))


def said(findings: list[rows.Finding]) -> list[tuple[int, str, str]]:
    return [(f.row, f.column, f.severity) for f in findings]


def test_bundled_sample_says_row_19_repeats_row_2() -> None:
    parsed = read_table(SAMPLE)
    verdict = judge(parsed.frame, strict=False, default_region="KR", intake=intake_findings(parsed))
    by_row = {f.row: f for f in verdict.findings if f.row != parsed.header_row}
    assert by_row[19].severity == "error" and by_row[19].column == "email"
    assert by_row[19].reason.startswith("repeats row 2 ")
    assert by_row[19].reason_ko.startswith("2행과 이메일이 같지만 이름이 다른 중복 행입니다.")
    # The unmapped column is a finding on the header row, in both languages.
    [header] = [f for f in verdict.findings if f.row == parsed.header_row]
    assert (header.column, header.severity) == ("extra", "warning")
    assert "'식단'" in header.reason and "'식단' 열은" in header.reason_ko
    counts = verdict.counts
    assert counts["rejected"] + counts["duplicates_in_file"] == counts["not_loaded"] == 4
    assert counts["to_load"] == 20 - 4


def test_three_invalid_two_duplicates_give_five_findings(tmp_path: Path) -> None:
    s = sample(20, invalid=3, duplicates=2)
    parsed = read_table(write_csv(tmp_path / "list.csv", s.rows))
    verdict = judge(parsed.frame, strict=False, default_region="KR", intake=intake_findings(parsed))
    assert [f.row for f in verdict.findings] == sorted(s.invalid_rows + s.duplicate_rows)
    assert all(f.severity == "error" for f in verdict.findings)
    duplicates = [f for f in verdict.findings if f.row in s.duplicate_rows]
    assert [f.reason for f in duplicates] == [
        "repeats row 3 (the same email under another name); only row 3 was loaded. Check which person is meant.",
        "repeats row 2 (the same email under another name); only row 2 was loaded. Check which person is meant.",
    ]
    assert verdict.counts == {
        "rows": 20,
        "valid": 17,
        "to_load": 15,
        "rejected": 3,
        "duplicates_in_file": 2,
        "not_loaded": 5,
        "errors": 5,
        "warnings": 0,
    }


def test_headerless_column_and_unmapped_columns_reach_the_report_as_warnings(tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text("이름,이메일,회사명,Organisation,\r\n김민준,kim@example.com,ACME,R&D,memo\r\n", encoding="utf-8")
    parsed = read_table(source)
    verdict = judge(parsed.frame, strict=False, default_region="KR", intake=intake_findings(parsed))
    assert said(verdict.findings) == [(1, "extra", "warning"), (1, "", "warning")]
    unmapped, note = verdict.findings
    assert "'회사명', 'Organisation'" in unmapped.reason
    # Fields the file lacks are named with their Korean and English headers.
    assert "부서 / 소속 / 부서명 / Department / Dept" in unmapped.reason
    assert "부서 / 소속 / 부서명 / Department / Dept" in unmapped.reason_ko
    assert note.reason.startswith("Column E has data but no header")
    assert verdict.counts["warnings"] == 2 and verdict.counts["not_loaded"] == 0


@pytest.mark.usefixtures("database_url")
def test_import_report_and_counts_agree(var_home: settings.Paths) -> None:
    make_event()
    s = sample(20, invalid=3, duplicates=2)
    upload = import_steps(write_csv(var_home.home / "in" / "list.csv", s.rows))
    assert upload.status == "running" and upload.error_report_path is not None
    findings = read_findings(Path(upload.error_report_path))
    assert [f.row for f in findings] == sorted(s.invalid_rows + s.duplicate_rows)
    assert {f.severity for f in findings} == {"error"}
    counts = upload.counts()
    assert counts["rejected"] + counts["duplicates_in_file"] == len({f.row for f in findings})
    assert (counts["rejected"], counts["duplicates_in_file"], counts["loaded_new"]) == (3, 2, 15)
    assert rows.upload_findings(upload) == findings


@pytest.mark.usefixtures("database_url")
def test_a_201_character_department_rejects_its_row_and_the_rest_loads(var_home: settings.Paths) -> None:
    """PostgreSQL refused the whole load over one cell (department is VARCHAR(200)); SQLite stored it."""
    make_event()
    limit = LENGTH_LIMITS["department"]
    assert limit == 200
    s = sample(5, invalid=0, duplicates=0)
    s.rows[2][3] = "가" * (limit + 1)
    s.rows[3][4] = "x" * (LENGTH_LIMITS["position"] + 1)
    upload = import_steps(write_csv(var_home.home / "in" / "long.csv", s.rows))
    assert (upload.loaded_new, upload.rejected_rows) == (3, 2)
    findings = rows.upload_findings(upload)
    assert said(findings) == [(4, "department", "error"), (5, "position", "error")]
    assert findings[0].reason == ("department is longer than 200 characters (it has 201). The row was not loaded.")
    assert findings[0].reason_ko == "부서이(가) 200자를 넘습니다(현재 201자). 이 행은 등록되지 않았습니다."
    with engine().connect() as conn:
        stored = conn.execute(sa.select(sa.func.max(sa.func.length(tables.participants.c.department)))).scalar_one()
    assert stored <= limit


@pytest.mark.usefixtures("database_url")
def test_same_person_as_a_newer_upload_is_a_warning_and_a_rerun_lists_it_once(var_home: settings.Paths) -> None:
    make_event()
    old = var_home.home / "in" / "old.csv"
    new = var_home.home / "in" / "new.csv"
    rows_old = sample(3, invalid=0, duplicates=0).rows
    rows_new = [list(r) for r in rows_old]
    rows_old[0][3], rows_new[0][3] = "영업팀", "인사팀"
    write_csv(old, rows_old)
    write_csv(new, rows_new)
    paths = settings.paths()
    eng = engine()
    from event_pipeline.steps import imports
    from event_pipeline.steps.inbox import register_local_file

    # The old file is registered first (older), the new one loads first; then the old one loads.
    older, _ = register_local_file(eng, paths, event_slug="devcon-2026", source=old)
    import_steps(new)
    for step in ("receive", "parse", "validate", "load"):
        run_step(step, older.id)
    run_step("load", older.id)  # a re-run of the load adds nothing twice
    done = imports.get_upload(eng, older.id)
    findings = rows.upload_findings(done)
    assert said(findings) == [(2, "department", "warning")]
    assert findings[0].reason.startswith("same person as an earlier upload: department not changed")
    assert done.rejected_rows == 0 and done.unchanged == 3


def run_step(step: str, upload_id: str) -> None:
    from event_pipeline.intake import DEFAULT_MAX_BYTES
    from event_pipeline.steps import imports

    paths = settings.paths()
    eng = engine()
    if step == "receive":
        imports.receive(eng, upload_id)
    elif step == "parse":
        imports.parse(eng, paths, upload_id, sheet=None, max_bytes=DEFAULT_MAX_BYTES)
    elif step == "validate":
        imports.validate(eng, paths, upload_id, strict=None, default_region="KR")
    else:
        imports.load(eng, paths, upload_id)


@pytest.mark.usefixtures("database_url")
def test_a_refused_file_keeps_its_reason_in_korean(var_home: settings.Paths) -> None:
    make_event()
    source = var_home.home / "in" / "no-email.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(csv_bytes([["김민준", "개발팀"]], header=["이름", "부서"]))
    upload = import_steps(source)
    assert upload.status == "rejected" and upload.reason is not None
    assert upload.reason.startswith("no-email.csv: The email column is missing.")
    korean = rejection_reason(settings.paths(), upload, "ko")
    assert korean is not None and korean.startswith("no-email.csv: 이메일 열이 없습니다.")
    assert "이메일 / 메일 / 전자우편 / 이메일 주소 / Email / E-mail" in korean
    assert rejection_reason(settings.paths(), upload, "en") == upload.reason
    saved = json.loads((settings.paths().upload_dir(upload.id) / rows.REASON).read_text(encoding="utf-8"))
    assert saved["en"] == upload.reason


@pytest.mark.usefixtures("database_url")
def test_strict_rejection_lists_the_findings_and_says_why_in_both_languages(var_home: settings.Paths) -> None:
    make_event()
    s = sample(6, invalid=1, duplicates=0)
    upload = import_steps(write_csv(var_home.home / "in" / "strict.csv", s.rows), strict=True)
    assert upload.status == "rejected" and upload.reason is not None and "strict mode" in upload.reason
    assert [f.row for f in rows.upload_findings(upload)] == s.invalid_rows
    korean = rejection_reason(settings.paths(), upload, "ko")
    assert korean is not None and "6행 중 1행이 잘못되어" in korean and f"{s.invalid_rows[0]}행" in korean
