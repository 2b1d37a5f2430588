"""Checks and transforms on configuration data as plain mappings, before or beside the models.

* :func:`merge_defaults` deep-merges ``defaults`` into every camera (and
  says where each merged value came from, for error positions);
* :func:`reference_problems` checks references across sections (pipeline
  element names, models, detectors, each camera's pipeline);
* :func:`recordings_dir_problem` refuses a recordings directory that would
  contain the data directory;
* :func:`format_path` writes a :data:`~camfleet.config.base.ConfigPath` the
  way error messages show it.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .base import DEFAULT_DATA_DIR, ConfigPath

__all__ = [
    "Problem",
    "format_path",
    "merge_defaults",
    "recordings_dir_problem",
    "reference_problems",
]


def recordings_dir_problem(data_dir: str | None, recordings_dir: str, base: Path | None = None) -> str | None:
    """Why ``storage.recordings_dir`` may not be used with ``data_dir``, or None when it may.

    Refused: the filesystem root, and any directory that contains the data
    directory (``.``, ``..``, a parent of an absolute ``data_dir``). A relative
    ``data_dir`` is resolved against ``base`` when given; without it only what
    can be decided without knowing the configuration file's folder is checked.
    """
    rec = Path(os.path.normpath(Path(recordings_dir).expanduser()))
    if rec.is_absolute() and rec == Path(rec.anchor):
        return "the recordings directory must not be the filesystem root '/'"
    if not rec.is_absolute():
        if all(part == ".." for part in rec.parts) or rec == Path("."):
            return (f"the recordings directory {recordings_dir!r} contains the data directory "
                    "(the database and keys would be served and swept): choose a folder inside or beside it")
        return None  # under data_dir, or beside it ("../footage"): never a parent of it
    data = Path(data_dir or DEFAULT_DATA_DIR).expanduser()
    if not data.is_absolute():
        if base is None:
            return None
        data = base / data
    data = Path(os.path.normpath(data))
    if data == rec or rec in data.parents:
        return (f"the recordings directory {recordings_dir!r} contains the data directory {str(data)!r} "
                "(the database and keys would be served and swept): choose a folder inside or beside it")
    return None


def _deep_merge(
    base: Mapping[str, Any], over: Mapping[str, Any], base_path: ConfigPath, out_path: ConfigPath,
    origins: dict[ConfigPath, ConfigPath],
) -> dict[str, Any]:
    result = dict(over)
    for key, value in base.items():
        mine = over.get(key)
        if key not in over or mine is None:
            result[key] = copy.deepcopy(value)
            origins[(*out_path, key)] = (*base_path, key)
        elif isinstance(value, Mapping) and isinstance(mine, Mapping):
            result[key] = _deep_merge(value, mine, (*base_path, key), (*out_path, key), origins)
    return result


def merge_defaults(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[ConfigPath, ConfigPath]]:
    """``data`` with ``defaults`` deep-merged into every camera, and where merged values came from.

    Mappings merge key by key; anything else (lists included) is replaced by
    the camera's value; a camera's ``null`` takes the default. The second
    value maps each merged-in location (``("cameras", "door", "detect")``) to
    its origin (``("defaults", "detect")``). Malformed input is left as it is
    for validation to report.
    """
    out = dict(data)
    origins: dict[ConfigPath, ConfigPath] = {}
    defaults, cameras = data.get("defaults"), data.get("cameras")
    if not isinstance(defaults, Mapping) or not defaults or not isinstance(cameras, Mapping):
        return out, origins
    merged: dict[Any, Any] = {}
    for name, camera in cameras.items():
        if isinstance(camera, Mapping):
            merged[name] = _deep_merge(defaults, camera, ("defaults",), ("cameras", name), origins)
        elif camera is None:
            merged[name] = _deep_merge(defaults, {}, ("defaults",), ("cameras", name), origins)
        else:
            merged[name] = camera
    out["cameras"] = merged
    return out, origins


class Problem(NamedTuple):
    """A cross-reference problem found by :func:`reference_problems`.

    ``at_key`` says the problem is the mapping key at ``path`` itself (an
    unknown element name), not its value.
    """

    path: ConfigPath
    message: str
    suggestion: str | None = None
    at_key: bool = False


def _suggest(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _dangling(kind: str, name: str, section: str, choices: list[str]) -> tuple[str, str | None]:
    if not choices:
        return f"{kind} {name!r} is not defined: '{section}' is empty", None
    return f"{kind} {name!r} is not defined under '{section}'", _suggest(name, choices)


def reference_problems(
    data: Mapping[str, Any], elements: Callable[[], set[str]] | None = None
) -> list[Problem]:
    """Cross-section checks on configuration data (merged, as plain mappings).

    * every pipeline element name is one of ``elements()`` (the pipeline
      registry's names; not checked when ``elements`` is None);
    * a ``detect`` element's ``model`` names a model and its ``detector`` a
      detector, and the two use the same runtime;
    * every camera's ``pipeline`` names a pipeline.

    Values of the wrong type are skipped: validation reports those.
    """
    problems: list[Problem] = []
    models = data.get("models")
    models = models if isinstance(models, Mapping) else {}
    detectors = data.get("detectors")
    detectors = detectors if isinstance(detectors, Mapping) else {}
    pipelines = data.get("pipelines")
    pipelines = pipelines if isinstance(pipelines, Mapping) else {}
    cameras = data.get("cameras")
    cameras = cameras if isinstance(cameras, Mapping) else {}
    known: set[str] | None = None

    for pname, elements_ in pipelines.items():
        if not isinstance(elements_, list):
            continue
        for i, entry in enumerate(elements_):
            name: Any
            params: Any
            at: ConfigPath
            if isinstance(entry, str):
                name, params, at = entry, {}, (i,)
            elif isinstance(entry, Mapping) and len(entry) == 1:
                ((name, params),) = entry.items()
                at = (i, name)
            else:
                continue
            if not isinstance(name, str):
                continue
            here: ConfigPath = ("pipelines", pname, *at)
            if elements is not None:
                known = known if known is not None else elements()
            if known is not None and name not in known:
                hint = _suggest(name, sorted(known))
                problems.append(Problem(
                    here, f"unknown pipeline element {name!r}",
                    hint or f"known elements: {', '.join(sorted(known))}", at_key=len(at) == 2,
                ))
                continue
            if name != "detect" or not isinstance(params, Mapping):
                continue
            model_id, detector_id = params.get("model"), params.get("detector")
            model = detector = None
            if isinstance(model_id, str):
                model = models.get(model_id)
                if model is None:
                    message, hint = _dangling("model", model_id, "models", [str(k) for k in models])
                    problems.append(Problem((*here, "model"), message, hint))
            if isinstance(detector_id, str):
                detector = detectors.get(detector_id)
                if detector is None:
                    names = [str(k) for k in detectors]
                    message, hint = _dangling("detector", detector_id, "detectors", names)
                    problems.append(Problem((*here, "detector"), message, hint))
            if isinstance(model, Mapping) and isinstance(detector, Mapping):
                mr, dr = model.get("runtime"), detector.get("runtime")
                if isinstance(mr, str) and isinstance(dr, str) and mr != dr:
                    problems.append(Problem(
                        (*here, "detector"),
                        f"detector {detector_id!r} runs {dr} but model {model_id!r} needs {mr}",
                    ))

    for cname, camera in cameras.items():
        if not isinstance(camera, Mapping):
            continue
        pipeline = camera.get("pipeline")
        if isinstance(pipeline, str) and pipeline not in pipelines:
            message, hint = _dangling("pipeline", pipeline, "pipelines", [str(k) for k in pipelines])
            problems.append(Problem(("cameras", cname, "pipeline"), message, hint))
    return problems


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(path: ConfigPath) -> str:
    """``("cameras", "door", "sources", 0, "url")`` as ``cameras.door.sources[0].url``.

    Keys that are not plain names are quoted: ``zones."front yard"``.
    """
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            text = seg if _PLAIN_KEY.fullmatch(seg) else '"' + seg.replace('"', '\\"') + '"'
            out += f".{text}" if out else text
    return out
