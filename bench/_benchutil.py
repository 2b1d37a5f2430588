"""Small helpers shared by the benchmarks: percentiles, summaries, CPU time, table cells."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil


def pct(samples: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile of ``samples`` (None when there are none)."""
    if len(samples) == 0:
        return None
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def summary(samples: Sequence[float] | Sequence[int], scale: float = 1.0) -> dict[str, Any]:
    """n, p50, p90, p99, mean and max of ``samples`` multiplied by ``scale``."""
    arr = np.asarray(samples, dtype=np.float64) * scale
    if arr.size == 0:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    return {
        "n": int(arr.size),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
    }


def cpu_s(proc: psutil.Process) -> float:
    """User + system CPU seconds of ``proc`` (all threads)."""
    t = proc.cpu_times()
    return float(t.user + t.system)


def cell(value: Any, width: int, fmt: str) -> str:
    """One table cell: text left-aligned, numbers right-aligned, '-' for None."""
    if value is None:
        return "-".rjust(width)
    if fmt == "s":
        return str(value).ljust(width)
    return format(value, fmt).rjust(width)


def cpu_model() -> str:
    """The CPU's model name, for the benchmark's metadata."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def dist_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (None if it is not installed)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
