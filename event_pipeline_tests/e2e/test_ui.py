"""The Dagster UI, rendered by headless Chromium, shows the upload's run and its 8-asset lineage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from event_pipeline import settings
from event_pipeline.defs.assets import upload_assets
from event_pipeline_tests.support.participants import sample, write_csv
from event_pipeline_tests.support.pipeline import make_event, run_import
from event_pipeline_tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.browser]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
    "--window-size=1400,900",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    return found


@pytest.fixture
def webserver(var_home: settings.Paths) -> Iterator[str]:
    port = free_port()
    log = var_home.home / "webserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-webserver"),
                "-w",
                str(REPO / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dagster-webserver did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _render(chromium: str, url: str, profile: Path, *extra: str) -> str:
    out = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return out.stdout.decode("utf-8", errors="replace")


def test_run_and_lineage_show_in_the_ui(webserver: str, tmp_path: Path) -> None:
    chromium = _chromium()
    make_event()
    with dg.DagsterInstance.get() as instance:
        _, result = run_import(instance, write_csv(tmp_path / "ui.csv", sample(8, invalid=1, duplicates=1).rows))
    assert result.success

    lineage_url = f"{webserver}/asset-groups/participant_import@event_pipeline:event_pipeline"
    dom = _render(chromium, lineage_url, tmp_path / "p1", "--dump-dom")
    for asset in upload_assets:
        assert f">{asset.key.to_user_string()}<" in dom, f"{asset.key} not in the lineage page"
    _render(chromium, lineage_url, tmp_path / "p2", f"--screenshot={tmp_path / 'lineage.png'}")
    assert (tmp_path / "lineage.png").stat().st_size > 10_000
    runs = _render(chromium, f"{webserver}/runs", tmp_path / "p3", "--dump-dom")
    assert "import_upload" in runs and ">Success<" in runs
