"""What the Dagster UI shows about an upload: the reasons table, the masked preview, the pandera
schema as a TableSchema, and drops that start no run recorded by the inbox sensor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from event_pipeline import settings
from event_pipeline.defs.assets import upload_file
from event_pipeline.defs.metadata import (
    mask_name,
    masked_preview,
    preview_of,
    preview_rows,
    reasons_table,
    table_schema,
)
from event_pipeline.defs.resources import default_resources
from event_pipeline.defs.sensors import inbox_sensor
from event_pipeline.schemas.models import CLEAN_COLUMNS, CleanParticipants
from event_pipeline.schemas.results import Finding
from event_pipeline_tests.support.participants import csv_bytes, sample, write_csv
from event_pipeline_tests.support.pipeline import make_event, run_import

NAMES = ["김민준", "이서연", "박지호", "최수아", "정예준"]
EMAILS = ["kim@example.com", "lee@example.com", "not-an-email", "choi@example.com", "KIM@example.com"]
PHONES = ["010-1234-5678", "010-2222-3333", "", "01044445555", "010-1234-5678"]


def _parsed() -> pd.DataFrame:
    """Rows 2-6 as intake hands them over: text cells and the row number the organiser sees."""
    return pd.DataFrame(
        {"source_row": range(2, 7), "name": NAMES, "email": EMAILS, "phone": PHONES, "department": ["개발팀"] * 5}
    )


def _findings() -> list[Finding]:
    return [
        Finding.of(4, "email", "error", "email_invalid.no_at"),
        Finding.of(5, "name", "error", "name_length", min=2, max=100, length=1),
        Finding.of(6, "email", "error", "duplicate", first_row=2),
    ]


def test_reasons_table_counts_rows_per_reason_most_frequent_first() -> None:
    findings = [
        *_findings(),
        Finding.of(9, "email", "error", "email_invalid.no_at"),
        Finding.of(7, "phone", "warning", "phone_unrecognised", region="KR"),
    ]
    lines = reasons_table(findings).splitlines()
    assert lines[0] == "| reason | severity | rows | count |"
    # The most frequent reason first, with its rows in order; then by first row.
    assert lines[2].startswith("| email: not a valid email address: it has no @ sign. | error | 4, 9 | 2 |")
    assert lines[3].startswith("| name: name must be 2 to 100 characters long (it has 1). | error | 5 | 1 |")
    assert "| email: repeats row 2 (the same email); only row 2 was loaded. | error | 6 | 1 |" in lines
    assert lines[-1].startswith("| phone: phone number not recognised (default region KR); kept as given. | warning |")
    assert len(lines) == 6


def test_reasons_table_keeps_the_top_reasons_and_counts_the_rest() -> None:
    findings = [Finding.of(row, "email", "error", "duplicate", first_row=row - 100) for row in range(101, 113)]
    lines = reasons_table(findings, top=10).splitlines()
    assert len(lines) == 2 + 10 + 1
    assert lines[-1] == "| … and 2 more reasons | | | 2 |"


def test_reasons_table_lists_a_bounded_number_of_rows() -> None:
    findings = [Finding.of(row, "name", "error", "name_required") for row in range(2, 40)]
    line = reasons_table(findings, rows_per_reason=3).splitlines()[2]
    assert "| 2, 3, 4, … (35 more) | 38 |" in line


def test_reasons_table_cells_cannot_break_the_table() -> None:
    odd = Finding(row=3, column="extra", severity="warning", reason="a | b <script>\nnext", reason_ko="")
    line = reasons_table([odd]).splitlines()[2]
    assert line == "| extra: a \\| b &lt;script&gt; next | warning | 3 | 1 |"


def test_reasons_table_says_so_when_nothing_was_refused() -> None:
    assert "Every row was loaded" in reasons_table([])


def test_names_are_masked_to_their_first_character_whatever_their_length() -> None:
    assert mask_name(" 김민준 ") == "김**"
    assert mask_name("Alexandra Smith") == "A**"
    assert mask_name("") == ""


def test_preview_masks_every_name_email_and_phone_and_says_why_rows_were_left_out() -> None:
    preview = masked_preview(_parsed(), _findings())
    rows = [record.data for record in preview.records]
    assert [r["row"] for r in rows] == [2, 3, 4, 5, 6]
    assert rows[0] == {"row": 2, "name": "김**", "email": "k***@example.com", "phone": "010-****-5678", "outcome": "ok"}
    assert rows[2]["email"] == "***" and rows[2]["phone"] == ""
    assert rows[2]["outcome"] == "email: not a valid email address: it has no @ sign."
    assert str(rows[4]["outcome"]).startswith("email: repeats row 2")
    assert rows[3]["phone"] == "010****5555"
    shown = repr(preview)
    for value in [*NAMES, *EMAILS, *(p for p in PHONES if p)]:
        assert value not in shown, value
    assert [c.name for c in preview.schema.columns] == ["row", "name", "email", "phone", "outcome"]


def test_preview_shows_problem_rows_first_then_a_few_clean_ones() -> None:
    assert preview_rows(range(2, 7), _findings(), problems=2, clean=1) == [2, 4, 5]
    assert preview_rows(range(2, 7), [], problems=2, clean=2) == [2, 3]


def test_preview_of_an_upload_reads_only_the_rows_it_shows(tmp_path: Path) -> None:
    parsed = tmp_path / "parsed.parquet"
    frame = _parsed()
    frame.to_parquet(parsed, index=False)
    preview = preview_of(parsed, _findings(), problems=1, clean=1)
    assert [(r.data["row"], r.data["email"], r.data["outcome"]) for r in preview.records] == [
        (2, "k***@example.com", "ok"),
        (4, "***", "email: not a valid email address: it has no @ sign."),
    ]
    # A file without a phone column, and an upload whose findings are all on the header row.
    frame.drop(columns=["phone"]).to_parquet(parsed, index=False)
    header_only = [Finding.of(1, "extra", "warning", "intake_note", note="read as cp949")]
    preview = preview_of(parsed, header_only, problems=3, clean=1)
    assert [(r.data["row"], r.data["phone"], r.data["outcome"]) for r in preview.records] == [(2, "", "ok")]


def test_pandera_schema_becomes_the_ui_column_table() -> None:
    schema = table_schema(CleanParticipants.to_schema())
    columns = {c.name: c for c in schema.columns}
    assert list(columns) == list(CLEAN_COLUMNS)
    assert columns["source_row"].constraints.unique
    assert not columns["name"].constraints.nullable
    assert "str_length(min_value=2, max_value=100)" in columns["name"].constraints.other
    assert "email_lower_case" in columns["email"].constraints.other
    assert columns["source_row"].type == "int64"


# --- drops that start no run ----------------------------------------------------------------


@pytest.fixture
def instance(var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("EVENT_PIPELINE_SETTLE_SECONDS", "0")
    with dg.instance_for_test(temp_dir=str(var_home.dagster_home)) as inst:
        yield inst


def _ticks(instance: dg.DagsterInstance) -> list[dg.SensorResult]:
    """Two evaluations (a file settles over two looks); their asset events stored as the daemon does."""
    results = []
    for _ in range(2):
        result = inbox_sensor(dg.build_sensor_context(instance=instance, resources=default_resources()))
        assert isinstance(result, dg.SensorResult)
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        results.append(result)
    return results


def _observations(instance: dg.DagsterInstance) -> list[dict[str, str]]:
    records = instance.fetch_observations(upload_file.key, limit=10).records
    out = []
    for record in records:
        observation = record.asset_observation
        assert observation is not None
        out.append({k: str(v.value) for k, v in observation.metadata.items()})
    return out


def test_file_for_unknown_event_is_recorded_on_upload_file(
    instance: dg.DagsterInstance, var_home: settings.Paths
) -> None:
    make_event("devcon-2026")
    write_csv(var_home.inbox / "devcon-2025" / "참가자 명단.csv", sample(3, invalid=0, duplicates=0).rows)
    results = _ticks(instance)
    assert not any(r.run_requests for r in results)
    assert "1 file(s) set aside without a run" in str(results[-1].skip_reason)
    (seen,) = _observations(instance)
    assert seen["event"] == "devcon-2025"
    assert seen["file"] == "참가자 명단.csv"
    assert seen["reason"].startswith("no event with slug 'devcon-2025'. Create it first: event-pipeline event add")
    moved = Path(seen["moved_to"])
    assert moved.parent == var_home.rejected / "devcon-2025" and moved.is_file()


def test_identical_content_is_recorded_on_upload_file(
    instance: dg.DagsterInstance, var_home: settings.Paths, tmp_path: Path
) -> None:
    make_event("devcon-2026")
    rows = sample(4, invalid=0, duplicates=0).rows
    first, result = run_import(instance, write_csv(tmp_path / "first.csv", rows))
    assert result.success
    folder = var_home.inbox / "devcon-2026"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "again.csv").write_bytes(csv_bytes(rows))
    assert not any(r.run_requests for r in _ticks(instance))
    (seen,) = _observations(instance)
    assert seen["file"] == "again.csv"
    assert seen["reason"] == f"identical to upload {first.id} (first.csv, done); not imported again"
    # Only file names, paths and the upload id reach the event log, never a row.
    for row in rows:
        assert not any(cell in str(seen) for cell in row[:3])
