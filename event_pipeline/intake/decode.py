"""Bytes to text for delimited files, with strict decoders only.

Order matters: a BOM is authoritative; then BOM-less UTF-16 (its NUL pattern is unmistakable);
then strict UTF-8 (cannot misfire on real cp949 text); then strict cp949, the encoding Korean
Excel writes "CSV" in (cp949 is a superset of EUC-KR, so EUC-KR files decode too, while euc_kr
would choke on the extra Hangul cp949 adds). Nothing is guessed: a statistical detector once
read a cp949 file with one stray byte as cp1257, and the re-import turned Korean names into
mojibake. A file no strict decoder accepts is refused with the offset of the bad byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from event_pipeline.intake.errors import IntakeError
from event_pipeline.intake.messages import Phrase

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_LE_BOM = b"\xff\xfe"
UTF16_BE_BOM = b"\xfe\xff"
# Only the offending byte is shown: its neighbours are a participant's name or address in a
# Korean file, and rejection reasons go to Dagster's event log, where no participant data may.
CONTEXT_BYTES = 0
# Enough text to tell which encoding a file was meant to be in; the offsets come from full decodes.
_SAMPLE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str


def byte_context(data: bytes, offset: int) -> str:
    """Hex of the bytes around ``offset``, the byte at ``offset`` in brackets: ``2c 61 [80] 62``."""
    before = data[max(0, offset - CONTEXT_BYTES) : offset]
    after = data[offset + 1 : offset + 1 + CONTEXT_BYTES]
    return " ".join([*(f"{b:02x}" for b in before), f"[{data[offset]:02x}]", *(f"{b:02x}" for b in after)])


def _undecodable(key: str, encoding: str, data: bytes, offset: int, **detail: object) -> IntakeError:
    context = Phrase("context", {"hex": byte_context(data, offset)})
    return IntakeError.of(
        key, {"encoding": encoding, "offset": offset, **detail}, encoding=encoding, offset=offset, context=context
    )


def bomless_utf16(data: bytes) -> str | None:
    """ "utf-16-le"/"utf-16-be" if BOM-less bytes look like UTF-16 text, else None.

    ASCII characters (digits, @, commas, line breaks) put a NUL in the high byte of each code
    unit, so UTF-16 text has many NULs on one byte parity. Some Hangul code units end in 00
    too (U+B300 대, U+D300 팀), so the other parity may have a few.
    """
    sample = data[: min(len(data), 4096) // 2 * 2]
    if len(sample) < 4:
        return None
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    dominant, other = max(even_nuls, odd_nuls), min(even_nuls, odd_nuls)
    if dominant < (len(sample) // 2) * 0.2 or other > dominant * 0.1:
        return None
    return "utf-16-le" if odd_nuls > even_nuls else "utf-16-be"


def _invalid_bytes(sample: bytes, encoding: str) -> int:
    # surrogateescape turns each undecodable byte into one lone surrogate, which UTF-32 cannot
    # encode, so "ignore" drops exactly those: a count at C speed.
    text = sample.decode(encoding, errors="surrogateescape")
    return len(text) - len(text.encode("utf-32-le", errors="ignore")) // 4


def decode_text(data: bytes) -> DecodedText:
    """Decode a delimited-text file; raise IntakeError ("undecodable") with the byte offset if nothing fits."""
    if data.startswith(UTF8_BOM):
        try:
            return DecodedText(data[3:].decode("utf-8"), "utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _undecodable("undecodable.declared", "UTF-8 (with BOM)", data, 3 + exc.start) from exc
    if data.startswith((UTF16_LE_BOM, UTF16_BE_BOM)):
        try:
            return DecodedText(data.decode("utf-16"), "utf-16")
        except UnicodeDecodeError as exc:
            raise _undecodable("undecodable.declared", "UTF-16", data, exc.start) from exc
    utf16 = bomless_utf16(data)
    if utf16 is not None:
        try:
            return DecodedText(data.decode(utf16), utf16)
        except UnicodeDecodeError as exc:
            raise _undecodable("undecodable.declared", "UTF-16", data, exc.start) from exc
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as exc:
        utf8_offset = exc.start
    try:
        return DecodedText(data.decode("cp949"), "cp949")
    except UnicodeDecodeError as exc:
        cp949_offset = exc.start
    # Report the bad byte for the encoding the file was meant to be in: a cp949 file with one stray
    # byte has that one invalid byte under cp949 but fails on nearly every Hangul syllable as UTF-8,
    # and the reverse holds for UTF-8. Ties (mostly ASCII) go to UTF-8, what we ask people to use.
    sample = data[:_SAMPLE_BYTES]
    korean = _invalid_bytes(sample, "cp949") < _invalid_bytes(sample, "utf-8")
    encoding, offset = ("cp949", cp949_offset) if korean else ("UTF-8", utf8_offset)
    raise _undecodable("undecodable", encoding, data, offset, utf8_offset=utf8_offset, cp949_offset=cp949_offset)
