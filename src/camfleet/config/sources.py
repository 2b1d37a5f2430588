"""Where the configuration in force comes from: a file, an embedded default, and the cameras overlay.

A :class:`ConfigSource` yields a validated :class:`~camfleet.config.Config`
each time it is asked (at start-up and at every reload). :class:`FileSource`
reads a YAML file; :class:`FixedSource` hands out a configuration built in code
(``camfleet run`` without a file). :class:`OverlaySource` lays the cameras
applied through the API over another source's: they are kept in the store
(``set_applied_cameras``), so API changes survive a restart and a file reload;
cameras deleted through the API stay deleted even when the file defines them.

The store is reached through the small :class:`CameraOverlay` protocol, so
``config`` does not depend on ``store``. An overlay that cannot be read in full
(database down, key lost) raises :class:`OverlayUnavailable`; the source then
runs the file's cameras with what could be read (or the last overlay it read)
and lists what is missing in :attr:`OverlaySource.problems`, never stopping a
camera the file defines.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import yaml

from .elements import ElementCatalog
from .load import ConfigError, ConfigIssue, load_config, load_config_text
from .model import Config

__all__ = [
    "CameraOverlay",
    "ConfigSource",
    "FileSource",
    "FixedSource",
    "OverlaySource",
    "OverlayUnavailable",
    "camera_dicts",
    "overlay_cameras",
    "with_cameras",
]

log = logging.getLogger("camfleet.config")


class OverlayUnavailable(Exception):
    """The overlay cannot be read in full; the message says why and names the cameras (no credential).

    ``readable`` holds the applied cameras that could be read (None: none, e.g.
    the database is down); ``unreadable`` names those that could not.
    """

    def __init__(self, message: str, readable: dict[str, dict[str, Any]] | None = None,
                 unreadable: list[str] | None = None) -> None:
        super().__init__(message)
        self.readable = readable
        self.unreadable = unreadable or []


class ConfigSource(Protocol):
    """Anything that produces the configuration to run."""

    def load(self) -> Config:
        """The configuration, validated.

        Raises:
            ConfigError: it does not validate (with every issue).
        """
        ...


class CameraOverlay(Protocol):
    """The cameras applied and deleted through the API, as the store keeps them."""

    def applied_cameras(self) -> dict[str, dict[str, Any]]:
        """Applied camera configs by name (plain dicts, as the configuration file would give them).

        Raises:
            OverlayUnavailable: some or all cannot be read (what could be read travels with it).
        """
        ...

    def deleted_cameras(self) -> set[str]:
        """Names of the cameras deleted through the API.

        Raises:
            OverlayUnavailable: they cannot be read.
        """
        ...


class FileSource:
    """A YAML configuration file, read again at every :meth:`load`.

    ``elements`` checks each pipeline element's settings too (the pipeline
    registry's catalog, :func:`camfleet.pipeline.validate.element_catalog`).
    """

    def __init__(self, path: Path, elements: ElementCatalog | None = None) -> None:
        self.path = path
        self.elements = elements

    def load(self) -> Config:
        """The file's configuration (see :func:`~camfleet.config.load_config`)."""
        return load_config(self.path, elements=self.elements)


class FixedSource:
    """A configuration built in code (the embedded default): the same one at every :meth:`load`."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def load(self) -> Config:
        """The configuration given at construction."""
        return self.config


class OverlaySource:
    """``base``'s configuration with the cameras applied through the API laid over its own.

    ``elements``, when given, checks element settings of the overlaid result.
    When the overlay cannot be read in full, the file's cameras still run:
    readable applied cameras are laid over them, an unreadable one is taken from
    the last overlay read (if any), and :attr:`problems` says what is missing.
    """

    def __init__(self, base: ConfigSource, overlay: CameraOverlay,
                 elements: ElementCatalog | None = None) -> None:
        self.base = base
        self.overlay = overlay
        self.elements = elements
        self.problems: list[str] = []
        """What the last :meth:`apply` could not read (empty when the whole overlay was read)."""
        self._applied: dict[str, dict[str, Any]] = {}  # last applied set read in full
        self._deleted: set[str] = set()

    def load(self) -> Config:
        """``base.load()`` with the overlay applied (see :func:`overlay_cameras`)."""
        return self.apply(self.base.load())

    def apply(self, config: Config) -> Config:
        """``config`` (already loaded from ``base``) with the overlay applied, as much as can be read."""
        problems: list[str] = []
        try:
            applied = self.overlay.applied_cameras()
            self._applied = dict(applied)
        except OverlayUnavailable as exc:
            problems.append(str(exc))
            if exc.readable is None:  # nothing readable (store down): the last overlay read, if any
                applied = dict(self._applied)
            else:  # the readable ones now, the unreadable as last read (a running camera keeps running)
                applied = dict(exc.readable)
                applied.update({n: self._applied[n] for n in exc.unreadable if n in self._applied})
        try:
            deleted = self.overlay.deleted_cameras()
            self._deleted = set(deleted)
        except OverlayUnavailable as exc:
            if not problems:
                problems.append(str(exc))
            deleted = set(self._deleted)
        self.problems = problems
        for problem in problems:
            log.error("config: %s; running the configuration file's cameras", problem)
        return _overlaid(config, applied, deleted, self.elements)


def overlay_cameras(config: Config, overlay: CameraOverlay, *,
                    elements: ElementCatalog | None = None) -> Config:
    """``config`` with the cameras applied through the API put over its own.

    Cameras deleted through the API are removed from ``config``'s set too.

    Raises:
        ConfigError: the overlaid cameras no longer fit the file (e.g. a pipeline they use was removed);
            the issues name the camera.
        OverlayUnavailable: the overlay cannot be read (use :class:`OverlaySource` to run without it).
    """
    return _overlaid(config, overlay.applied_cameras(), overlay.deleted_cameras(), elements)


def _overlaid(config: Config, applied: dict[str, dict[str, Any]], deleted: set[str],
              elements: ElementCatalog | None) -> Config:
    if not applied and not deleted & set(config.cameras):
        return config
    cameras = camera_dicts(config)
    cameras.update(applied)
    for name in deleted:
        cameras.pop(name, None)
    return with_cameras(config, cameras, elements=elements)


def camera_dicts(config: Config) -> dict[str, dict[str, Any]]:
    """Each camera of ``config`` as a plain dict (defaults merged)."""
    return {name: cam.model_dump(mode="json", exclude_none=True) for name, cam in config.cameras.items()}


def with_cameras(base: Config, cameras: dict[str, dict[str, Any]], *,
                 elements: ElementCatalog | None = None) -> Config:
    """``base`` with its ``cameras`` section replaced, validated by the real configuration loader.

    Raises:
        ConfigError: with every issue (paths such as ``cameras.door.detect.fps``).
    """
    data = base.model_dump(mode="json", exclude_none=True)
    data["cameras"] = cameras
    try:
        # libyaml's emitter when present: the text is only parsed again below, and the pure-Python
        # one was a third of checking a fleet of thousands of cameras
        text = yaml.dump(_escape(data), Dumper=_DUMPER, sort_keys=False)
    except (RecursionError, yaml.YAMLError) as exc:
        problem = f"cannot be written as YAML: {type(exc).__name__}"
        raise ConfigError([ConfigIssue("cameras", None, None, problem)]) from None
    return load_config_text(text, source=base.source or "<api>", base_dir=base._base_dir, env={},
                            elements=elements)


_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _escape(value: Any) -> Any:
    """``value`` with every ``${`` in strings written ``$${`` (no substitution when re-loaded)."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value
