"""Decide what a file is from its bytes, never from its name.

Organisers rename files freely (an XLSX saved as ``.csv``, an HTML export named ``.xls``), so
the name is ignored. Sniffing only picks the reader (text, XLSX or XLS library) and refuses
what is certainly not a readable spreadsheet, with a message saying what it looks like, because
"unsupported format" alone sends people in circles. Whether a plausible workbook really reads
is left to the parser library, whose error is then reported.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from event_pipeline.intake.decode import bomless_utf16
from event_pipeline.intake.errors import IntakeError, library_error
from event_pipeline.intake.messages import Phrase
from event_pipeline.intake.ole import OleError, directory_names
from event_pipeline.intake.zipguard import ZIP_DAMAGE

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")

# (magic prefix, intake.messages "looks_like.*" key). Checked in order, first match wins.
_BINARY_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "pdf"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"\x7fELF", "elf"),
    (b"{\\rtf", "rtf"),
    (b"%!PS", "ps"),
    (b"SQLite format 3\x00", "sqlite"),
    (b"\x00\x00\x01\x00", "icon"),
    (b"HWP Document File", "hwp"),
)

# Magics made of printable ASCII could begin a real CSV title row ("MZ세대 행사 ..."), so they only
# count together with the structure that follows them.
_TEXTUAL_MAGICS: tuple[tuple[bytes, int, tuple[bytes, ...], str], ...] = (
    (b"MZ", 0x3C, (), "exe"),
    (b"BZh", 4, (b"1AY&SY",), "bzip2"),
    (b"RIFF", 8, (b"WEBP", b"WAVE", b"AVI "), "riff"),
)

HEAD_BYTES = 64 * 1024
_CONTROL = "".join(map(chr, range(32)))
# [Content_Types].xml is a few KB; reading more of it would only feed a zip bomb.
_CONTENT_TYPES_BYTES = 256 * 1024
# Main-part content types of OOXML packages that are certainly not a readable workbook.
_OOXML_NOT_XLSX = (
    (b"sheet.binary.macroenabled.main", None),
    (b"wordprocessingml.document.main", "docx"),
    (b"wordprocessingml.template.main", "docx"),
    (b"presentationml.presentation.main", "pptx"),
    (b"presentationml.slideshow.main", "pptx"),
)


def _reject(looks_like: str, hint: str = "") -> IntakeError:
    return IntakeError.of(
        "not_a_table",
        {"looks_like": Phrase(f"looks_like.{looks_like}").english()},
        looks_like=Phrase(f"looks_like.{looks_like}"),
        hint=Phrase(hint),
    )


def _unsupported(fmt: str) -> IntakeError:
    return IntakeError.of("unsupported_format", {"format": fmt}, format=Phrase(f"format.{fmt}"))


def _password_protected() -> IntakeError:
    return IntakeError.of("password_protected")


# RuntimeError: encrypted members; NotImplementedError: exotic compression methods.
_ZIP_UNREADABLE: tuple[type[Exception], ...] = (*ZIP_DAMAGE, NotImplementedError, RuntimeError)


def _classify_zip(source: Path | io.BytesIO) -> str:
    """ "xlsx" for anything a workbook library may read; the parser then decides."""
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            mimetype = zf.read("mimetype")[:100] if "mimetype" in names else b""
            content_types = b""
            if "[Content_Types].xml" in names:
                with zf.open("[Content_Types].xml") as member:
                    content_types = member.read(_CONTENT_TYPES_BYTES).lower()
    except _ZIP_UNREADABLE as exc:
        raise IntakeError.of("corrupt.zip", {"format": "zip", "error": library_error(exc)}) from exc
    if "xl/workbook.bin" in names and "xl/workbook.xml" not in names:
        raise _unsupported("xlsb")
    if mimetype.startswith(b"application/vnd.oasis.opendocument.spreadsheet"):
        raise _unsupported("ods")
    if "word/document.xml" in names:
        raise _reject("docx")
    if "ppt/presentation.xml" in names:
        raise _reject("pptx")
    if mimetype.startswith(b"application/vnd.oasis.opendocument"):
        raise _reject("odf")
    if any(n.startswith("Contents/") for n in names):
        raise _reject("hwpx")
    if "xl/workbook.xml" in names:
        return "xlsx"
    if content_types:
        # Parts need not sit under xl/: [Content_Types].xml names the main part, and the libraries
        # find it through the relationships. Refuse only what the package says it is not.
        for marker, looks_like in _OOXML_NOT_XLSX:
            if marker in content_types:
                raise _reject(looks_like) if looks_like else _unsupported("xlsb")
        return "xlsx"
    raise _reject("zip", "hint.zip")


def _classify_ole2(data: bytes) -> str:
    """ "xls" unless the directory shows an encrypted package or another Office document."""
    try:
        # Case-insensitive like the format itself; property streams start with a control character.
        names = {name.lstrip(_CONTROL).casefold() for name in directory_names(data)}
    except OleError:
        return "xls"  # a damaged directory: let the XLS parser say what is wrong
    # Excel saves a password-protected XLSX as a compound file holding the encrypted package.
    if {"encryptioninfo", "encryptedpackage"} <= names:
        raise _password_protected()
    if names & {"workbook", "book"}:
        return "xls"
    if "worddocument" in names:
        raise _reject("doc")
    if "powerpoint document" in names:
        raise _reject("ppt")
    if "hwpsummaryinformation" in names or "fileheader" in names:
        raise _reject("hwp")
    raise _reject("ole")


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
        raise _reject("html", "hint.html")
    if lead.startswith(b"<?xml"):
        if b"urn:schemas-microsoft-com:office:spreadsheet" in stripped.lower():
            raise _reject("xml_2003", "hint.xml_2003")
        raise _reject("xml")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")) and bomless_utf16(head) is None:
        offset = head.index(b"\x00")
        raise IntakeError.of("not_a_table.binary", {"looks_like": "binary data", "offset": offset}, offset=offset)
    return "csv"


def sniff_bytes(data: bytes) -> str:
    """Classify in-memory content: ``"csv"``, ``"xlsx"`` or ``"xls"``; raise IntakeError otherwise."""
    if not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise IntakeError.of("empty")
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
    XLSX, HTML saved as .xls, ...). Reads the head of the file; for ZIP the central directory
    and [Content_Types].xml; for OLE2 the whole file (to tell a workbook from a Word file or an
    encrypted one).
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        raise IntakeError.of("empty")
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
