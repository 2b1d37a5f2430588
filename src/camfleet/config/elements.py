"""What the configuration needs to know about pipeline elements, without importing the pipeline.

Element names and their typed settings are owned by the pipeline registry
(:mod:`camfleet.pipeline.registry`), but the pipeline imports ``config``, so
``config`` cannot import the pipeline without a cycle (and would pull OpenCV,
SciPy and the tracker into every configuration read). Instead the loader and
the JSON Schema export accept an :class:`ElementCatalog`: a narrow protocol
the pipeline package implements (:func:`camfleet.pipeline.validate.element_catalog`)
and hands in. The dependency stays downward; ``config`` only names the shape
it needs.

Without a catalog, only element *names* are checked (built-ins plus the
``camfleet.elements`` entry points, read without importing them); with one,
every element's settings are validated by that element's own typed model.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any, Protocol

from .model import ConfigPath

__all__ = ["ElementCatalog", "pipeline_entries", "settings_errors"]


class ElementCatalog(Protocol):
    """The pipeline elements a configuration may use, and how to check their settings."""

    def names(self) -> Collection[str]:
        """Every element name that may appear in a pipeline."""
        ...

    def validate(self, name: str, params: Mapping[str, Any]) -> None:
        """Check the settings of element ``name`` (known); raise pydantic's ``ValidationError`` if invalid."""
        ...

    def settings_schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema of element ``name``'s settings (its own ``$defs`` included)."""
        ...


def pipeline_entries(data: Mapping[str, Any]) -> Iterator[tuple[ConfigPath, str, Any]]:
    """Each pipeline element in configuration ``data``: its path prefix, name and raw settings.

    The prefix is ``("pipelines", <pipeline>, <index>, <name>)``, where an error's
    location inside the element's settings is appended. Entries that are not
    ``name`` or ``{name: settings}`` are skipped: the model reports those.
    """
    pipelines = data.get("pipelines")
    if not isinstance(pipelines, Mapping):
        return
    for pname, entries in pipelines.items():
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            if isinstance(entry, str):
                name, params = entry, None
            elif isinstance(entry, Mapping) and len(entry) == 1:
                ((name, params),) = entry.items()
            else:
                continue
            if isinstance(name, str):
                yield ("pipelines", pname, i, name), name, params


def settings_errors(
    data: Mapping[str, Any], catalog: ElementCatalog
) -> Iterator[tuple[ConfigPath, str, Exception]]:
    """The settings of every known element in ``data`` that ``catalog`` rejects.

    Yields the path prefix (see :func:`pipeline_entries`), the element name and
    the exception: pydantic's ``ValidationError`` normally, anything else when
    a plugin's own validator raised it (one broken plugin must not hide the
    other problems of the file). Unknown names are skipped: the reference
    check reports those, with a suggestion.
    """
    known = set(catalog.names())
    for prefix, name, params in pipeline_entries(data):
        if name not in known:
            continue
        settings = {} if params is None else params  # `- track:` with nothing after it: the defaults
        if not isinstance(settings, Mapping):
            continue  # ElementSpec reports "must be a mapping"
        try:
            catalog.validate(name, settings)
        except Exception as exc:  # reported as a configuration issue
            yield prefix, name, exc
