"""The configuration checked against the installed pipeline elements: one entry point for everyone.

``config`` cannot import the pipeline (the pipeline imports ``config``), so
its loader and schema export take an
:class:`~camfleet.config.elements.ElementCatalog`. This module is the only
place that builds one from the registry (:func:`element_catalog`) and hands it
in. The CLI (``camfleet config check``/``schema``, ``camfleet run``), the
API's validate endpoint and its staged-changes apply all call the functions
here, so a typo in ``track: {max_dissapeared_s: 3}`` is reported the same way
everywhere: ``FILE:LINE:COL: pipelines.default[2].track.max_dissapeared_s:
unknown key ... (did you mean 'max_disappeared_s'?)``. The settings are
checked by :func:`camfleet.pipeline.registry.build_config`, the very call that
builds the element at run time, so the check cannot disagree with the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from typing import Any

from camfleet.config import Config, ConfigError, ConfigIssue
from camfleet.config import config_json_schema as _config_json_schema
from camfleet.config import element_issues as _element_issues
from camfleet.config import load_config as _load_config
from camfleet.config import load_config_text as _load_config_text

from .element import Element
from .registry import available, build_config

__all__ = [
    "RegistryCatalog",
    "config_json_schema",
    "config_json_schema_text",
    "element_catalog",
    "element_issues",
    "load_config",
    "load_config_text",
]


class RegistryCatalog:
    """The registry's elements as an :class:`~camfleet.config.elements.ElementCatalog`."""

    def __init__(self, classes: Mapping[str, type[Element[Any]]]) -> None:
        self._classes = dict(classes)

    def names(self) -> Collection[str]:
        """Every element name: the built-ins and the ``camfleet.elements`` entry points."""
        return self._classes.keys()

    def validate(self, name: str, params: Mapping[str, Any]) -> None:
        """Check ``params`` as the pipeline will when it builds the element (``ValidationError``)."""
        build_config(self._classes[name], dict(params))

    def settings_schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema of the element's ``config_type``."""
        return self._classes[name].config_type.model_json_schema(mode="validation")


def element_catalog(source: str | None = None) -> RegistryCatalog:
    """The installed elements (built-ins and plugins, loaded now); ``source`` names the file for errors.

    Raises:
        ConfigError: a plugin's entry point cannot be loaded or is not an element.
    """
    try:
        return RegistryCatalog(available())
    except Exception as exc:  # an installed plugin is broken: say so, not a traceback
        problem = f"cannot load the installed pipeline elements: {type(exc).__name__}: {exc}"
        raise ConfigError([ConfigIssue("pipelines", None, None, problem)], source) from None


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, require_env: bool = True
) -> Config:
    """:func:`camfleet.config.load_config` with every element's settings validated (raises ConfigError)."""
    return _load_config(path, env=env, require_env=require_env, elements=element_catalog(str(path)))


def load_config_text(
    text: str,
    *,
    source: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    require_env: bool = True,
) -> Config:
    """:func:`camfleet.config.load_config_text`, every element's settings validated (raises ConfigError)."""
    return _load_config_text(text, source=source, base_dir=base_dir, env=env, require_env=require_env,
                             elements=element_catalog(source))


def element_issues(config: Config) -> list[ConfigIssue]:
    """The element-settings problems of a configuration already built (paths, no positions).

    For a :class:`Config` that did not come through :func:`load_config_text`
    (built in code, or read before a plugin changed): what applying it checks.
    """
    return _element_issues(config.model_dump(mode="json"), element_catalog())


def config_json_schema() -> dict[str, Any]:
    """The configuration's JSON Schema, with the settings of every element installed now."""
    return _config_json_schema(element_catalog())


def config_json_schema_text() -> str:
    """:func:`config_json_schema` as indented JSON text, ending in a newline."""
    return json.dumps(config_json_schema(), indent=2, sort_keys=False) + "\n"
