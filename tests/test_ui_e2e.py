"""The web UI in real headless Chromium against a real node: add a camera, apply, see it live and its events.

Needs Debian's ``chromium`` (/usr/bin/chromium); without it the test fails with
what to install (it is never skipped).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .support.api_node import Running, camera_yaml, running, shm_env

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("ui")
    cam1 = camera_yaml("cam1", objects="person,cat", record=True)
    with shm_env("camfleet-uitest"), running(tmp, cam1) as r:
        yield r


@pytest.fixture(autouse=True)
def _module_shm(rt: Running, shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMFLEET_SHM_DIR", str(rt.shm))


@pytest.fixture
def page() -> Iterator[Page]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the UI test needs a real browser)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            pg = context.new_page()
            pg.set_default_timeout(30_000)
            errors: list[str] = []
            pg.on("pageerror", lambda exc: errors.append(str(exc)))
            yield pg
            assert errors == [], errors
        finally:
            browser.close()


def test_add_camera_apply_see_it_live_and_its_events(rt: Running, page: Page) -> None:
    page.goto(rt.url + "/")
    # not open: the UI asks for a token; a bad one is refused, the admin token is kept
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.fill("#token-input", "cft_wrong")
    page.click("#token-save")
    expect(page.locator("#token-error")).to_contain_text("not accepted")
    page.fill("#token-input", rt.admin)
    page.click("#token-save")
    expect(dialog).to_be_hidden()
    expect(page.locator("#conn")).to_have_text("live")
    expect(page.locator('#grid .card[data-camera="cam1"]')).to_be_visible()

    # the editor: an invalid camera shows the validation errors, nothing is staged
    page.click('button.tab[data-page="cameras"]')
    page.click("#camera-new")
    page.fill("#cam-name", "cam2")
    page.fill("#cam-url", "synthetic://cam2?width=320&height=240&fps=10&seed=5&objects=person")
    page.fill("#cam-json", '{"sources": [{"url": "", "roles": ["detect"]}], "detect": {"fps": 0}}')
    page.click("#cam-save")
    expect(page.locator("#cam-issues")).to_contain_text("cameras.cam2.detect.fps")
    # a valid one is staged, then applied
    page.fill("#cam-json", '{"sources": [{"url": "", "roles": ["detect"]}], '
                           '"zones": {"left": {"points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}}')
    page.click("#cam-save")
    expect(page.locator("#changes")).to_contain_text("add cam2")
    expect(page.locator("#pending-badge")).to_have_text("1")
    page.click("#apply")
    expect(page.locator("#apply-result")).to_contain_text("added cam2")
    expect(page.locator("#changes")).to_contain_text("none")
    assert "cam2" in rt.node.current_config().cameras

    # live: the new camera's frame is shown
    page.click('button.tab[data-page="live"]')
    img = page.locator('#grid img[data-camera="cam2"]')
    expect(img).to_have_attribute("data-loaded", "1", timeout=60_000)
    assert page.evaluate('document.querySelector(\'#grid img[data-camera="cam2"]\').naturalWidth') == 320
    expect(page.locator('#grid .card[data-camera="cam2"] .state')).to_have_text("healthy", timeout=60_000)
    expect(page.locator('#grid .card[data-camera="cam2"] .fps')).not_to_have_text(re.compile(r"^0\.0 fps"))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-e2e-live.png"))

    # events: one of the new camera's events appears in the list, with its snapshot
    page.click('button.tab[data-page="events"]')
    item = page.locator('#events li[data-camera="cam2"]').first
    expect(item).to_be_visible(timeout=90_000)
    expect(item.locator("img")).to_have_js_property("complete", True)
    # clip playback: cam1 records, its event's clip plays in the <video> (Range requests)
    cam1 = page.locator('#events li[data-camera="cam1"]').first
    expect(cam1).to_be_visible(timeout=30_000)
    cam1.locator("button", has_text="clip").click()
    expect(page.locator("#player")).to_be_visible()
    video = page.locator("#clip")
    expect(video).to_have_js_property("readyState", 4, timeout=30_000)
    assert page.evaluate("document.querySelector('#clip').duration") > 0
    assert page.locator("#clip-error").text_content() == ""

    # system page: processes over the WebSocket
    page.click('button.tab[data-page="system"]')
    expect(page.locator("#process-table tbody")).to_contain_text("cam2")
    expect(page.locator("#storage-info")).to_contain_text("events stored")

    page.click('button.tab[data-page="events"]')
    page.screenshot(path=str(ARTIFACTS / "ui-e2e.png"), full_page=True)
