"""JSON Schema of the configuration, for editors (YAML language servers) and other tools.

Generated from the pydantic models, so it cannot drift from what the loader
accepts; pipeline element names are those installed when it is generated.
Point an editor at it with a first line such as
``# yaml-language-server: $schema=camfleet.schema.json``.
"""

from __future__ import annotations

import json
from typing import Any

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


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a camfleet configuration file."""
    schema = Config.model_json_schema(mode="validation")
    _close_pattern_objects(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "camfleet configuration",
    }


def config_json_schema_text() -> str:
    """:func:`config_json_schema` as indented JSON text, ending in a newline."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=False) + "\n"
