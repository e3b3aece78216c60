"""The organiser's notices: counts, the first findings as a table in the event's language (masked),
the full report attached; a refused file's reason in the organiser's language."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from event_pipeline import settings
from event_pipeline.access.tokens import TokenCodec
from event_pipeline.identity import mask_email, mask_phone
from event_pipeline.mail.backends import make_sender
from event_pipeline.mail.message import OutgoingMessage
from event_pipeline.schemas import read_findings
from event_pipeline.steps import messages, notices
from event_pipeline.store import deliveries as deliveries_store
from event_pipeline.store.deliveries import Delivery
from event_pipeline.store.tables import email_deliveries
from event_pipeline.store.uploads import Upload
from event_pipeline_tests.steps._imports import import_steps
from event_pipeline_tests.support.participants import csv_bytes, sample, write_csv
from event_pipeline_tests.support.pipeline import engine, make_event

BOM = b"\xef\xbb\xbf"


def notice(upload: Upload, kind: str) -> OutgoingMessage:
    """The notice as the dispatcher builds it: a queued delivery, the real templates."""
    eng = engine()
    key = f"{kind}:{upload.id}"
    with eng.begin() as conn:
        deliveries_store.enqueue(
            conn, [{"event_id": upload.event_id, "upload_id": upload.id, "kind": kind, "dedupe_key": key}]
        )
        columns = [email_deliveries.c[name] for name in Delivery.__dataclass_fields__]
        row = conn.execute(sa.select(*columns).where(email_deliveries.c.dedupe_key == key)).one()
    delivery = Delivery.from_row(row)
    ctx = messages.MailContext(
        sender=make_sender("outbox", outbox_dir=settings.paths().outbox),
        from_email="events@example.com",
        from_name="Dev Conference",
        codec=TokenCodec.from_secret("x" * 40),
        checkin_base_url="https://checkin.example.test/t/",
    )
    return messages.build_messages(eng, ctx, [delivery])[delivery.id]


def table_rows(text: str) -> list[int]:
    """Row numbers of the table lines of a text body ("- 19행, ..." / "- row 19, ...")."""
    return [int(n) for n in re.findall(r"^- (?:row )?(\d+)", text, flags=re.MULTILINE)]


@pytest.mark.usefixtures("database_url")
def test_three_invalid_two_duplicates_in_the_korean_notice_and_its_attachment(var_home: settings.Paths) -> None:
    make_event(language="ko")
    s = sample(20, invalid=3, duplicates=2)
    upload = import_steps(write_csv(var_home.home / "in" / "list.csv", s.rows))
    message = notice(upload, "import_complete")
    expected = sorted(s.invalid_rows + s.duplicate_rows)

    assert table_rows(message.text) == expected
    for row in s.duplicate_rows:
        [line] = [x for x in message.text.splitlines() if x.startswith(f"- {row}행, ")]
        assert "이메일 (오류)" in line and "행과 이메일이 같지만 이름이 다른 중복 행입니다" in line
    assert "오류: 5건, 등록되지 않은 행 5개" in message.text and "경고: 0건" in message.text
    assert "오류로 제외: 3" in message.text and "파일 내 중복: 2" in message.text
    assert "<th>행</th><th>열</th><th>구분</th><th>사유</th>" in message.html
    assert str(var_home.reports) not in message.text  # no server path: the report is attached

    [attachment] = message.attachments
    assert attachment.filename == f"{upload.id}-errors.csv" and attachment.mime_type == "text/csv"
    assert attachment.data.startswith(BOM)
    assert upload.error_report_path is not None
    assert attachment.data == Path(upload.error_report_path).read_bytes()
    lines = list(csv.DictReader(io.StringIO(attachment.data[3:].decode("utf-8"), newline="")))
    assert [int(line["row"]) for line in lines] == expected
    assert {line["severity"] for line in lines} == {"error"}
    assert [f.row for f in read_findings(Path(upload.error_report_path))] == expected


@pytest.mark.usefixtures("database_url")
def test_english_notice_lists_the_same_findings_in_english(var_home: settings.Paths) -> None:
    make_event(language="en")
    s = sample(20, invalid=3, duplicates=2)
    upload = import_steps(write_csv(var_home.home / "in" / "list.csv", s.rows))
    message = notice(upload, "import_complete")
    assert table_rows(message.text) == sorted(s.invalid_rows + s.duplicate_rows)
    assert f"- row {s.duplicate_rows[1]}, email (error): repeats row 2 " in message.text
    assert "Errors: 5 in 5 row(s) not loaded (rejected + duplicates)" in message.text


@pytest.mark.usefixtures("database_url")
def test_the_table_masks_addresses_and_phones_and_stops_at_twenty(var_home: settings.Paths) -> None:
    make_event(language="ko")
    # A header row that also holds someone's address and phone (a pasted row, a form export).
    header = ["이름", "이메일", "kim.minjun@example.com", "010-1234-5678"]
    rows = [[f"참가자{i}", f"bad{i}", "", ""] for i in range(25)]
    source = var_home.home / "in" / "odd.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(csv_bytes(rows, header=header))
    upload = import_steps(source)
    message = notice(upload, "import_complete")
    for body in (message.text, message.html, message.subject):
        assert "kim.minjun@example.com" not in body and "1234-5678" not in body
    assert "k***@example.com" in message.text and "010-****-5678" in message.text
    assert "k***@example.com" in message.html
    table_lines = [line for line in message.text.splitlines() if line.startswith("- ")]
    assert len(table_lines) == notices.LISTED == 20
    assert "... 외 6건은 전체 내역에 있습니다." in message.text  # 25 rows + the header row's finding
    # The attachment is the full report, unmasked: the organiser's own file.
    assert b"kim.minjun@example.com" in message.attachments[0].data


def test_mask_text_leaves_row_numbers_limits_and_upload_ids_alone() -> None:
    text = "row 19 repeats row 2; longer than 200 characters; upload devcon-2026-0123456789abcdef"
    assert notices.mask_text(text) == text
    masked = notices.mask_text("call +82 10 1234 5678 or a.b@example.org")
    assert masked == f"call {mask_phone('+82 10 1234 5678')} or {mask_email('a.b@example.org')}"
    assert "1234" not in masked and "a.b@" not in masked


@pytest.mark.usefixtures("database_url")
def test_failure_notice_gives_the_reason_in_the_organisers_language(var_home: settings.Paths) -> None:
    """The missing-column message went unchanged (English) into a Korean organiser's email."""
    make_event(language="ko")
    source = var_home.home / "in" / "no-email.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(csv_bytes([["김민준", "개발팀"]], header=["이름", "부서"]))
    upload = import_steps(source)
    message = notice(upload, "import_failed")
    assert "사유: no-email.csv: 이메일 열이 없습니다." in message.text
    assert "이메일 / 메일 / 전자우편 / 이메일 주소 / Email / E-mail" in message.text
    assert "The email column is missing" not in message.text
    assert message.attachments == ()


@pytest.mark.usefixtures("database_url")
def test_strict_failure_notice_lists_the_rows_and_attaches_the_report(var_home: settings.Paths) -> None:
    make_event(language="en")
    s = sample(6, invalid=1, duplicates=0)
    upload = import_steps(write_csv(var_home.home / "in" / "strict.csv", s.rows), strict=True)
    message = notice(upload, "import_failed")
    assert "Reason: strict.csv: strict mode: 1 of 6 rows are invalid" in message.text
    assert f"- row {s.invalid_rows[0]}, " in message.text
    assert message.attachments and message.attachments[0].data.startswith(BOM)
