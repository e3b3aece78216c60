"""The sidecar manifest is typed strictly: "false" means false."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from event_pipeline.inbox.manifest import Manifest, ManifestError, manifest_path, read_manifest


def _with_manifest(tmp_path: Path, text: str | bytes) -> Path:
    data = tmp_path / "participants.csv"
    data.write_text("email\n")
    raw = text.encode("utf-8") if isinstance(text, str) else text
    manifest_path(data).write_bytes(raw)
    return data


def test_manifest_path(tmp_path: Path) -> None:
    assert manifest_path(tmp_path / "a.csv") == tmp_path / "a.csv.json"


def test_no_manifest_means_defaults(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "participants.csv") == Manifest(strict=False, sheet=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"strict": true, "sheet": "Sheet2"}', Manifest(True, "Sheet2")),
        ('{"strict": false}', Manifest(False)),
        ('{"strict": "false"}', Manifest(False)),  # bool("false") is True: the old reader's bug
        ('{"strict": "FALSE"}', Manifest(False)),
        ('{"strict": "No"}', Manifest(False)),
        ('{"strict": "0"}', Manifest(False)),
        ('{"strict": "True"}', Manifest(True)),
        ('{"strict": "yes"}', Manifest(True)),
        ('{"strict": "1"}', Manifest(True)),
        ('{"sheet": null}', Manifest()),
        ('{"sheet": "Données été"}', Manifest(sheet="Données été")),
        ("{}", Manifest()),
        ('\ufeff{"strict": true}', Manifest(True)),
    ],
)
def test_typed_values(tmp_path: Path, text: str, expected: Manifest) -> None:
    assert read_manifest(_with_manifest(tmp_path, text)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"strict": "maybe"}', 'participants.csv.json: "strict" must be true or false, not "maybe"'),
        ('{"strict": 1}', 'participants.csv.json: "strict" must be true or false, not the number 1'),
        ('{"strict": null}', 'participants.csv.json: "strict" must be true or false, not null'),
        ('{"strict": [true]}', 'participants.csv.json: "strict" must be true or false, not a list'),
        ('{"sheet": 2}', 'participants.csv.json: "sheet" must be a sheet name in quotes, not the number 2'),
        ('{"sheet": true}', 'participants.csv.json: "sheet" must be a sheet name in quotes, not true'),
        (
            '{"strict": true, "Sheet": "x", "mode": 1}',
            'participants.csv.json: unknown key(s) "Sheet", "mode"; allowed keys: "sheet", "strict"',
        ),
        ("[1, 2]", "participants.csv.json: must be a JSON object"),
        ('{"strict": true,}', "participants.csv.json: is not valid JSON: "),
    ],
)
def test_bad_values_name_file_key_and_what_was_found(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        read_manifest(_with_manifest(tmp_path, text))
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_invalid_json_reports_its_position(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"participants\.csv\.json: is not valid JSON: .* at line 2 column 13$"):
        read_manifest(_with_manifest(tmp_path, '{\n  "strict": tru\n}'))


def test_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(_with_manifest(tmp_path, b'{"sheet": "\xff"}'))


def test_too_large(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="larger than 64 KiB"):
        read_manifest(_with_manifest(tmp_path, '{"sheet": "' + "x" * 70_000 + '"}'))


def test_a_symlinked_manifest_is_refused_without_reading_it(tmp_path: Path) -> None:
    data = tmp_path / "participants.csv"
    data.write_text("email\n")
    target = tmp_path / "elsewhere.json"
    target.write_text('{"strict": "secret-value"}')
    manifest_path(data).symlink_to(target)
    with pytest.raises(ManifestError, match="is a symbolic link") as caught:
        read_manifest(data)
    assert "secret-value" not in str(caught.value)


def test_a_fifo_manifest_is_refused_without_blocking(tmp_path: Path) -> None:
    data = tmp_path / "participants.csv"
    os.mkfifo(manifest_path(data))
    with pytest.raises(ManifestError, match="not a regular file"):
        read_manifest(data)


def test_a_name_too_long_for_a_sidecar_has_no_manifest(tmp_path: Path) -> None:
    data = tmp_path / ("가" * 83 + "ab.csv")  # 255 bytes: "<name>.json" cannot exist
    data.write_bytes(b"name,email\n")
    assert read_manifest(data) == Manifest()
