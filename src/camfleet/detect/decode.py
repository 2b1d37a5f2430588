"""Decoding detector outputs (pure functions): YOLO output decoding and (class-wise) NMS."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .geometry import FloatArray, IntArray
from .models import OutputKind


def nms(boxes: npt.ArrayLike, scores: npt.ArrayLike, iou_threshold: float) -> IntArray:
    """Greedy non-maximum suppression.

    ``boxes`` is ``[N, 4]`` ``(x0, y0, x1, y1)``, ``scores`` is ``[N]``. A box is
    dropped when its IoU with a higher-scoring kept box is above
    ``iou_threshold``. Returns the kept indices, highest score first.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise ValueError(f"nms: {b.shape[0]} boxes but {s.shape[0]} scores")
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = np.maximum(0.0, x1 - x0) * np.maximum(0.0, y1 - y0)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def batched_nms(
    boxes: npt.ArrayLike, scores: npt.ArrayLike, class_ids: npt.ArrayLike, iou_threshold: float
) -> IntArray:
    """Class-wise NMS: boxes only suppress boxes of the same class.

    Returns the kept indices, highest score first.
    """
    c = np.asarray(class_ids).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept: list[IntArray] = []
    for cls in np.unique(c):
        idx = np.flatnonzero(c == cls)
        kept.append(idx[nms(b[idx], s[idx], iou_threshold)])
    if not kept:
        return np.zeros(0, dtype=np.intp)
    allk = np.concatenate(kept)
    return np.asarray(allk[np.argsort(-s[allk], kind="stable")], dtype=np.intp)


def decode_yolo(
    output: npt.ArrayLike,
    kind: OutputKind,
    score_threshold: float,
    num_classes: int | None = None,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Decode one image's YOLO output into boxes ``(x0, y0, x1, y1)``, scores and class ids (before NMS).

    ``output`` is 2-D: ``[4 + nc, anchors]`` (YOLOv8 as exported) or
    ``[anchors, 4 + nc]`` (transposed); for ``kind="yolov5"`` there is an
    objectness column after the box (``5 + nc``) and score = objectness x
    class score. Boxes are ``cx, cy, w, h`` in model-input pixels. The channel
    axis is the one of size ``4 + num_classes`` (``5 + …``) when exactly one
    axis has that size, else the smaller axis. Each anchor keeps its best class;
    anchors scoring below ``score_threshold`` are dropped.
    """
    a = np.asarray(output, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"YOLO output must be 2-D per image, got shape {a.shape}")
    extra = 5 if kind == "yolov5" else 4
    if kind not in ("yolov8", "yolov5"):
        raise ValueError(f"decode_yolo: unsupported output kind {kind!r}")
    fits = [num_classes is not None and d == extra + num_classes for d in a.shape]
    channels_first = fits[0] if fits[0] != fits[1] else a.shape[0] <= a.shape[1]
    pred = a.T if channels_first else a
    if pred.shape[1] <= extra:
        raise ValueError(
            f"YOLO output of shape {a.shape} has no class scores: {kind} needs {extra} + num_classes channels"
        )
    cls_scores = pred[:, extra:]
    if kind == "yolov5":
        cls_scores = cls_scores * pred[:, 4:5]
    ids = np.argmax(cls_scores, axis=1)
    scores = cls_scores[np.arange(pred.shape[0]), ids]
    sel = scores >= score_threshold
    xywh = pred[sel, :4]
    boxes = np.empty_like(xywh)
    boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    return boxes, scores[sel].astype(np.float32), ids[sel].astype(np.intp)
