"""``<prefix>/stats`` in Frigate's shape, from the node's status (pure but for disk usage).

Per camera: ``camera_fps`` (frames per second ingest hands to the pipeline, after the detect
rate limit; Frigate's is the detect stream's rate too), ``process_fps``, ``skipped_fps``,
``detection_fps`` (detector requests per second), ``detection_enabled``, ``pid`` (the pipeline
process), ``capture_pid`` and ``ffmpeg_pid`` (the ingest process: camfleet decodes in it, there
is no separate FFmpeg process). Per detector: ``inference_speed`` (ms), ``detection_start``
(0: not tracked), ``pid``. ``service``: ``uptime`` (s), ``version``, ``latest_version`` (camfleet
does not look for updates: its own version), ``storage`` per directory in MiB, ``last_updated``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import psutil

from camfleet import __version__
from camfleet.config import Config
from camfleet.runtime.control import NodeStatus

__all__ = ["frigate_stats", "storage_usage"]

_MIB = float(2**20)


def storage_usage(path: Path) -> dict[str, Any]:
    """Frigate's storage entry of ``path``: ``total``, ``used``, ``free`` (MiB), ``mount_type``.

    ``{}`` when ``path`` does not exist.
    """
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return {}
    mount_type = ""
    best = -1
    resolved = str(path.resolve())
    for part in psutil.disk_partitions(all=True):
        mp = part.mountpoint
        if (resolved == mp or resolved.startswith(mp.rstrip("/") + "/")) and len(mp) > best:
            best, mount_type = len(mp), part.fstype
    return {"total": round(usage.total / _MIB, 1), "used": round(usage.used / _MIB, 1),
            "free": round(usage.free / _MIB, 1), "mount_type": mount_type}


def frigate_stats(status: NodeStatus, config: Config, *, now: float | None = None,
                  storage: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``<prefix>/stats`` payload of a node with ``status`` running ``config``.

    ``storage``: the per-directory entries (default: the recordings and data directories, measured).
    """
    now = time.time() if now is None else now
    cameras: dict[str, Any] = {}
    for name, cam in status.cameras.items():
        ingest = next((p for p in cam.processes.values() if p.kind == "ingest"), None)
        pipeline = next((p for p in cam.processes.values() if p.kind == "pipeline"), None)
        camera_fps = ingest.metrics.get("fps", cam.decode_fps) if ingest is not None else 0.0
        enabled = name in config.cameras and config.cameras[name].detect.enabled
        cameras[name] = {
            "camera_fps": round(camera_fps, 2),
            "process_fps": round(cam.processed_fps, 2),
            "skipped_fps": round(cam.skipped_fps, 2),
            "detection_fps": round(cam.detector_rps, 2),
            "detection_enabled": enabled,
            "pid": pipeline.pid if pipeline is not None else None,
            "capture_pid": ingest.pid if ingest is not None else None,
            "ffmpeg_pid": ingest.pid if ingest is not None else None,
        }
    detectors = {name: {"inference_speed": round(d.metrics.get("inference_ms", 0.0), 2),
                        "detection_start": 0.0, "pid": d.pid}
                 for name, d in status.detectors.items()}
    if storage is None:
        storage = {str(config.recordings_path): storage_usage(config.recordings_path),
                   str(config.data_path): storage_usage(config.data_path)}
    totals = {key: round(sum(c[key] for c in cameras.values()), 2)
              for key in ("camera_fps", "process_fps", "skipped_fps", "detection_fps")}
    return {
        "cameras": cameras,
        "detectors": detectors,
        **totals,
        "service": {"uptime": int(now - status.started_at), "version": __version__,
                    "latest_version": __version__, "storage": storage, "last_updated": int(now)},
        "processes": {},
    }
