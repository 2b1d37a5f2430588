"""Frigate ``ffmpeg.inputs`` to camfleet ``sources``: roles, go2rtc restreams, ``{FRIGATE_*}`` variables.

* Roles ``detect`` and ``record`` are kept; ``audio`` and ``rtmp`` (removed
  from Frigate in 0.14) have no camfleet counterpart and are dropped with a
  note; an input left without a role is dropped.
* An input reading Frigate's own go2rtc restream
  (``rtsp://127.0.0.1:8554/NAME``, also ``localhost``) is replaced by the
  stream ``go2rtc.streams.NAME`` re-serves: its first source camfleet can
  open, with go2rtc's ``ffmpeg:`` prefix and ``#...`` options removed
  (camfleet reads the camera itself, once, and shares the frames).
* ``{FRIGATE_NAME}`` becomes ``${FRIGATE_NAME}``, camfleet's form; go2rtc's
  own ``${NAME}`` is already camfleet's.
* ``input_args`` naming UDP (``preset-rtsp-udp``) set ``transport: udp``;
  ``hwaccel_args`` presets for NVIDIA, VAAPI and Quick Sync set ``hwaccel``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from camfleet.importers.notes import Notes
from camfleet.redact import mask_url
from camfleet.urlkinds import source_kind

__all__ = ["convert_sources", "frigate_vars", "go2rtc_streams"]

_FRIGATE_VAR = re.compile(r"(?<!\$)\{(FRIGATE_[A-Za-z0-9_]+)\}")
_RESTREAM_HOSTS = {"127.0.0.1", "localhost", "::1"}
_RESTREAM_PORT = 8554


def frigate_vars(text: str) -> str:
    """``text`` with Frigate's ``{FRIGATE_X}`` written as camfleet's ``${FRIGATE_X}``."""
    return _FRIGATE_VAR.sub(r"${\1}", text)


def _opens(url: str) -> bool:
    try:
        source_kind(url)
    except ValueError:
        return False
    return True


def go2rtc_streams(go2rtc: Any) -> dict[str, list[str]]:
    """``go2rtc.streams`` as name -> its source URLs (a stream may list one or several)."""
    streams = go2rtc.get("streams") if isinstance(go2rtc, Mapping) else None
    if not isinstance(streams, Mapping):
        return {}
    out: dict[str, list[str]] = {}
    for name, value in streams.items():
        items = value if isinstance(value, list) else [value]
        out[str(name)] = [str(v) for v in items if isinstance(v, str)]
    return out


def _restream_name(url: str) -> str | None:
    """NAME when ``url`` is Frigate's go2rtc restream ``rtsp://127.0.0.1:8554/NAME``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "rtsp" or parts.hostname not in _RESTREAM_HOSTS or port != _RESTREAM_PORT:
        return None
    name = parts.path.strip("/")
    return name or None


def _go2rtc_source(url: str) -> str:
    # go2rtc writes "ffmpeg:rtsp://...#video=copy#audio=aac": the URL is between the two
    if url.startswith("ffmpeg:"):
        url = url[len("ffmpeg:"):]
    return url.split("#", 1)[0]


def _resolve(url: str, streams: Mapping[str, list[str]], key: str, notes: Notes) -> str:
    name = _restream_name(url)
    if name is None:
        return url
    candidates = [_go2rtc_source(s) for s in streams.get(name, [])]
    for candidate in candidates:
        if _opens(frigate_vars(candidate)):
            notes.converted(key, f"go2rtc restream '{name}' replaced by the stream it re-serves, "
                                 f"{mask_url(candidate)}")
            return candidate
    why = "not in go2rtc.streams" if name not in streams else "has no source camfleet can open"
    notes.unmapped(key, f"go2rtc restream '{name}' {why}; the restream URL is kept (run go2rtc beside "
                        "camfleet, or replace it with the camera's own URL)")
    return url


def _args(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value or "")


def _hwaccel(args: str) -> str | None:
    lowered = args.lower()
    if "nvidia" in lowered or "cuda" in lowered:
        return "cuda"
    if "vaapi" in lowered:
        return "vaapi"
    if "qsv" in lowered or "intel-qsv" in lowered:
        return "qsv"
    return None


def convert_sources(ffmpeg: Mapping[str, Any], streams: Mapping[str, list[str]], key: str,
                    notes: Notes) -> list[dict[str, Any]]:
    """The camfleet ``sources`` of a camera whose (merged) Frigate ``ffmpeg`` section is ``ffmpeg``."""
    inputs = ffmpeg.get("inputs")
    if not isinstance(inputs, list):
        notes.unmapped(f"{key}.inputs", "no inputs: the camera has no stream")
        return []
    out: list[dict[str, Any]] = []
    taken: set[str] = set()
    hwaccel = _hwaccel(_args(ffmpeg.get("hwaccel_args")))
    for i, entry in enumerate(inputs):
        where = f"{key}.inputs[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
            notes.unmapped(where, "an input without a path")
            continue
        roles: list[str] = []
        given = entry.get("roles") or []
        for role in [given] if isinstance(given, str) else given if isinstance(given, list) else []:
            if role in ("detect", "record"):
                if role in taken:  # Frigate refuses this too; camfleet wants each role once
                    notes.unmapped(f"{where}.roles", f"'{role}' is already given to another input")
                else:
                    roles.append(role)
                    taken.add(role)
            elif role == "rtmp":
                notes.unmapped(f"{where}.roles", "'rtmp' (Frigate's RTMP restream, removed in 0.14) is "
                                                 "dropped: camfleet serves live view from its frame ring")
            else:
                notes.unmapped(f"{where}.roles", f"'{role}': camfleet does not analyse audio")
        if not roles:
            notes.unmapped(where, f"{mask_url(entry['path'])} has no detect or record role; dropped")
            continue
        url = frigate_vars(_resolve(entry["path"], streams, where, notes))
        source: dict[str, Any] = {"url": url, "roles": roles}
        in_args = _args(entry.get("input_args", ffmpeg.get("input_args")))
        rtsp = url.lower().startswith(("rtsp://", "rtsps://"))
        if rtsp and "udp" in in_args.lower():
            source["transport"] = "udp"
        accel = _hwaccel(_args(entry.get("hwaccel_args"))) or hwaccel
        if accel:
            source["hwaccel"] = accel
        out.append(source)
    if out and not taken & {"detect"}:
        out[0]["roles"] = ["detect", *out[0]["roles"]]
        notes.converted(f"{key}.inputs", "no input has the detect role; the first one is given it")
    for unmapped in ("output_args", "global_args", "retry_interval", "apple_compatibility", "gpu"):
        if unmapped in ffmpeg:
            notes.unmapped(f"{key}.{unmapped}", "camfleet decodes with its own settings")
    return out
