"""Finding elements by name: the built-ins plus the ``camfleet.elements`` entry points.

This module is the one home of the built-in element list (:data:`BUILTINS`);
the node's forkserver preloads :func:`builtin_modules` from it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from typing import Any

from .element import Element, ElementConfig

ENTRY_POINT_GROUP = "camfleet.elements"

BUILTINS: dict[str, str] = {
    "motion": "motion:MotionElement",
    "detect": "detect:DetectElement",
    "track": "track:TrackElement",
    "zones": "zones:ZonesElement",
    "events": "events:EventsElement",
    "snapshot": "snapshot:SnapshotElement",
}
"""The built-in elements: name -> ``"<module of camfleet.pipeline>:<class>"``."""


class UnknownElement(LookupError):
    """A pipeline names an element that no installed package provides."""


def builtin_modules() -> list[str]:
    """The modules of the built-in elements (what a forkserver should import before it forks)."""
    return [f"{__package__}.{target.partition(':')[0]}" for target in BUILTINS.values()]


def _builtins() -> dict[str, type[Element[Any]]]:
    # imported on first use: the built-ins import this module
    found: dict[str, type[Element[Any]]] = {}
    for name, target in BUILTINS.items():
        module, _, cls = target.partition(":")
        found[name] = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
    return found


def available() -> dict[str, type[Element[Any]]]:
    """Every known element class by name (entry points cannot shadow built-ins)."""
    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Element)):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a camfleet Element")
        found[ep.name] = cls
    found.update(_builtins())
    return found


def element_class(name: str) -> type[Element[Any]]:
    """The element class called ``name``; :class:`UnknownElement` with a suggestion if none."""
    known = available()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
    raise UnknownElement(f"unknown pipeline element {name!r}{hint}")


def build_config(cls: type[Element[Any]], params: dict[str, Any] | None) -> ElementConfig:
    """Validate ``params`` against the element's config type (raises pydantic's ValidationError)."""
    return cls.config_type.model_validate(params or {})
