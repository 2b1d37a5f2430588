"""A tiny YOLOv8-shaped ONNX model whose scores scale with each image's brightest pixel.

Run by real onnxruntime, it lets tests know which detections belong to which
image of a batch: an image whose brightest value is ``v`` gets the anchors'
class scores times ``v / 255`` (``EXPECTED`` for a white image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from camfleet.detect.models import ModelSpec

# Per anchor: cx, cy, w, h (model-input pixels, 64x64 input) and 3 class scores.
ANCHORS = np.array([
    # cx  cy  w   h   c0   c1   c2
    [20, 20, 20, 20, .90, .00, .00],   # class 0, kept
    [21, 21, 20, 20, .80, .00, .00],   # class 0, overlaps anchor 0: suppressed
    [20, 20, 20, 20, .00, .85, .00],   # class 1, same box as anchor 0: kept (class-wise NMS)
    [50, 50, 10, 10, .00, .00, .20],   # below the threshold
    [50, 50, 20, 20, .70, .00, .00],   # class 0, elsewhere: kept
    [55, 55, 20, 20, .00, .00, .60],   # class 2, overlaps anchor 4 but another class: kept
], dtype=np.float32)
EXPECTED = [(0, 0.90), (1, 0.85), (0, 0.70), (2, 0.60)]


def yolo_onnx(path: Path, transposed: bool = False, batch: int | str = "batch") -> Path:
    """A YOLOv8-shaped model: output [N, 4+3, 6] (or [N, 6, 7]); class scores x max pixel of each image."""
    t = ANCHORS.T[None]  # [1, 7, 6]
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m4", "shape3"], ["m"]),                  # [N, 1, 1]
        helper.make_node("Mul", ["m", "zeros"], ["z"]),                        # [N, 4, 6] of 0
        helper.make_node("Add", ["z", "boxes"], ["b"]),                        # boxes for every image
        helper.make_node("Mul", ["m", "scores"], ["s"]),                       # scores x max pixel
        helper.make_node("Concat", ["b", "s"], ["y" if transposed else "output0"], axis=1),
    ]
    if transposed:
        nodes.append(helper.make_node("Transpose", ["y"], ["output0"], perm=[0, 2, 1]))
    inits = [
        helper.make_tensor("shape3", TensorProto.INT64, [3], [-1, 1, 1]),
        helper.make_tensor("zeros", TensorProto.FLOAT, [1, 4, 6], np.zeros(24, np.float32).tolist()),
        helper.make_tensor("boxes", TensorProto.FLOAT, [1, 4, 6], t[:, :4].ravel().tolist()),
        helper.make_tensor("scores", TensorProto.FLOAT, [1, 3, 6], t[:, 4:].ravel().tolist()),
    ]
    out_shape = [batch, 6, 7] if transposed else [batch, 7, 6]
    graph = helper.make_graph(
        nodes, "tiny_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def yolo_spec(path: Path, **kw: Any) -> ModelSpec:
    return ModelSpec(
        id="tiny-yolo", path=path, runtime="onnx", labels=("person", "car", "dog"), output="yolov8",
        layout="nchw", mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), resize="letterbox",
        score_threshold=0.5, iou_threshold=0.45, **kw,
    )
