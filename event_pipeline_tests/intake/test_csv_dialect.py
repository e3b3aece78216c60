from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from event_pipeline.intake import IntakeError, read_table

from .corpus import write_csv


def _write(tmp_path: Path, text: str, name: str = "a.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters(tmp_path: Path, delimiter: str) -> None:
    rows = [
        ["name", "email", "memo"],
        ["Kim, Jr.", "k@example.com", "a;b|c\td"],  # other candidates inside (quoted) values
        ["Lee", "l@example.com", ""],
    ]
    table = read_table(write_csv(tmp_path / "a.csv", rows, delimiter=delimiter))
    assert table.delimiter == delimiter
    assert table.frame["name"].tolist() == ["Kim, Jr.", "Lee"]
    assert [json.loads(x) for x in table.frame["extra"]] == [{"memo": "a;b|c\td"}, {"memo": ""}]


def test_semicolon_with_commas_in_unquoted_values(tmp_path: Path) -> None:
    # European Excel: ';' delimiter, decimal commas everywhere in the data, nothing quoted.
    text = "name;email;fee\nKim;k@example.com;1,50\nLee;l@example.com;2,75\nPark;p@example.com;3,00\n"
    table = read_table(_write(tmp_path, text))
    assert table.delimiter == ";"
    assert [json.loads(x)["fee"] for x in table.frame["extra"]] == ["1,50", "2,75", "3,00"]


def test_rfc4180_quoting_and_source_rows_after_multiline_values(tmp_path: Path) -> None:
    text = (
        "name,email,memo\r\n"  # line 1
        '"Kim, Minsu",k@example.com,"He said ""hi"""\r\n'  # line 2
        'Lee,l@example.com,"line one\r\nline two\r\nline three"\r\n'  # lines 3-5
        "Park,p@example.com,plain\r\n"  # line 6
        '"Choi\nJ",c@example.com,"x\ny"\r\n'  # lines 7-9 (LF inside, CRLF outside)
        "\r\n"  # line 10: blank
        "Jung,j@example.com,after blank\r\n"  # line 11
    )
    table = read_table(_write(tmp_path, text))
    frame = table.frame
    assert frame["source_row"].tolist() == [2, 3, 6, 7, 11]
    assert frame["name"].tolist() == ["Kim, Minsu", "Lee", "Park", "Choi\nJ", "Jung"]
    assert json.loads(frame["extra"][0]) == {"memo": 'He said "hi"'}
    assert json.loads(frame["extra"][1]) == {"memo": "line one\r\nline two\r\nline three"}
    assert table.empty_rows == 1
    assert table.rows == 5


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
def test_line_endings(tmp_path: Path, newline: str) -> None:
    lines = ["name,email", "Kim,k@example.com", "", 'Lee,"l@example.com"', "Park,p@example.com"]
    table = read_table(_write(tmp_path, newline.join(lines) + newline))
    assert table.frame["source_row"].tolist() == [2, 4, 5]
    assert table.frame["email"].tolist() == ["k@example.com", "l@example.com", "p@example.com"]
    assert table.empty_rows == 1


def test_cr_only_with_multiline_value(tmp_path: Path) -> None:
    text = 'name,email,memo\rKim,k@example.com,"a\rb"\rLee,l@example.com,c\r'
    table = read_table(_write(tmp_path, text))
    assert table.frame["source_row"].tolist() == [2, 4]


def test_values_stay_text(tmp_path: Path) -> None:
    text = "name,email,phone,code\nNA,null,007,0001\nNone,NaN,01012345678,1e5\n"
    table = read_table(_write(tmp_path, text))
    assert table.frame[["name", "email", "phone"]].values.tolist() == [
        ["NA", "null", "007"],
        ["None", "NaN", "01012345678"],
    ]
    assert [json.loads(x)["code"] for x in table.frame["extra"]] == ["0001", "1e5"]
    assert all(isinstance(v, str) for v in table.frame["phone"])


def test_cells_are_not_stripped(tmp_path: Path) -> None:
    table = read_table(_write(tmp_path, "name,email\n  Kim  , k@example.com \n"))
    assert table.frame[["name", "email"]].values.tolist() == [["  Kim  ", " k@example.com "]]


def test_trailing_empty_fields_and_ragged_rows(tmp_path: Path) -> None:
    text = "name,email,\nKim,k@example.com,\nLee,l@example.com,,,\nPark\n"
    table = read_table(_write(tmp_path, text))
    assert table.frame[["name", "email"]].values.tolist() == [
        ["Kim", "k@example.com"],
        ["Lee", "l@example.com"],
        ["Park", ""],
    ]
    assert table.extra_columns == []
    assert table.warnings == []


def test_data_beyond_the_header_is_kept_and_warned(tmp_path: Path) -> None:
    text = "name,email\nKim,k@example.com,VIP\nLee,l@example.com\n"
    table = read_table(_write(tmp_path, text))
    assert table.extra_columns == ["(column C)"]
    assert [json.loads(x) for x in table.frame["extra"]] == [{"(column C)": "VIP"}, {"(column C)": ""}]
    assert table.warnings == ["Column C has data but no header; it is kept as extra data '(column C)'."]


def test_whitespace_only_rows_are_empty(tmp_path: Path) -> None:
    text = "name,email\nKim,k@example.com\n , \n\u00a0,\u3000\n,\nLee,l@example.com\n"
    table = read_table(_write(tmp_path, text))
    assert table.frame["source_row"].tolist() == [2, 6]
    assert table.empty_rows == 3


def test_unclosed_quote(tmp_path: Path) -> None:
    text = 'name,email\nKim,k@example.com\n"Lee,l@example.com\nPark,p@example.com\n'
    with pytest.raises(IntakeError) as info:
        read_table(_write(tmp_path, text))
    assert info.value.detail["code"] == "malformed_csv"
    assert str(info.value).startswith("The CSV file is malformed and cannot be read: a quoted value is never closed")


def test_wide_multiline_record_wider_than_any_line(tmp_path: Path) -> None:
    # Each physical line has at most 2 commas but the record has 6 fields: pandas needs a retry.
    text = 'name,email,a\nKim,k@example.com,"x\n",b,"\n",c\n'
    table = read_table(_write(tmp_path, text))
    assert table.frame["source_row"].tolist() == [2]
    # Column E has neither a header nor any non-blank value, so it is padding and dropped.
    assert json.loads(table.frame["extra"][0]) == {"a": "x\n", "(column D)": "b", "(column F)": "c"}


def test_source_rows_match_csv_module_on_random_multiline_file(tmp_path: Path) -> None:
    import csv
    import io

    rng = random.Random(7)
    rows = [["name", "email", "memo"]]
    for i in range(20_000):
        memo = rng.choice(["", "plain", "a,b", 'q"uote', "one\ntwo", "x\r\ny\r\nz", "\n"])
        rows.append([f"n{i}", f"u{i}@example.com", memo])
        if rng.random() < 0.01:
            rows.append(["", "", ""])
    path = write_csv(tmp_path / "big.csv", rows, lineterminator="\r\n")
    # Reference: the line each record starts on, from the csv module's own line counter.
    expected = []
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))
    start = 1
    for record in reader:
        if any(c.strip() for c in record) and record[0] != "name":
            expected.append(start)
        start = reader.line_num + 1
    table = read_table(path)
    assert table.frame["source_row"].tolist() == expected
    assert table.rows == 20_000


def test_excel_sep_hint_line(tmp_path: Path) -> None:
    # Only ';' appears as a field separator, but the data would also split on ',' - the hint decides.
    text = "sep=;\r\nname;email;memo\r\nKim;k@example.com;a,b\r\n"
    table = read_table(_write(tmp_path, text))
    assert table.delimiter == ";"
    assert table.header_row == 2
    assert table.frame["source_row"].tolist() == [3]
    assert [json.loads(x) for x in table.frame["extra"]] == [{"memo": "a,b"}]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_cr_only_line_ends_do_not_hide_the_delimiter(tmp_path: Path, delimiter: str) -> None:
    # Found by the intake fuzzer (faults/test_fuzz_intake.py): with CR-only line ends (Excel for
    # Mac's "CSV (Macintosh)") the delimiter sniffer saw one unreadable line, fell back to ',' and
    # the file was refused as having no header row.
    data = b"name;email\rKim;kim@example.com\r".replace(b";", delimiter.encode())
    path = tmp_path / "mac.csv"
    path.write_bytes(data)
    table = read_table(path)
    assert table.delimiter == delimiter
    assert table.frame["name"].tolist() == ["Kim"]
    assert table.frame["source_row"].tolist() == [2]
