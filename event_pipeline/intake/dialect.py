"""Delimiter sniffing for delimited text."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
SAMPLE_CHARS = 64 * 1024
SAMPLE_LINES = 50
# Excel's own delimiter hint as a first line ("sep=;"); the line itself is then an ignored title row.
_SEP_HINT = re.compile(r'sep=([,;\t|])[,;\t|"]*\r?\n')


def _score(sample: str, delimiter: str) -> tuple[int, int]:
    """(rows agreeing on the most common width > 1, that width) for one candidate.

    The csv module does the quote handling, so delimiters inside quoted values do not count.
    Under the true delimiter every record has the same width (Excel pads even title rows with
    trailing delimiters); a wrong candidate only splits the rows that happen to contain it, and
    never the header of known column names.
    """
    # newline="": records end at CR too (Excel for Mac's "CSV (Macintosh)"); StringIO's default
    # splits at LF only, and csv then refuses the one long line, so no candidate ever scored.
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, quotechar='"', strict=False)
    widths = []
    try:
        for i, row in enumerate(reader):
            if i >= SAMPLE_LINES:
                break
            if len(row) > 1:
                widths.append(len(row))
    except csv.Error:
        return (0, 0)
    if not widths:
        return (0, 0)
    width, agreeing = Counter(widths).most_common(1)[0]
    return (agreeing, width)


def sniff_delimiter(text: str) -> str:
    """Pick among , TAB ; | the delimiter that splits the first lines most consistently.

    An Excel ``sep=X`` first line wins. Falls back to "," (a one-column file has no delimiter to
    find; header detection then explains what is missing).
    """
    hinted = _SEP_HINT.match(text)
    if hinted:
        return hinted.group(1)
    sample = text[:SAMPLE_CHARS]
    if len(text) > SAMPLE_CHARS:
        # Drop the probably-cut last line so it does not skew the counts.
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[:cut]
    best = ","
    best_score = (0, 0)
    for delimiter in CANDIDATE_DELIMITERS:
        score = _score(sample, delimiter)
        if score > best_score:
            best, best_score = delimiter, score
    return best
