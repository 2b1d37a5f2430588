"""Imported last by the camera processes' forkserver: shares what every camera process would copy.

Camera processes are forked from the forkserver and share its memory copy-on-write; a page
a child writes becomes its own. Two things would copy tens of MiB per process for nothing:

* Python's garbage collector writes into the header of every container object it examines,
  so the first full collection in a child would copy every page holding the forkserver's
  modules. :func:`gc.freeze` puts those objects in a permanent generation the collector never
  visits, as the :mod:`gc` documentation recommends before ``fork()``.
* FFmpeg's decoders and OpenCV fill static tables on first use; done here once, every child
  shares them instead of building its own.
* glibc gives each new thread that allocates its own malloc arena (up to 8 per core), each
  holding its own free memory: a camera process has a few mostly idle threads (heartbeat,
  watchdogs) and, above 1080p, FFmpeg's decoding threads: two arenas are plenty
  (:data:`camfleet.runtime.malloc.CAMERA_ARENAS`; inherited by every child).

Preloading this module is the forkserver's only hook that runs after its other preloads and
before it forks.
"""

from __future__ import annotations

import contextlib
import gc
import logging

log = logging.getLogger("camfleet.runtime")


def _limit_arenas() -> None:
    """Cap the children's malloc arenas (a setting they inherit)."""
    from .malloc import CAMERA_ARENAS, limit_arenas  # noqa: PLC0415 - as the warm-ups: inside the guard

    limit_arenas(CAMERA_ARENAS)


def _warm_codecs() -> None:
    """Open the camera decoders once (their static tables are built at the first open)."""
    import av  # noqa: PLC0415 - the forkserver has it already (ingest)

    for name in ("h264", "hevc"):
        with contextlib.suppress(Exception):  # a PyAV build without one decodes the other
            av.CodecContext.create(name, "r").open()


def _warm_opencv() -> None:
    """Run the OpenCV kernels the pipeline uses once (OpenCV dispatches and caches on first call)."""
    import cv2  # noqa: PLC0415 - the forkserver has it already (pipeline elements)
    import numpy as np  # noqa: PLC0415

    # before any kernel runs: a thread pool started here would not exist in the forked children,
    # whose OpenCV would then wait on it forever; the children run single-threaded anyway
    cv2.setNumThreads(1)
    yuv = np.zeros((270, 320), np.uint8)
    rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_AREA)
    cv2.resize(yuv, (64, 64), interpolation=cv2.INTER_LINEAR)
    f = np.zeros((90, 160), np.float32)
    cv2.accumulateWeighted(f, f.copy(), 0.1)
    changed: np.ndarray = (cv2.absdiff(f, f) > 1.0).view(np.uint8)
    changed = cv2.dilate(changed, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), iterations=2)
    cv2.connectedComponentsWithStats(changed, connectivity=4)


for _warm in (_limit_arenas, _warm_codecs, _warm_opencv):
    try:
        _warm()
    except Exception:  # sharing is an optimisation: the children work without it
        log.debug("forkserver warm-up %s failed", _warm.__name__, exc_info=True)
gc.collect()  # no garbage frozen in, and the survivors packed before the pages are shared
gc.freeze()
