"""What the organiser's notices about an upload say: the counts, the first findings as a table in
the event's language, the full error report attached, the reason a file was refused.

The table masks anything in it that looks like an email address or a phone number: reasons
never quote a data cell, but the header row of a file laid out unusually can hold one, and a
mail body travels further than the attachment the organiser chooses to open.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from event_pipeline import settings
from event_pipeline.identity import EMAIL_IN_TEXT, mask_email, mask_phone
from event_pipeline.mail.message import Attachment
from event_pipeline.schemas import Finding, not_loaded_rows, read_findings
from event_pipeline.schemas.reasons import field_name
from event_pipeline.steps.rows import rejection_reason
from event_pipeline.store.uploads import Upload

LISTED = 20
# Past this the report goes unattached (providers refuse large mails: SendGrid's limit is 30 MB
# in all, base64 adds a third) and the notice says where it is instead.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
INTERNAL_ERROR = {
    "en": "the import stopped with an internal error",
    "ko": "내부 오류로 처리가 중단되었습니다",
}
SEVERITY_NAMES = {"en": {"error": "error", "warning": "warning"}, "ko": {"error": "오류", "warning": "경고"}}
WHOLE_FILE = {"en": "(file)", "ko": "(파일)"}

# A run of 9-15 digits with the separators people write (E.164 has at most 15), not part of a
# longer word, so row numbers, limits and upload ids are left alone.
_PHONE = re.compile(r"(?<![\w+])\+?\d[\d \-.()]{7,20}\d(?!\w)")


def mask_text(text: str) -> str:
    """``text`` with email addresses and phone numbers in it masked."""
    masked = EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group(0)), text)

    def phone(match: re.Match[str]) -> str:
        digits = sum(c.isdigit() for c in match.group(0))
        return mask_phone(match.group(0)) if 9 <= digits <= 15 else match.group(0)

    return _PHONE.sub(phone, masked)


@dataclass(frozen=True)
class Listed:
    """One line of the notice's table, in the notice's language, masked."""

    row: int
    column: str
    severity: str
    reason: str


def listed(findings: list[Finding], language: str, limit: int = LISTED) -> list[Listed]:
    return [
        Listed(
            row=f.row,
            column=mask_text(field_name(f.column, language)) if f.column else WHOLE_FILE[language],
            severity=SEVERITY_NAMES[language][f.severity],
            reason=mask_text(f.localized(language)),
        )
        for f in findings[:limit]
    ]


def report_attachment(upload: Upload) -> tuple[Attachment | None, int]:
    """The upload's error report as an attachment (None: no report, or too large), and its size."""
    if not upload.error_report_path:
        return None, 0
    path = Path(upload.error_report_path)
    try:
        size = path.stat().st_size
        if size > MAX_ATTACHMENT_BYTES:
            return None, size
        data = path.read_bytes()
    except FileNotFoundError:
        return None, 0
    return Attachment(filename=f"{upload.id}-errors.csv", data=data, mime_type="text/csv"), size


def findings_context(upload: Upload | None, language: str) -> tuple[dict[str, Any], tuple[Attachment, ...]]:
    """The template variables about an upload's findings, and the report to attach."""
    report = Path(upload.error_report_path) if upload and upload.error_report_path else None
    findings = read_findings(report) if report is not None and report.is_file() else []
    attachment, size = report_attachment(upload) if upload else (None, 0)
    context = {
        "findings": listed(findings, language),
        "findings_total": len(findings),
        "findings_more": max(0, len(findings) - LISTED),
        "finding_counts": {
            "errors": sum(1 for f in findings if f.severity == "error"),
            "warnings": sum(1 for f in findings if f.severity == "warning"),
            "not_loaded": not_loaded_rows(findings),
        },
        "report_attached": attachment.filename if attachment else "",
        # A report too large to attach stays on the server; the organiser asks for it by upload id.
        "report_too_large": size if attachment is None and size else 0,
    }
    return context, ((attachment,) if attachment else ())


def failure_reason(upload: Upload | None, language: str) -> str:
    """Why the upload was refused, in ``language`` where the reason was recorded in it."""
    if upload is None or not upload.reason:
        return INTERNAL_ERROR[language]
    return rejection_reason(settings.paths(), upload, language) or upload.reason
