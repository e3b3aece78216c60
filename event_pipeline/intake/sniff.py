"""Decide what a file is from its bytes, never from its name.

Organisers rename files freely (an XLSX saved as ``.csv``, an HTML export named ``.xls``), so
the name is ignored. Anything that is not CSV/TSV text, XLSX or legacy XLS is refused with a
message saying what it looks like, because "unsupported format" alone sends people in circles.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from event_pipeline.intake.decode import bomless_utf16
from event_pipeline.intake.errors import IntakeError

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")

# (magic prefix, what a person would call it). Checked in order, first match wins.
_BINARY_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "a Linux executable"),
    (b"{\\rtf", "an RTF document"),
    (b"%!PS", "a PostScript document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x00\x00\x01\x00", "an icon image"),
    (b"HWP Document File", "a Hangul (HWP) document"),
)

# Magics made of printable ASCII could begin a real CSV title row ("MZ세대 행사 ..."), so they only
# count together with the structure that follows them.
_TEXTUAL_MAGICS: tuple[tuple[bytes, int, tuple[bytes, ...], str], ...] = (
    (b"MZ", 0x3C, (), "a Windows executable"),
    (b"BZh", 4, (b"1AY&SY",), "a bzip2 archive"),
    (b"RIFF", 8, (b"WEBP", b"WAVE", b"AVI "), "a RIFF media file (WebP/WAV/AVI)"),
)

_HINT = "Please upload the participant list as CSV, XLSX or XLS."
HEAD_BYTES = 64 * 1024


def _reject(looks_like: str, extra: str = "") -> IntakeError:
    reason = f"This file is not a spreadsheet: it looks like {looks_like}. {extra}{_HINT}"
    return IntakeError(reason, {"code": "not_a_table", "looks_like": looks_like})


def _classify_zip(source: Path | io.BytesIO) -> str:
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            content_types = zf.read("mimetype")[:100] if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise IntakeError(
            "This file looks like a ZIP/XLSX file but it is damaged or incomplete "
            "(was the upload cut short?). Please save it again and re-upload.",
            {"code": "corrupt", "format": "zip", "error": str(exc)},
        ) from exc
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        if "xl/workbook.bin" in names and "xl/workbook.xml" not in names:
            raise _reject("an Excel binary workbook (XLSB)", "Save it in Excel as 'Excel Workbook (*.xlsx)'. ")
        return "xlsx"
    if "word/document.xml" in names:
        raise _reject("a Word document (DOCX)")
    if "ppt/presentation.xml" in names:
        raise _reject("a PowerPoint presentation (PPTX)")
    if content_types.startswith(b"application/vnd.oasis.opendocument.spreadsheet"):
        raise _reject("an OpenDocument spreadsheet (ODS)", "Save it as XLSX or CSV. ")
    if content_types.startswith(b"application/vnd.oasis.opendocument"):
        raise _reject("an OpenDocument file")
    if "Contents/Section0.xml" in names or any(n.startswith("Contents/") for n in names):
        raise _reject("a Hangul (HWPX) document")
    return _raise_plain_zip()


def _raise_plain_zip() -> str:
    raise _reject("a ZIP archive that is not an Excel workbook", "If the list is inside it, unzip it first. ")


def _classify_ole2(data: bytes) -> str:
    # Directory entry names in a compound file are UTF-16LE; looking for them is cheaper and
    # more forgiving than walking the FAT, and only decides the error message.
    if "EncryptedPackage".encode("utf-16-le") in data:
        raise IntakeError(
            "This Excel file is password-protected. Remove the password (File > Info > Protect "
            "Workbook) and upload it again.",
            {"code": "encrypted"},
        )
    if "Workbook".encode("utf-16-le") in data or "Book".encode("utf-16-le") in data:
        return "xls"
    if "WordDocument".encode("utf-16-le") in data:
        raise _reject("a legacy Word document (DOC)")
    if "PowerPoint Document".encode("utf-16-le") in data:
        raise _reject("a legacy PowerPoint presentation (PPT)")
    if "HwpSummaryInformation".encode("utf-16-le") in data:
        raise _reject("a Hangul (HWP) document")
    raise _reject("a Microsoft Office compound file that is not an Excel workbook")


def _binary_looks_like(head: bytes) -> str | None:
    for magic, looks_like in _BINARY_MAGICS:
        if head.startswith(magic):
            return looks_like
    for magic, at, followers, looks_like in _TEXTUAL_MAGICS:
        if not head.startswith(magic):
            continue
        if followers and head[at:].startswith(followers):
            return looks_like
        if not followers and b"\x00" in head[:at]:
            return looks_like
    return None


def _classify_text(head: bytes) -> str:
    if head.startswith(BOMS):
        stripped = head.lstrip(b"\xef\xbb\xbf")
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            # UTF-16 text: look at it with the NULs squeezed out for the markup checks below.
            stripped = head[2:].replace(b"\x00", b"")
    else:
        stripped = head
    lead = stripped.lstrip()[:512].lower()
    if lead.startswith((b"<!doctype html", b"<html", b"<table", b"<meta", b"<head")):
        raise _reject(
            "a web page (HTML)",
            "Some systems export HTML tables with an .xls name; open it in Excel and save as XLSX. ",
        )
    if lead.startswith(b"<?xml"):
        if b"urn:schemas-microsoft-com:office:spreadsheet" in stripped.lower():
            raise _reject("an Excel 2003 XML spreadsheet", "Open it in Excel and save as XLSX. ")
        raise _reject("an XML document")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")) and bomless_utf16(head) is None:
        offset = head.index(b"\x00")
        raise IntakeError(
            f"This file is not a spreadsheet: it contains binary data (a NUL byte at byte offset {offset}). " + _HINT,
            {"code": "not_a_table", "looks_like": "binary data", "offset": offset},
        )
    return "csv"


def sniff_bytes(data: bytes) -> str:
    """Classify in-memory content: ``"csv"``, ``"xlsx"`` or ``"xls"``; raise IntakeError otherwise."""
    if not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise IntakeError("The file is empty.", {"code": "empty"})
    head = data[:HEAD_BYTES]
    if head.startswith(ZIP_MAGICS):
        return _classify_zip(io.BytesIO(data))
    if head.startswith(OLE2_MAGIC):
        return _classify_ole2(data)
    looks_like = _binary_looks_like(head)
    if looks_like:
        raise _reject(looks_like)
    return _classify_text(head)


def sniff_format(path: Path) -> str:
    """Classify a file by content: ``"csv"`` (any delimited text), ``"xlsx"`` or ``"xls"``.

    Raises IntakeError naming what the file looks like otherwise (PDF, PNG, ZIP that is not
    XLSX, HTML saved as .xls, ...). Reads the head of the file; for ZIP only the central
    directory; for OLE2 the whole file (to tell a workbook from a Word file or an encrypted one).
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        raise IntakeError("The file is empty.", {"code": "empty"})
    if head.startswith(ZIP_MAGICS):
        return _classify_zip(path)
    if head.startswith(OLE2_MAGIC):
        return _classify_ole2(path.read_bytes())
    if len(head) < HEAD_BYTES:
        return sniff_bytes(head)
    looks_like = _binary_looks_like(head)
    if looks_like:
        raise _reject(looks_like)
    return _classify_text(head)
