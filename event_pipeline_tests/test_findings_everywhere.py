"""One upload with 3 invalid rows and 2 in-file duplicates: every place an organiser or an
operator looks (`check --json`, `status --json`, the error report, the organiser's email and its
attachment, the Dagster metadata) lists the same 5 findings, and the duplicates name their row."""

from __future__ import annotations

import csv
import io
import re
from email.message import Message

import dagster as dg
from click.testing import CliRunner

from event_pipeline import settings
from event_pipeline.cli import main
from event_pipeline.mail.outbox import outbox_messages
from event_pipeline.schemas.report import read_findings
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.test_cli import cli, last_json

__all__ = ["cli"]  # the fixture


def _decoded(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def _errors(findings: list[dict[str, object]]) -> set[tuple[int, str]]:
    return {(int(str(f["row"])), str(f["reason"])[:12]) for f in findings if f["severity"] == "error"}


def test_the_same_five_findings_everywhere(cli: CliRunner, var_home: settings.Paths) -> None:
    s = sample(20, invalid=3, duplicates=2)
    source = write_csv(var_home.home / "in" / "participants.csv", s.rows)
    expected_rows = set(s.invalid_rows) | set(s.duplicate_rows)
    assert len(expected_rows) == 5

    checked = cli.invoke(main, ["check", str(source), "--json"])
    from_check = [f for f in last_json(checked.output)["findings"] if f["severity"] == "error"]
    assert {f["row"] for f in from_check} == expected_rows

    imported = cli.invoke(main, ["import", str(source), "--event", "devcon-2026", "--json"])
    assert imported.exit_code == 0, imported.output
    upload_id = last_json(imported.output)["upload_id"]
    status = cli.invoke(main, ["status", upload_id, "--json"])
    detail = last_json(status.output)
    from_status = [f for f in detail["findings"] if f["severity"] == "error"]
    from_report = [f.as_dict() for f in read_findings(var_home.reports / f"{upload_id}-errors.csv")]

    assert _errors(from_check) == _errors(from_status) == _errors(from_report)
    assert len(_errors(from_status)) == 5
    assert detail["counts"]["rejected"] + detail["counts"]["duplicates_in_file"] == 5
    repeats = [f for f in from_status if f["row"] in s.duplicate_rows]
    assert all(re.search(r"repeats row \d+", str(f["reason"])) for f in repeats) and len(repeats) == 2

    # The organiser's email: the table in the body and the full report attached.
    (notice,) = outbox_messages(var_home.outbox, "import_complete")
    parts = {p.get_content_type(): p for p in notice.walk() if not p.is_multipart()}
    body = _decoded(parts["text/plain"]).decode("utf-8")
    for row in expected_rows:
        assert re.search(rf"\b{row}\b", body), f"row {row} missing from the email body"
    written = {cell for row in s.rows for cell in row[1:3] if "@" in cell or cell.startswith("010-")}
    assert not [cell for cell in written if cell in body], "addresses and phones in the body are masked"
    attached = _decoded(parts["text/csv"])
    assert attached.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel opens Korean correctly
    lines = list(csv.DictReader(io.StringIO(attached.decode("utf-8-sig"))))
    assert {int(r["row"]) for r in lines if r["severity"] == "error"} == expected_rows

    # The Dagster UI: the reasons table on import_report names the same rows.
    with dg.DagsterInstance.get() as instance:
        events = instance.fetch_materializations(dg.AssetKey("import_report"), limit=1).records
        table = events[0].asset_materialization.metadata["reasons"].value  # type: ignore[union-attr]
    for row in expected_rows:
        assert re.search(rf"\b{row}\b", str(table)), f"row {row} missing from the UI reasons table"
