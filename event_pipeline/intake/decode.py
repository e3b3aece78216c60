"""Bytes to text for delimited files, reporting which encoding was used.

Order matters: a BOM is authoritative; then strict UTF-8 (cannot misfire on real cp949 text);
then strict cp949, the encoding Korean Excel writes "CSV" in (cp949 is a superset of EUC-KR, so
EUC-KR files decode too, while euc_kr would choke on the extra Hangul cp949 adds); only then a
statistical guess. Detectors are last because they misname Korean files (EUC-KR vs cp949).
"""

from __future__ import annotations

from dataclasses import dataclass

import charset_normalizer

from event_pipeline.intake.errors import IntakeError

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_LE_BOM = b"\xff\xfe"
UTF16_BE_BOM = b"\xfe\xff"


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str
    warnings: tuple[str, ...] = ()


def _undecodable(encoding: str, exc: UnicodeDecodeError, base: int = 0) -> IntakeError:
    offset = base + exc.start
    return IntakeError(
        f"The file says it is {encoding} text but it cannot be decoded: invalid bytes at byte offset {offset}. "
        "Please save it again as 'CSV UTF-8'.",
        {"code": "undecodable", "encoding": encoding, "offset": offset},
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


def decode_text(data: bytes) -> DecodedText:
    """Decode a delimited-text file; raise IntakeError with the byte offset if nothing fits."""
    if data.startswith(UTF8_BOM):
        try:
            return DecodedText(data[3:].decode("utf-8"), "utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _undecodable("UTF-8 (with BOM)", exc, base=3) from exc
    if data.startswith((UTF16_LE_BOM, UTF16_BE_BOM)):
        try:
            return DecodedText(data.decode("utf-16"), "utf-16")
        except UnicodeDecodeError as exc:
            raise _undecodable("UTF-16", exc) from exc
    utf16 = bomless_utf16(data)
    if utf16 is not None:
        try:
            return DecodedText(data.decode(utf16), utf16)
        except UnicodeDecodeError as exc:
            raise _undecodable("UTF-16", exc) from exc
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return DecodedText(data.decode("cp949"), "cp949")
    except UnicodeDecodeError as exc:
        cp949_error = exc
    guess = charset_normalizer.from_bytes(data).best()
    if guess is not None and guess.encoding:
        try:
            text = data.decode(guess.encoding)
        except (UnicodeDecodeError, LookupError):
            text = None
        if text is not None:
            return DecodedText(
                text,
                guess.encoding,
                (
                    f"The file is neither UTF-8 nor cp949; its encoding was guessed as {guess.encoding}. "
                    "Check that names look right, or save the file as 'CSV UTF-8'.",
                ),
            )
    offset = max(utf8_error.start, cp949_error.start)
    raise IntakeError(
        "The text in this file cannot be decoded as UTF-8 or Korean (cp949): invalid bytes at byte offset "
        f"{utf8_error.start} (UTF-8) / {cp949_error.start} (cp949). Please save it again as 'CSV UTF-8'.",
        {
            "code": "undecodable",
            "offset": offset,
            "utf8_offset": utf8_error.start,
            "cp949_offset": cp949_error.start,
        },
    )
