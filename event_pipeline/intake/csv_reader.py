"""Delimited text to a RawGrid, with pandas' C parser for speed and exact source line numbers."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd

from event_pipeline.intake.errors import IntakeError
from event_pipeline.intake.table import RawGrid

_FIELDS_SEEN = re.compile(r"Expected \d+ fields in line (\d+), saw (\d+)")
_NEWLINE = r"\r\n|\r|\n"


def _estimate_width(payload: bytes, delimiter: str) -> int:
    """Most delimiters on any physical line, + 1, counted with numpy over the UTF-8 bytes.

    Quoted delimiters only over-count (an all-empty column, dropped later). Records spanning
    lines can be wider; read_delimited widens and retries when pandas says so.
    """
    raw = np.frombuffer(payload, dtype=np.uint8)
    breaks = np.flatnonzero((raw == 0x0A) | (raw == 0x0D))
    delimiters = np.flatnonzero(raw == ord(delimiter))
    if delimiters.size == 0:
        return 1
    per_line = np.bincount(np.searchsorted(breaks, delimiters))
    return int(per_line.max()) + 1


def _parse(payload: bytes, delimiter: str, width: int) -> pd.DataFrame:
    return pd.read_csv(
        io.BytesIO(payload),
        sep=delimiter,
        header=None,
        names=list(range(width)),
        index_col=False,
        dtype=str,
        # Values stay text exactly as written: "NA", "null", "" and "007" are data, not NaN/7.
        na_filter=False,
        keep_default_na=False,
        skip_blank_lines=False,
        skipinitialspace=False,
        quotechar='"',
        doublequote=True,
        engine="c",
        encoding="utf-8",
        encoding_errors="strict",
    )


def _source_rows(cells: pd.DataFrame) -> np.ndarray:
    """1-based line on which each record starts.

    Without newlines inside quoted values record i is line i + 1 (blank lines are kept as
    records, so they count). Otherwise each record advances by 1 + the line breaks inside its
    cells, which pandas keeps verbatim; that stays vectorised and on the C parser.
    """
    n = len(cells)
    extra = np.zeros(n, dtype=np.int64)
    for col in cells.columns:
        series = cells[col]
        has_break = series.str.contains("[\r\n]", regex=True)
        if has_break.any():
            extra += np.where(has_break, series.str.count(_NEWLINE), 0).astype(np.int64)
    starts = np.empty(n, dtype=np.int64)
    if n:
        starts[0] = 1
        np.cumsum(extra[:-1] + 1, out=starts[1:])
        starts[1:] += 1
    return starts


def read_delimited(text: str, delimiter: str) -> RawGrid:
    """Parse RFC 4180 text (quoted delimiters, "" escapes, embedded newlines, CRLF/CR/LF)."""
    payload = text.encode("utf-8")
    width = _estimate_width(payload, delimiter)
    for _attempt in range(8):
        try:
            cells = _parse(payload, delimiter, width)
            break
        except pd.errors.ParserError as exc:
            message = str(exc)
            seen = _FIELDS_SEEN.search(message)
            if seen and int(seen.group(2)) > width:
                width = int(seen.group(2))
                continue
            raise _malformed(message) from exc
        except pd.errors.EmptyDataError as exc:
            raise IntakeError.of("empty") from exc
    else:  # pragma: no cover - would need > 8 ever-wider multi-line records
        raise IntakeError.of("malformed_csv.widths")
    cells.columns = pd.RangeIndex(cells.shape[1])
    if b'"' not in payload:
        # Without quotes no value can hold a line break: record i is line i + 1.
        return RawGrid(cells=cells, source_rows=np.arange(1, len(cells) + 1, dtype=np.int64))
    return RawGrid(cells=cells, source_rows=_source_rows(cells))


def _malformed(message: str) -> IntakeError:
    """pandas' C parser messages name lines and field counts, never cell text."""
    match = re.search(r"EOF inside string starting at row (\d+)", message)
    if match:
        record = int(match.group(1)) + 1
        return IntakeError.of("malformed_csv.unclosed_quote", {"error": message, "record": record}, record=record)
    return IntakeError.of("malformed_csv", {"error": message}, error=message.split("C error: ")[-1])
