"""safe_name and suffix_of on awkward names."""

from __future__ import annotations

import os

import pytest

from event_pipeline.inbox.names import safe_name, suffix_of


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("participants.csv", "participants.csv"),
        ("Liste des inscrits – été 2024.xlsx", "Liste des inscrits _ été 2024.xlsx"),
        ("참가자 명단.csv", "참가자 명단.csv"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("a\\b/c.csv", "a_b_c.csv"),
        ("two\nlines\t.csv", "two_lines_.csv"),
        (os.fsdecode(b"\xff\xfe.csv"), "__.csv"),
        (".hidden.csv", "hidden.csv"),
        ("...", "file"),
        ("", "file"),
        ("नमस्ते.csv", "नमस्ते.csv"),
    ],
)
def test_safe_name(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_long_names_are_cut_on_a_character_boundary_keeping_the_suffix() -> None:
    name = "가" * 80 + "a" * 11 + ".csv"
    assert len(os.fsencode(name)) == 255
    safe = safe_name(name)
    raw = safe.encode("utf-8")
    assert len(raw) <= 120 and safe.endswith(".csv")
    assert safe == "가" * 38 + ".csv"  # 38 * 3 + 4 = 118: a 39th would split a character
    for max_bytes in range(4, 40):
        cut = safe_name(name, max_bytes=max_bytes)
        assert len(cut.encode("utf-8")) <= max_bytes and cut


def test_tiny_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        safe_name("a.csv", max_bytes=3)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", ".csv"),
        ("A.XLSX", ".xlsx"),
        ("archive.tar.gz", ".gz"),
        ("noext", ""),
        (".bashrc", ""),
        ("a.", ""),
        ("a.c$v", ""),
        ("a.éxt", ""),
        ("a.abcdefghij", ""),
        ("a.abcdefghi", ".abcdefghi"),
        (os.fsdecode(b"a.\xff"), ""),
    ],
)
def test_suffix_of(name: str, expected: str) -> None:
    assert suffix_of(name) == expected
