"""Property: any table of printable text written as CSV reads back cell for cell.

What read_table is allowed to change, and so what the property accounts for:
- rows whose cells are all whitespace (``str.isspace``) or empty are dropped and counted as
  ``empty_rows``, so generated rows always have a non-blank cell;
- nothing else: no stripping, no NA conversion, line breaks inside quoted cells kept verbatim.
cp949 bytes that happen to be valid UTF-8 are read as UTF-8 (UTF-8 is tried first, by design),
so those rare inputs are excluded rather than "fixed".
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from event_pipeline.intake import read_table

HEADER = ["name", "email", "memo", "비고"]
SPECIALS = st.sampled_from(["\n", "\r", "\t", " ", '"', ",", ";", "|", "\u00a0", "\u3000", "'"])
ANY_PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc", "Co", "Cn"))
CP949_FRIENDLY = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),  # every Hangul syllable is in cp949
    st.sampled_from(["一", "漢", "·", "※", "ㄱ", "ㅏ"]),
)


def _cp949_ok(text: str) -> bool:
    try:
        text.encode("cp949")
    except UnicodeEncodeError:
        return False
    return True


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, str, str, list[list[str]]]:
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp949", "utf-16"]))
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    width = draw(st.integers(min_value=2, max_value=4))
    alphabet = st.one_of(CP949_FRIENDLY if encoding == "cp949" else ANY_PRINTABLE, SPECIALS)
    cell = st.text(alphabet=alphabet, max_size=12)
    if encoding == "cp949":
        cell = cell.filter(_cp949_ok)
    row = st.lists(cell, min_size=width, max_size=width).filter(lambda r: any(c.strip() for c in r))
    rows = draw(st.lists(row, min_size=1, max_size=8))
    return encoding, delimiter, terminator, [HEADER[:width], *rows]


def _start_lines(text: str, delimiter: str) -> list[int]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    starts, line = [], 1
    for _record in reader:
        starts.append(line)
        line = reader.line_num + 1
    return starts[1:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_csv_roundtrip(case: tuple[str, str, str, list[list[str]]]) -> None:
    encoding, delimiter, terminator, rows = case
    buffer = io.StringIO()
    # csv.writer only quotes the characters of *its* line terminator: with "\n" it would leave a
    # bare "\r" unquoted, which no RFC 4180 reader can tell from a line end. Quote all then.
    if terminator == "\r\n":
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=terminator)
    else:
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=terminator, quoting=csv.QUOTE_ALL)
    writer.writerows(rows)
    text = buffer.getvalue()
    payload = text.encode(encoding)
    if encoding == "cp949":
        try:
            payload.decode("utf-8")
            assume(False)
        except UnicodeDecodeError:
            pass
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(payload)
        table = read_table(path)

    header, body = rows[0], rows[1:]
    assert table.delimiter == delimiter
    assert table.encoding == (encoding if encoding != "cp949" or not text.isascii() else "utf-8")
    assert table.rows == len(body)
    assert table.empty_rows == 0
    assert table.frame["name"].tolist() == [r[0] for r in body]
    assert table.frame["email"].tolist() == [r[1] for r in body]
    extras = [json.loads(x) for x in table.frame["extra"]]
    assert extras == [dict(zip(header[2:], r[2:], strict=True)) for r in body]
    assert table.frame["source_row"].tolist() == _start_lines(text, delimiter)
