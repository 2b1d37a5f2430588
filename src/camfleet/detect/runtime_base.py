"""The base of every detection runtime: input checks, locking, tensor building, detections.

A concrete runtime (:mod:`~camfleet.detect.runtime_tflite`, :mod:`~camfleet.detect.runtime_onnx`)
loads its engine and implements ``_infer``/``_release``; :class:`Runtime` does the rest.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from .geometry import FloatArray, Geometry, Image8, IntArray
from .models import ModelSpec, load_labels
from .types import Box, Detection


def check_images(batch: Sequence[Any]) -> list[Image8]:
    """The batch as HxWx3 uint8 images; TypeError/ValueError naming the first bad one."""
    out: list[Image8] = []
    for i, img in enumerate(batch):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"image {i}: expected a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image {i}: expected an HxWx3 uint8 RGB array, got {img.dtype} {img.shape}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f"image {i}: empty image {img.shape}")
        out.append(img)
    return out


class Runtime(ABC):
    """A loaded detection model. Thread-safe: calls to :meth:`infer` are serialised.

    ``score_threshold`` (0..1) defaults to the spec's; ``threads`` is the
    number of CPU threads the runtime may use (``None``: its default).
    """

    def __init__(self, spec: ModelSpec, score_threshold: float | None = None) -> None:
        self.spec = spec
        self.score_threshold = spec.score_threshold if score_threshold is None else float(score_threshold)
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        self.labels: dict[int, str] = load_labels(spec)
        self.input_size: tuple[int, int] = spec.input_size or (0, 0)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def runs_batches(self) -> bool:
        """Whether one model call runs several images (a batch axis); False: image by image."""
        return False

    def label(self, class_id: int) -> str:
        """The name of class ``class_id`` (``"class_<id>"`` when the labels do not name it)."""
        return self.labels.get(class_id, f"class_{class_id}")

    def infer(self, batch: Sequence[Image8]) -> list[list[Detection]]:
        """Detect objects in each image of ``batch`` (``HxWx3`` uint8 RGB, any size each).

        Returns one list per image, highest score first, boxes in that image's pixels.
        """
        images = check_images(batch)
        if not images:
            return []
        with self._lock:
            if self._closed:
                raise RuntimeError(f"runtime for model {self.spec.id!r} is closed")
            return self._infer(images)

    def detect(self, image: Image8) -> list[Detection]:
        """Detect objects in one image; see :meth:`infer`."""
        return self.infer([image])[0]

    def close(self) -> None:
        """Release the model; later calls to :meth:`infer` raise ``RuntimeError``."""
        with self._lock:
            self._closed = True
            self._release()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def _infer(self, images: list[Image8]) -> list[list[Detection]]: ...

    @abstractmethod
    def _release(self) -> None:
        """Drop references to the underlying engine."""

    def _to_tensor(self, fitted: list[Image8], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        """Stack fitted images into the model's input tensor (layout, channel order, normalisation)."""
        x: npt.NDArray[Any] = np.stack(fitted)
        if self.spec.pixel_format == "bgr":
            x = x[..., ::-1]
        dt = np.dtype(dtype)
        if dt == np.uint8:
            x = x.astype(np.uint8, copy=False)
        elif dt == np.int8:
            x = (x.astype(np.int16) - 128).astype(np.int8)
        else:
            mean = np.asarray(self.spec.mean, dtype=np.float32)
            std = np.asarray(self.spec.std, dtype=np.float32)
            x = ((x.astype(np.float32) - mean) / std).astype(dt)
        if self.spec.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def _detections(
        self, boxes: FloatArray, scores: FloatArray, ids: IntArray, geo: Geometry
    ) -> list[Detection]:
        """Build detections from boxes in model-input pixels (already thresholded and sorted)."""
        img_boxes = geo.to_image(boxes)
        out: list[Detection] = []
        for b, s, c in zip(img_boxes, scores, ids, strict=True):
            if b[2] <= b[0] or b[3] <= b[1]:
                continue
            out.append(Detection(
                label=self.label(int(c)), label_id=int(c), score=float(min(1.0, max(0.0, s))),
                box=Box(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            ))
            if len(out) >= self.spec.max_detections:
                break
        return out
