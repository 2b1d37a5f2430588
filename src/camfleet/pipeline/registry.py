"""Finding elements by name: the built-ins plus the ``camfleet.elements`` entry points."""

from __future__ import annotations

import difflib
import importlib.metadata
from typing import Any

from .element import Element, ElementConfig

ENTRY_POINT_GROUP = "camfleet.elements"


class UnknownElement(LookupError):
    """A pipeline names an element that no installed package provides."""


def _builtins() -> dict[str, type[Element[Any]]]:
    from .detect import DetectElement  # noqa: PLC0415 - the built-ins import this module
    from .events import EventsElement  # noqa: PLC0415
    from .motion import MotionElement  # noqa: PLC0415
    from .snapshot import SnapshotElement  # noqa: PLC0415
    from .track import TrackElement  # noqa: PLC0415
    from .zones import ZonesElement  # noqa: PLC0415

    elements: list[type[Element[Any]]] = [
        MotionElement, DetectElement, TrackElement, ZonesElement, EventsElement, SnapshotElement,
    ]
    return {e.name: e for e in elements}


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
