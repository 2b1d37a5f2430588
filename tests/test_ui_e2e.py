"""The web UI in real headless Chromium against a real node: add a camera, apply, see it live and its events.

Needs Debian's ``chromium`` (/usr/bin/chromium); without it the test fails with
what to install (it is never skipped).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, WebSocketRoute, expect

from .support.api_node import Running, camera_yaml, running, shm_env, wait_ws
from .support.browser import ARTIFACTS, chromium_page

pytestmark = pytest.mark.e2e
# a loaded 2-core CI machine answers slower than a desk: assertions wait up to 20 s, not 5
expect.set_options(timeout=20_000)



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
    with chromium_page() as pg:
        yield pg


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
    # a node is not a fleet: no Nodes tab, no node on the tiles (the coordinator's UI: test_ui_fleet_e2e)
    expect(page.locator("#nodes-tab")).to_be_hidden()
    assert page.locator("#grid .card .node").count() == 0
    assert page.locator("header h1").text_content() == "camfleet"

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


# ---------------------------------------------------------------- the views of issue 17
# They share the module's node (cam1 records people and a cat); each opens its page with the token set.


def _open(page: Page, rt: Running, hash_: str) -> None:
    page.add_init_script(f"localStorage.setItem('camfleet_token', {rt.admin!r})")
    page.goto(f"{rt.url}/#{hash_}")
    expect(page.locator("#conn")).to_have_text("live")


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_live_overlay_boxes_match_the_simulated_person(rt: Running, page: Page) -> None:
    from camfleet.ingest.scene import Scene

    _open(page, rt, "camera/cam1")
    expect(page.locator("#cam-state")).to_have_text("healthy", timeout=60_000)
    canvas = page.locator("#cam-overlay")
    # the overlay draws the metadata of the very frame shown: same sequence number as the JPEG
    page.wait_for_function(
        "() => { const c = document.querySelector('#cam-overlay');"
        " const i = document.querySelector('#cam-picture');"
        " return c.dataset.seq && c.dataset.seq === i.dataset.seq"
        " && JSON.parse(c.dataset.objects).some(o => o.label === 'person'); }", timeout=60_000)
    seq, pts, objects = page.evaluate(
        "() => { const c = document.querySelector('#cam-overlay');"
        " return [Number(c.dataset.seq), Number(c.dataset.pts), JSON.parse(c.dataset.objects)]; }")
    assert seq > 0
    # the simulator renders frame pts*fps/90000; its person is where the overlay's person box is
    scene = Scene(320, 240, seed=0, objects=("person", "cat"))
    truth = next(b for b in scene.boxes(round(pts * 10 / 90000)) if b[0] == "person")
    gt = [truth[1] / 320, truth[2] / 240, truth[3] / 320, truth[4] / 240]
    person = next(o for o in objects if o["label"] == "person")
    assert _iou(person["box"], gt) > 0.6, (person, gt)
    assert isinstance(person["id"], int) and 0 < person["score"] <= 1
    # ... and it is drawn: the left edge of the person box shown has the person colour (one read, no race)
    rgba = page.evaluate(
        "() => { const c = document.querySelector('#cam-overlay');"
        " const p = JSON.parse(c.dataset.objects).find(o => o.label === 'person'); if (!p) return null;"
        " const w = c.clientWidth, h = c.clientHeight, d = window.devicePixelRatio || 1;"
        " const [x0, y0, x1, y1] = p.box; return Array.from(c.getContext('2d').getImageData("
        " Math.round(x0 * w * d), Math.round((y0 + y1) / 2 * h * d), 1, 1).data); }")
    if rgba is not None:  # (None: the person left the picture in between)
        assert rgba[3] > 0 and rgba[2] > rgba[0], rgba  # opaque, blue (#3d8bfd)
    expect(page.locator("#cam-fps")).to_contain_text("analysed")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-camera-overlay.png"))
    # the overlay toggle hides the canvas
    page.uncheck("#ov-all")
    expect(canvas).to_be_hidden()
    page.check("#ov-all")
    expect(canvas).to_be_visible()


def test_zone_drawn_on_the_picture_reaches_the_next_event(rt: Running, page: Page) -> None:
    _open(page, rt, "camera/cam1")
    expect(page.locator("#cam-picture")).to_have_attribute("data-seq", re.compile(r"^[1-9]"), timeout=60_000)
    page.click("#edit-toggle")
    page.click("#zone-new")
    page.fill("#zone-name", "drawn")
    page.press("#zone-name", "Enter")
    page.locator("#zone-name").blur()
    box = page.locator("#cam-overlay").bounding_box()
    assert box is not None
    for fx, fy in ((0.02, 0.02), (0.98, 0.02), (0.98, 0.98), (0.02, 0.98)):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    expect(page.locator('#poly-list button[data-zone="drawn"]')).to_contain_text("4 points")
    # a point dragged stays normalised; a point added and deleted again leaves four
    page.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.5 * box["height"])
    page.keyboard.press("Delete")
    expect(page.locator('#poly-list button[data-zone="drawn"]')).to_contain_text("4 points")
    page.screenshot(path=str(ARTIFACTS / "ui-zone-editor.png"))
    applied_at = time.time()
    page.click("#edit-apply")
    expect(page.locator("#edit-status")).to_contain_text("applied", timeout=30_000)
    zone = rt.node.current_config().cameras["cam1"].zones["drawn"]
    assert len(zone.points) == 4 and all(0 <= v <= 1 for p in zone.points for v in p)
    # the next event of cam1 carries the zone drawn on the picture
    with rt.ws(rt.admin) as ws:
        msg = wait_ws(ws, lambda m: m.get("type") == "event" and m["event"]["camera"] == "cam1"
                      and "drawn" in m["event"]["zones"], 60)
    assert msg["event"]["start"] >= applied_at - 60


def test_timeline_plays_from_a_clicked_point_and_marks_events(rt: Running, page: Page) -> None:
    with rt.client(rt.admin) as client:  # recordings and an event of cam1 exist by now (earlier tests)
        deadline = time.monotonic() + 60
        while not (client.get("/api/recordings", params={"camera": "cam1"}).json()
                   and client.get("/api/events", params={"camera": "cam1"}).json()["items"]):
            assert time.monotonic() < deadline, "cam1 has no recording or no event"
            time.sleep(0.5)
    _open(page, rt, "recordings/cam1")
    page.select_option("#rec-zoom", "600")
    canvas = page.locator("#rec-canvas")
    page.wait_for_function("() => Number(document.querySelector('#rec-canvas').dataset.markers || 0) > 0",
                           timeout=30_000)
    expect(page.locator("#rec-events li").first).to_be_visible()
    recorded = json.loads(canvas.get_attribute("data-recorded") or "[]")
    assert recorded
    # click in the middle of the longest recorded span
    a, b = max(recorded, key=lambda s: s[1] - s[0])
    target = (a + b) / 2
    box = canvas.bounding_box()
    assert box is not None
    v0, v1 = (float(v) for v in (canvas.get_attribute("data-view") or "").split(","))
    frac = (target - v0) / (v1 - v0)
    page.mouse.click(box["x"] + frac * box["width"], box["y"] + box["height"] / 2)
    video = page.locator("#rec-video")
    expect(video).to_have_js_property("readyState", 4, timeout=30_000)
    page.wait_for_function("() => Number(document.querySelector('#rec-video').dataset.playhead || 0) > 0")
    playhead = float(video.get_attribute("data-playhead") or 0)
    # within the clicked point's segment (2 s segments) plus a pixel of the 10-minute timeline
    assert abs(playhead - target) < 4 + 600 / box["width"], (playhead, target)
    page.screenshot(path=str(ARTIFACTS / "ui-recordings.png"))
    page.click("#rec-next-event")


def test_event_review_filters_detail_path_and_reviewed(rt: Running, page: Page) -> None:
    _open(page, rt, "events")
    page.select_option("#filter-camera", "cam1")
    page.fill('#event-filters input[name="label"]', "person")
    page.fill('#event-filters input[name="min_score"]', "50")
    page.click('#event-filters button[type="submit"]')
    item = page.locator('#events li[data-camera="cam1"]').first
    expect(item).to_be_visible(timeout=30_000)
    expect(item).to_contain_text("person")
    assert page.locator('#events li:not([data-camera="cam1"])').count() == 0
    event_id = item.get_attribute("data-id")
    # the detail: snapshot, the object's path drawn over it (kept in the event's data), the clip
    item.locator("button.thumb").click()
    expect(page.locator("#player")).to_be_visible()
    expect(page.locator("#detail-snapshot")).to_have_js_property("complete", True)
    page.wait_for_function("() => Number(document.querySelector('#detail-path').dataset.points || 0) > 0",
                           timeout=10_000)
    with rt.client(rt.admin) as client:
        ev = client.get(f"/api/events/{event_id}").json()
    assert ev["data"]["path"] and all(0 <= p[1] <= 1 and 0 <= p[2] <= 1 for p in ev["data"]["path"])
    assert ev["reviewed"] is False
    page.keyboard.press("r")  # the keyboard marks it reviewed
    expect(page.locator("#detail-reviewed")).to_be_checked()
    with rt.client(rt.admin) as client:
        assert client.get(f"/api/events/{event_id}").json()["reviewed"] is True
    page.screenshot(path=str(ARTIFACTS / "ui-event-review.png"), full_page=True)
    # "not reviewed" hides it
    page.keyboard.press("Escape")
    page.check('#event-filters input[name="unreviewed"]')
    page.click('#event-filters button[type="submit"]')
    expect(page.locator(f'#events li[data-id="{event_id}"]')).to_have_count(0)


def test_reviewed_shows_on_the_open_event_when_the_list_reloads_while_it_is_saved(
        rt: Running, page: Page) -> None:
    # Found by CI: new events reload the list; a reload that lands while "r" is being saved
    # replaced the open event's object, and the detail's checkbox stayed unchecked.
    _open(page, rt, "events")
    page.check('#event-filters input[name="unreviewed"]')
    page.click('#event-filters button[type="submit"]')
    item = page.locator("#events li").first
    expect(item).to_be_visible(timeout=30_000)
    event_id = item.get_attribute("data-id")
    item.locator("button.thumb").click()
    expect(page.locator("#player")).to_be_visible()
    held: list[Route] = []
    saves = re.compile(r"/api/events/[^/?]+/reviewed$")

    def hold(route: Route) -> None:  # the save waits for us
        held.append(route)

    page.route(saves, hold)
    with page.expect_request(re.compile(r"/reviewed$")):
        page.keyboard.press("r")
    page.evaluate("document.querySelectorAll('#events li').forEach((li) => { li.dataset.old = '1'; })")
    with page.expect_response(re.compile(r"/api/events\?")):
        page.evaluate("document.querySelector('#event-filters').requestSubmit()")
    page.wait_for_function("() => !document.querySelector('#events li[data-old]')")  # re-rendered
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#detail-reviewed")).to_be_checked()
    with rt.client(rt.admin) as client:
        assert client.get(f"/api/events/{event_id}").json()["reviewed"] is True
    page.unroute(saves)


def test_events_that_came_while_a_detail_was_open_show_when_it_closes(rt: Running, page: Page) -> None:
    # the list stays as the user saw it under an open detail; closing the detail brings it up to date
    # even when no further event comes (the WebSocket's event messages are held back from then on)
    held_back = [False]
    came_while_open: list[str] = []

    def relay(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            is_event = isinstance(message, str) and json.loads(message).get("type") == "event"
            if is_event and page.locator("#player").is_visible():
                came_while_open.append(str(message))
            if not (is_event and held_back[0]):
                ws.send(message)

        server.on_message(to_page)

    page.route_web_socket(re.compile(r"/api/ws"), relay)
    _open(page, rt, "events")
    item = page.locator("#events li").first
    expect(item).to_be_visible(timeout=30_000)
    item.locator("button.thumb").click()
    expect(page.locator("#player")).to_be_visible()
    page.evaluate("document.querySelectorAll('#events li').forEach((li) => { li.dataset.old = '1'; })")
    deadline = time.monotonic() + 60
    while not came_while_open and time.monotonic() < deadline:  # the simulated camera's next event
        page.wait_for_timeout(100)
    assert came_while_open, "no event came in 60 s"
    held_back[0] = True
    page.wait_for_timeout(1500)  # more than the list's reload delay: the open detail's list stays
    assert page.locator("#events li[data-old]").count() > 0
    with page.expect_response(re.compile(r"/api/events\?")):
        page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('#events li[data-old]')")  # re-rendered


def test_phone_sized_screen_and_keyboard(rt: Running, page: Page) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    _open(page, rt, "live")
    tile = page.locator('#grid img[data-camera="cam1"]')
    expect(tile).to_have_attribute("data-loaded", "1", timeout=30_000)
    # keyboard: a grid tile is a link; Enter on it opens the camera's page
    page.locator('#grid .card[data-camera="cam1"] a.open').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#cam-title")).to_have_text("cam1")
    expect(page.locator("#cam-picture")).to_have_attribute("data-seq", re.compile(r"^[1-9]"), timeout=30_000)
    overflow = "() => document.documentElement.scrollWidth - window.innerWidth"
    for hash_ in ("camera/cam1", "events", "recordings/cam1", "cameras", "system"):
        page.evaluate(f"location.hash = '#{hash_}'")
        page.wait_for_timeout(300)  # a frame or two to lay out (nothing to wait on: the layout is the check)
        assert page.evaluate(overflow) <= 1, f"#{hash_} is wider than a phone's screen"
        if hash_ in ("camera/cam1", "events"):
            page.screenshot(path=str(ARTIFACTS / f"ui-phone-{hash_.split('/')[0]}.png"), full_page=True)
