"""What this machine has: hostname, addresses, cores, memory, ``/dev/shm``, GPUs, hardware decoders.

GPUs come from ``nvidia-smi`` and hardware decoders from VA-API
(``/dev/dri/renderD*``, profiles from ``vainfo`` when installed); a machine
without them reports empty lists, and a tool that hangs or fails is given up
after a few seconds (its reason is kept in ``notes``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

__all__ = ["Gpu", "Hardware", "VaapiDevice", "detect_hardware", "parse_nvidia_smi", "parse_vainfo"]

_TOOL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU: ``name``, ``memory_mib`` (total, MiB), ``uuid``."""

    name: str
    memory_mib: int
    uuid: str


@dataclass(frozen=True)
class VaapiDevice:
    """A VA-API render node and the codecs it decodes (e.g. ``h264``, ``hevc``; empty when unknown)."""

    device: str
    driver: str = ""
    decodes: tuple[str, ...] = ()


@dataclass
class Hardware:
    """A machine's inventory; memory and ``/dev/shm`` sizes in bytes."""

    hostname: str
    addresses: list[str]
    cores: int
    memory_bytes: int
    shm_bytes: int
    gpus: list[Gpu] = field(default_factory=list)
    vaapi: list[VaapiDevice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total,uuid --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3 or not parts[0]:
            continue
        try:
            memory = int(float(parts[1]))
        except ValueError:
            memory = 0
        gpus.append(Gpu(name=parts[0], memory_mib=memory, uuid=parts[2]))
    return gpus


_VAAPI_CODECS = {"H264": "h264", "HEVC": "hevc", "VP8": "vp8", "VP9": "vp9", "AV1": "av1", "MPEG2": "mpeg2",
                 "JPEG": "mjpeg", "VC1": "vc1"}


def parse_vainfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(driver, decoded codecs) from ``vainfo`` output: the profiles with a ``VAEntrypointVLD`` (decode)."""
    driver = ""
    codecs: set[str] = set()
    for line in text.splitlines():
        if "Driver version:" in line:
            driver = line.split("Driver version:", 1)[1].strip()
        if "VAEntrypointVLD" not in line or "VAProfile" not in line:
            continue
        profile = line.split(":", 1)[0].strip().removeprefix("VAProfile")
        for prefix, codec in _VAAPI_CODECS.items():
            if profile.upper().startswith(prefix):
                codecs.add(codec)
    return driver, tuple(sorted(codecs))


def _run(cmd: list[str], notes: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        notes.append(f"{cmd[0]}: {type(exc).__name__}")
        return None
    if done.returncode != 0:
        notes.append(f"{cmd[0]}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}")
        return None
    return done.stdout


def _gpus(notes: list[str]) -> list[Gpu]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    out = _run([exe, "--query-gpu=name,memory.total,uuid", "--format=csv,noheader,nounits"], notes)
    return parse_nvidia_smi(out) if out else []


def _vaapi(notes: list[str], dri: Path = Path("/dev/dri")) -> list[VaapiDevice]:
    nodes = sorted(dri.glob("renderD*")) if dri.is_dir() else []
    exe = shutil.which("vainfo")
    devices = []
    for node in nodes:
        driver, codecs = "", tuple[str, ...]()
        if exe is not None:
            out = _run([exe, "--display", "drm", "--device", str(node)], notes)
            if out:
                driver, codecs = parse_vainfo(out)
        devices.append(VaapiDevice(device=str(node), driver=driver, decodes=codecs))
    if nodes and exe is None:
        notes.append("vainfo not installed: VA-API codecs unknown")
    return devices


def _addresses() -> list[str]:
    found = []
    for name, addrs in psutil.net_if_addrs().items():
        if name == "lo":
            continue
        for addr in addrs:
            loopback = addr.address.startswith(("127.", "::1"))
            if addr.family in (socket.AF_INET, socket.AF_INET6) and not loopback:
                found.append(addr.address.split("%", 1)[0])
    return sorted(set(found))


def _shm_bytes() -> int:
    try:
        return shutil.disk_usage("/dev/shm").total
    except OSError:
        return 0


def detect_hardware() -> Hardware:
    """The inventory of this machine, now (up to a few seconds when the GPU tools are slow)."""
    notes: list[str] = []
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return Hardware(
        hostname=socket.gethostname(),
        addresses=_addresses(),
        cores=cores,
        memory_bytes=int(psutil.virtual_memory().total),
        shm_bytes=_shm_bytes(),
        gpus=_gpus(notes),
        vaapi=_vaapi(notes),
        notes=notes,
    )
