"""What an organiser sees in the Dagster UI, driven by Playwright in the Debian Chromium.

One upload with 3 invalid rows and 1 duplicate goes the way a dropped file goes (inbox sensor,
its run request's tags, the real import job), and a file for an unknown event is dropped too;
then a real ``dagster-webserver`` serves the instance and the test reads the pages as a person
would: the file name on the run, the reasons table and the masked preview on ``validated_rows``,
the check result on ``import_report``, the drop on ``upload_file``. No participant's name,
email or phone may appear in any page's HTML.

Screenshots go to the test's tmp dir; with ``EVENT_PIPELINE_SCREENSHOTS=docs/screenshots`` they
are also copied there for the README.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from event_pipeline import settings
from event_pipeline.defs.assets import upload_assets
from event_pipeline.defs.resources import default_resources
from event_pipeline.defs.sensors import FILE_TAG, inbox_sensor
from event_pipeline_tests.support.participants import Sample, csv_bytes, sample
from event_pipeline_tests.support.pipeline import add_partition, make_event, run_upload
from event_pipeline_tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
LOCATION = "event_pipeline@event_pipeline"
FILE_NAME = "participants_devcon.csv"
SLUG = "devcon-2026"
UNKNOWN_SLUG = "no-such-event"
# Page loads and GraphQL answers on a shared 2-core machine.
WAIT_MS = 60_000
pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@dataclass(frozen=True)
class Upload:
    upload_id: str
    run_id: str
    data: Sample


def _tick(instance: dg.DagsterInstance) -> dg.SensorResult:
    """One sensor evaluation, and what the daemon does with its result (partitions, asset events)."""
    result = inbox_sensor(dg.build_sensor_context(instance=instance, resources=default_resources()))
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        for key in request.partition_keys:
            add_partition(instance, key)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


@pytest.fixture
def upload(var_home: settings.Paths, monkeypatch: pytest.MonkeyPatch) -> Upload:
    # Settled after two looks, whatever time passes between them (the quiet period has its own tests).
    monkeypatch.setenv("EVENT_PIPELINE_SETTLE_SECONDS", "0")
    make_event(SLUG)
    data = sample(12, invalid=3, duplicates=1)
    (var_home.inbox / SLUG).mkdir(parents=True, exist_ok=True)
    (var_home.inbox / SLUG / FILE_NAME).write_bytes(csv_bytes(data.rows))
    (var_home.inbox / UNKNOWN_SLUG).mkdir(parents=True, exist_ok=True)
    (var_home.inbox / UNKNOWN_SLUG / "late-signups.csv").write_bytes(csv_bytes(data.rows[:2]))
    with dg.DagsterInstance.get() as instance:
        requests = [r for _ in range(2) for r in (_tick(instance).run_requests or [])]
        assert len(requests) == 1, requests
        request = requests[0]
        assert request.tags[FILE_TAG] == FILE_NAME
        upload_id = str(request.partition_key)
        result = run_upload(instance, upload_id, tags=dict(request.tags))
    assert result.success
    return Upload(upload_id=upload_id, run_id=result.run_id, data=data)


@pytest.fixture
def webserver(var_home: settings.Paths) -> Iterator[str]:
    port = free_port()
    log = var_home.home / "webserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-webserver"),
                *("-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)),
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
                # Polling a port that is not open yet: there is no state to wait on but the answer.
                time.sleep(0.5)
        yield url
    finally:
        # The whole session: the webserver and the code server it started.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


class Screens:
    """Screenshots into the test's tmp dir, and into EVENT_PIPELINE_SCREENSHOTS when it is set."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        wanted = os.environ.get("EVENT_PIPELINE_SCREENSHOTS")
        # Relative to the repository (an absolute path stays as it is).
        self.publish = REPO / wanted if wanted else None

    def take(self, page: Page, name: str) -> Path:
        shot = self.folder / f"{name}.png"
        page.screenshot(path=str(shot))
        if self.publish is not None:
            self.publish.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, self.publish / shot.name)
        return shot


def _participant_values(data: Sample) -> list[str]:
    """Every name, email and phone the file holds, as written and as the pipeline normalises them."""
    values = {cell.strip() for row in data.rows for cell in row[:3] if len(cell.strip()) >= 3}
    values |= {row[1].strip().lower() for row in data.rows if "@" in row[1]}
    values |= {"+82" + row[2].replace("-", "")[1:] for row in data.rows if row[2]}
    return sorted(values)


def _assert_no_participant_data(page: Page, data: Sample) -> None:
    html = page.content()
    leaked = [value for value in _participant_values(data) if value in html]
    assert not leaked, f"participant data in {page.url}: {leaked}"


def _metadata_row(page: Page, label: str) -> Locator:
    """The row of an asset event's metadata table whose label is ``label`` (innermost match)."""
    return page.locator("tr").filter(has=page.get_by_text(label, exact=True)).last


def test_organiser_sees_file_reasons_and_masked_preview(
    upload: Upload, webserver: str, browser: Browser, tmp_path: Path
) -> None:
    screens = Screens(tmp_path / "screenshots")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(WAIT_MS)
    # Assertions have their own timeout (5 s unless set): seen failing on the asset graph's first
    # load while CI's tests ran beside it.
    expect.set_options(timeout=WAIT_MS)
    # A new browser profile gets Dagster's newsletter prompt over whatever page it opens first.
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"), lambda: page.get_by_role("button", name="Skip").click()
    )
    data = upload.data
    invalid, (duplicate,) = data.invalid_rows, data.duplicate_rows
    first_of_duplicate = 2  # sample() repeats the first data row's email, in another case

    # The asset graph: the eight assets of one upload.
    page.goto(f"{webserver}/asset-groups/participant_import@{LOCATION}")
    for asset in upload_assets:
        expect(page.get_by_text(asset.key.to_user_string(), exact=True).first).to_be_visible()
    screens.take(page, "asset-graph")
    _assert_no_participant_data(page, data)

    # The run list names the file (the sensor's run tag), not only the upload's hash; so does the run.
    page.goto(f"{webserver}/runs")
    expect(page.get_by_text(f"{FILE_TAG}: {FILE_NAME}").first).to_be_visible()
    expect(page.get_by_text("Success").first).to_be_visible()
    _assert_no_participant_data(page, data)
    page.goto(f"{webserver}/runs/{upload.run_id}")
    page.get_by_role("button", name="View tags and config").click()
    expect(page.get_by_role("dialog").get_by_text(f"{FILE_TAG}: {FILE_NAME}")).to_be_visible()
    screens.take(page, "run")
    _assert_no_participant_data(page, data)

    # validated_rows for this upload: the reasons table and the masked preview.
    page.goto(f"{webserver}/assets/validated_rows?view=partitions&partition={upload.upload_id}")
    reasons = _metadata_row(page, "reasons")
    for row in [*invalid, duplicate]:
        expect(reasons.get_by_role("cell", name=str(row), exact=True)).to_be_visible()
    expect(reasons.get_by_text(f"repeats row {first_of_duplicate}")).to_be_visible()
    reasons.evaluate("row => row.scrollIntoView({block: 'start'})")
    screens.take(page, "reasons")
    preview = _metadata_row(page, "preview")
    expect(preview.get_by_text("p***@example.com").first).to_be_visible()
    expect(preview.get_by_text("010-****-5000")).to_be_visible()
    expect(preview.get_by_text(f"repeats row {first_of_duplicate}")).to_be_visible()
    _assert_no_participant_data(page, data)

    # import_report's check: the counts add up.
    page.goto(f"{webserver}/assets/import_report?view=checks")
    expect(page.get_by_text("counts_add_up").first).to_be_visible()
    expect(page.get_by_text("Passed").first).to_be_visible()
    _assert_no_participant_data(page, data)

    # The file for an unknown event started no run, and says so on upload_file.
    page.goto(f"{webserver}/assets/upload_file?view=events")
    page.get_by_role("img", name="observation").first.click()
    expect(_metadata_row(page, "reason").get_by_text(f"no event with slug '{UNKNOWN_SLUG}'")).to_be_visible()
    expect(_metadata_row(page, "file").get_by_text("late-signups.csv", exact=True)).to_be_visible()
    screens.take(page, "drop")
    _assert_no_participant_data(page, data)

    for name in ("asset-graph", "run", "reasons", "drop"):
        assert (screens.folder / f"{name}.png").stat().st_size > 10_000
