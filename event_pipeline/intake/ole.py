"""Names in an OLE2 compound file's directory, enough to tell an XLS from a DOC or an encrypted XLSX.

Only the directory is read (header, FAT, directory chain), never stream contents: deciding
what the file is, not parsing it, is all sniffing needs. Reading the real directory instead of
searching the bytes for names matters twice: names are case-insensitive (``WORKBOOK``), and a
UTF-16 cell text "EncryptedPackage" inside a workbook stream is not a stream.
"""

from __future__ import annotations

import struct

_END_OF_CHAIN = 0xFFFFFFFE
_HEADER_DIFAT = 109
_ENTRY = 128


class OleError(ValueError):
    """The directory cannot be read; ``offset`` is where the structure goes wrong."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (byte offset {offset})")
        self.offset = offset


def _u32s(data: bytes, offset: int, count: int) -> tuple[int, ...]:
    if offset < 0 or offset + 4 * count > len(data):
        raise OleError("sector beyond the end of the file", offset)
    return struct.unpack_from(f"<{count}I", data, offset)


def directory_names(data: bytes) -> list[str]:
    """Names of the streams and storages of a compound file (``data`` starts with the OLE2 magic)."""
    if len(data) < 512:
        raise OleError("file shorter than the compound file header", len(data))
    shift = struct.unpack_from("<H", data, 0x1E)[0]
    if shift not in (9, 12):
        raise OleError(f"invalid sector size 2^{shift}", 0x1E)
    size = 1 << shift
    per_sector = size // 4

    def at(sector: int) -> int:
        return (sector + 1) * size

    fat_count, first_dir = struct.unpack_from("<II", data, 0x2C)
    first_difat, difat_count = struct.unpack_from("<II", data, 0x44)
    fat_sectors = list(_u32s(data, 0x4C, _HEADER_DIFAT))
    sector = first_difat
    for _ in range(difat_count):  # DIFAT sectors: more FAT locations, last slot links to the next one
        if sector >= _END_OF_CHAIN:
            break
        *more, sector = _u32s(data, at(sector), per_sector)
        fat_sectors += more
    fat: list[int] = []
    for fat_sector in fat_sectors[:fat_count]:
        fat += _u32s(data, at(fat_sector), per_sector)

    names: list[str] = []
    seen: set[int] = set()
    sector = first_dir
    while sector != _END_OF_CHAIN:
        if sector in seen or sector >= len(fat):
            raise OleError(f"broken directory chain at sector {sector}", at(sector))
        seen.add(sector)
        start = at(sector)
        if start + size > len(data):
            raise OleError(f"directory sector {sector} beyond the end of the file", start)
        for entry in range(start, start + size, _ENTRY):
            name_bytes, kind = struct.unpack_from("<H", data, entry + 64)[0], data[entry + 66]
            if kind != 0 and 2 <= name_bytes <= 64:  # kind 0: unused slot
                names.append(data[entry : entry + name_bytes - 2].decode("utf-16-le", errors="replace"))
        sector = fat[sector]
    return names
