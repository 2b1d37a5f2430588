"""Pipeline elements on the simulator's scene: motion, tracking, zones, events, snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from camfleet.framebus import PixelFormat
from camfleet.ingest.scene import Scene
from camfleet.pipeline import (
    Box,
    Detection,
    Element,
    ElementConfig,
    EventType,
    EventUpdate,
    FrameContext,
    Pipeline,
    PipelineEnv,
    UnknownElement,
    ZoneChange,
    available,
    element_class,
)
from camfleet.pipeline import registry as registry_module

pytestmark = pytest.mark.unit

W, H, FPS = 640, 360, 5


def frame_ctx(scene: Scene | None, i: int, image: np.ndarray | None = None) -> FrameContext:
    img = scene.render_i420(i) if scene is not None else image
    assert img is not None
    return FrameContext(camera="cam", seq=i + 1, pts=i, capture_ns=int(1e12 + i * 1e9 / FPS),
                        width=W, height=H, pixel_format=PixelFormat.YUV420P, image=img)


class TruthConfig(ElementConfig):
    until: int = 10**9


class GroundTruth(Element[TruthConfig]):
    """Test stand-in for the detector: the scene's own boxes, score 0.9."""

    name = "truth"
    config_type = TruthConfig
    scene: ClassVar[Scene]

    def process(self, ctx: FrameContext) -> None:
        if ctx.seq - 1 >= self.config.until:
            return
        for label, x0, y0, x1, y1 in self.scene.boxes(ctx.seq - 1):
            ctx.detections.append(Detection(label, 0, 0.9, Box(x0, y0, x1, y1)))


@pytest.fixture
def with_truth(monkeypatch: pytest.MonkeyPatch) -> type[GroundTruth]:
    original = registry_module._builtins
    monkeypatch.setattr(registry_module, "_builtins", lambda: {**original(), "truth": GroundTruth})
    return GroundTruth


def test_registry_knows_builtins_and_suggests() -> None:
    assert {"motion", "track", "zones", "events", "snapshot"} <= set(available())
    with pytest.raises(UnknownElement, match="did you mean 'motion'"):
        element_class("motoin")


def test_motion_static_scene_is_quiet_and_moving_object_is_found(tmp_path: Path) -> None:
    env = PipelineEnv(camera="cam", data_dir=tmp_path)
    static = Pipeline([("motion", {})], env)
    still = Scene(width=W, height=H, seed=1, objects=("person",)).render_i420(0)
    assert all(not static.process(frame_ctx(None, i, still)).motion for i in range(20))

    scene = Scene(width=W, height=H, seed=1, objects=("person",))
    moving = Pipeline([("motion", {})], env)
    hits = 0
    for i in range(20):
        ctx = moving.process(frame_ctx(scene, i))
        if i and ctx.motion:
            truth = Box(*scene.boxes(i)[0][1:])
            assert any(m.iou(truth) > 0 or truth.iou(m) > 0 for m in ctx.motion)
            hits += 1
    assert hits >= 15


def test_motion_recalibrates_on_global_change_and_honours_masks(tmp_path: Path) -> None:
    scene = Scene(width=W, height=H, seed=1, objects=("person",))
    base = scene.render_i420(0)
    env = PipelineEnv(camera="cam", data_dir=tmp_path)
    p = Pipeline([("motion", {})], env)
    p.process(frame_ctx(None, 0, base))
    bright = base.copy()
    bright[:H] = np.clip(bright[:H].astype(int) + 80, 0, 255).astype(np.uint8)  # lights on
    assert p.process(frame_ctx(None, 1, bright)).motion == []
    assert p.elements[0].recalibrations == 1  # type: ignore[attr-defined]
    # a mask over the whole moving object hides it
    masked = PipelineEnv(camera="cam", data_dir=tmp_path, masks=[[(0, 0), (1, 0), (1, 1), (0, 1)]])
    m = Pipeline([("motion", {})], masked)
    assert all(not m.process(frame_ctx(scene, i)).motion for i in range(10))


def test_person_crossing_gives_one_event_with_zone_enter_exit_and_snapshot(
    tmp_path: Path, with_truth: type[GroundTruth]
) -> None:
    scene = Scene(width=W, height=H, seed=0, objects=("person",))
    with_truth.scene = scene
    env = PipelineEnv(
        camera="cam", data_dir=tmp_path,
        zones={"left": {"points": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)]}},
    )
    pipeline = Pipeline(
        [("motion", {}), ("truth", {"until": 40}), ("track", {"fps": FPS, "max_disappeared_s": 1.0}),
         ("zones", {}), ("events", {"min_frames": 3}), ("snapshot", {"boxes": True})],
        env,
    )
    pipeline.start()
    updates: list[EventUpdate] = []
    zone_changes = []
    track_ids = set()
    for i in range(60):  # the person is detected in frames 0..39, then gone
        ctx = pipeline.process(frame_ctx(scene, i))
        updates += [u for u in ctx.events if isinstance(u, EventUpdate)]
        zone_changes += [(z.zone, z.change) for z in ctx.zone_events]
        track_ids |= {t.track_id for t in ctx.tracks}
    pipeline.stop()
    assert len(track_ids) == 1, track_ids  # one stable id for the whole crossing
    kinds = [u.type for u in updates]
    assert kinds.count(EventType.START) == 1 and kinds.count(EventType.END) == 1
    event = updates[-1].event
    assert event.label == "person" and event.top_score == pytest.approx(0.9)
    assert event.end_ns is not None and event.end_ns > event.start_ns
    assert (event.end_ns - event.start_ns) / 1e9 == pytest.approx(39 / FPS, abs=0.5)
    assert ("left", ZoneChange.ENTER) in zone_changes and ("left", ZoneChange.EXIT) in zone_changes
    assert zone_changes.index(("left", ZoneChange.ENTER)) < zone_changes.index(("left", ZoneChange.EXIT))
    assert event.zones == ["left"]
    assert event.snapshot is not None
    with Image.open(event.snapshot) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (W, H)


def test_live_update_keeps_elements_unless_the_list_changes(tmp_path: Path) -> None:
    env = PipelineEnv(camera="cam", data_dir=tmp_path)
    p = Pipeline([("motion", {"threshold": 25}), ("zones", {})], env)
    first = p.elements[0]
    env2 = PipelineEnv(camera="cam", data_dir=tmp_path, zones={"z": {"points": [(0, 0), (1, 0), (1, 1)]}})
    assert p.update([("motion", {"threshold": 40}), ("zones", {"dwell_s": 3})], env2)
    assert p.elements[0] is first and first.config.threshold == 40  # type: ignore[attr-defined]
    assert p.elements[1].env.zones == env2.zones
    assert not p.update([("motion", {})], env2)  # element list changed: needs a rebuild


def test_bad_element_settings_name_the_element(tmp_path: Path) -> None:
    env = PipelineEnv(camera="door", data_dir=tmp_path)
    with pytest.raises(ValueError, match=r"(?s)element 1 \('motion'\) of camera 'door'.*threshhold"):
        Pipeline([("zones", {}), ("motion", {"threshhold": 3})], env)


def test_documented_custom_element_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class CountPeopleConfig(ElementConfig):
        alert_at: int = 2

    class CountPeople(Element[CountPeopleConfig]):
        name = "count_people"
        config_type = CountPeopleConfig

        def process(self, ctx: FrameContext) -> None:
            people = [t for t in ctx.tracks if t.label == "person"]
            if len(people) >= self.config.alert_at:
                ctx.events.append({"type": "crowd", "count": len(people)})

    original = registry_module._builtins
    monkeypatch.setattr(registry_module, "_builtins", lambda: {**original(), "count_people": CountPeople})
    p = Pipeline([("count_people", {"alert_at": 1})], PipelineEnv(camera="c", data_dir=tmp_path))
    ctx = frame_ctx(None, 0, np.zeros((H * 3 // 2, W), np.uint8))
    from camfleet.pipeline import TrackedObject

    ctx.tracks.append(TrackedObject(1, "person", 0.9, Box(0, 0, 1, 1), 0, 0))
    assert p.process(ctx).events == [{"type": "crowd", "count": 1}]
    _: Any = None


def test_every_camera_of_the_example_config_builds_its_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from camfleet.config import load_config
    from camfleet.pipeline.build import camera_pipeline

    monkeypatch.setenv("CAM_PASSWORD", "pw")
    config = load_config(Path(__file__).parent.parent / "examples" / "camfleet.yaml")
    for camera in config.cameras:
        p = camera_pipeline(config, camera)
        names = [e.name for e in p.elements]
        assert names == [e.name for e in config.pipeline_of(camera)]
        assert p.env.zones.keys() == config.camera(camera).zones.keys()


def test_track_marks_a_parked_object_stationary(tmp_path: Path) -> None:
    from camfleet.pipeline import TrackedObject

    p = Pipeline([("track", {"fps": FPS, "stationary_s": 2.0, "stationary_px": 5})],
                 PipelineEnv(camera="cam", data_dir=tmp_path))
    still = np.zeros((H * 3 // 2, W), np.uint8)
    seen: list[TrackedObject] = []
    for i in range(20):  # 4 s: a car that does not move, jittering by a pixel
        ctx = frame_ctx(None, i, still)
        ctx.detections.append(Detection("car", 0, 0.8, Box(100 + i % 2, 100, 200, 160)))
        seen = p.process(ctx).tracks
    assert len(seen) == 1 and seen[0].stationary
    moving = [False]
    for i in range(20, 30):  # then it drives off
        ctx = frame_ctx(None, i, still)
        dx = (i - 19) * 20
        ctx.detections.append(Detection("car", 0, 0.8, Box(100 + dx, 100, 200 + dx, 160)))
        moving = [t.stationary for t in p.process(ctx).tracks]
    assert moving == [False]


def test_third_party_element_is_found_through_its_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package installed with a ``camfleet.elements`` entry point is found by name."""
    pkg = tmp_path / "site"
    (pkg / "cf_plugin_demo").mkdir(parents=True)
    (pkg / "cf_plugin_demo" / "__init__.py").write_text(
        "from camfleet.pipeline import Element, ElementConfig\n"
        "class HelloConfig(ElementConfig):\n    greeting: str = 'hi'\n"
        "class Hello(Element[HelloConfig]):\n    name = 'hello'\n    config_type = HelloConfig\n"
        "    def process(self, ctx):\n        ctx.events.append(self.config.greeting)\n"
    )
    dist = pkg / "cf_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: cf-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[camfleet.elements]\nhello = cf_plugin_demo:Hello\n")
    monkeypatch.syspath_prepend(str(pkg))
    assert "hello" in available()
    p = Pipeline([("hello", {"greeting": "bonjour"})], PipelineEnv(camera="c", data_dir=tmp_path))
    ctx = frame_ctx(None, 0, np.zeros((H * 3 // 2, W), np.uint8))
    assert p.process(ctx).events == ["bonjour"]
    from camfleet.pipeline.validate import element_catalog

    assert "hello" in element_catalog().names()  # the configuration accepts it too
