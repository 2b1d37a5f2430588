"""JSON Schema of the configuration, for editors (YAML language servers) and other tools.

Generated from the pydantic models, so it cannot drift from what the loader
accepts; pipeline element names are those installed when it is generated.
Given an :class:`~camfleet.config.elements.ElementCatalog` (the pipeline
registry's, through :func:`camfleet.pipeline.validate.config_json_schema`),
a pipeline entry is described as a one-key mapping ``{name: settings}`` whose
settings follow that element's own schema (under ``$defs``, ``element:NAME``),
so an editor flags ``track: {max_dissapeared_s: 3}`` as it is typed.
Point an editor at it with a first line such as
``# yaml-language-server: $schema=camfleet.schema.json``.
"""

from __future__ import annotations

import json
from typing import Any

from .elements import ElementCatalog
from .model import Config

__all__ = ["SCHEMA_ID", "config_json_schema", "config_json_schema_text"]

SCHEMA_ID = "https://camfleet.invalid/schema/config-v1.json"
"""The ``$id`` of the exported schema (a name, not a place to download it from)."""


def _close_pattern_objects(node: Any) -> None:
    """Objects whose keys must match a pattern (camera names) allow no other keys."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_objects(value)


def _pointer(name: str) -> str:
    """``name`` as one JSON Pointer segment (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")


def _rewrite_refs(node: Any, renamed: dict[str, str]) -> Any:
    """``node`` with every ``#/$defs/OLD`` reference pointing at ``#/$defs/NEW``."""
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v, renamed) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[len("#/$defs/"):] in renamed:
            out["$ref"] = "#/$defs/" + _pointer(renamed[ref[len("#/$defs/"):]])
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renamed) for v in node]
    return node


def _element_defs(elements: ElementCatalog) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``$defs`` for every element's settings and the ElementSpec schema that uses them.

    Each element's own ``$defs`` are hoisted under ``element:NAME:MODEL`` so two
    plugins' models of the same name cannot collide.
    """
    names = sorted(elements.names())
    defs: dict[str, Any] = {}
    by_name: dict[str, Any] = {}
    for name in names:
        settings = dict(elements.settings_schema(name))
        own = settings.pop("$defs", {})
        renamed = {old: f"element:{name}:{old}" for old in own}
        for old, sub in own.items():
            defs[renamed[old]] = _rewrite_refs(sub, renamed)
        key = f"element:{name}"
        defs[key] = _rewrite_refs(settings, renamed)
        # `- name:` with nothing after it means the defaults
        by_name[name] = {"anyOf": [{"$ref": "#/$defs/" + _pointer(key)}, {"type": "null"}]}
    spec = {
        "title": "ElementSpec",
        "description": "One step of a pipeline: {name: {settings}}, or just the name for the defaults.",
        "anyOf": [
            {"type": "string", "enum": names},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": by_name,
             "additionalProperties": False},
        ],
    }
    return defs, spec


def config_json_schema(elements: ElementCatalog | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a camfleet configuration file.

    With ``elements``, every pipeline element's settings are described by its
    own schema; without, only the element names are (settings: any mapping).
    """
    schema = Config.model_json_schema(mode="validation")
    if elements is not None:
        defs, spec = _element_defs(elements)
        schema["$defs"].update(defs)
        schema["$defs"]["ElementSpec"] = spec
    _close_pattern_objects(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "camfleet configuration",
    }


def config_json_schema_text(elements: ElementCatalog | None = None) -> str:
    """:func:`config_json_schema` as indented JSON text, ending in a newline."""
    return json.dumps(config_json_schema(elements), indent=2, sort_keys=False) + "\n"
