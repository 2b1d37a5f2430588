"""Reading the configuration: YAML with positions, ``${ENV}`` substitution, errors that say where.

:func:`load_config` (a file) and :func:`load_config_text` (a string) return a
validated :class:`~camfleet.config.model.Config` or raise :class:`ConfigError`
listing *every* problem found, each a :class:`ConfigIssue` with the path in
the data (``cameras.door.detect.fps``), the line and column in the file, a
message and, for a misspelt key or name, the closest valid one.

Steps:

1. YAML is parsed (PyYAML, safe) into plain data while the position of every
   key and value is recorded. Anchors, aliases and ``<<`` merge keys work;
   duplicate keys are errors. Mapping keys are always strings, as written.
2. ``${VAR}`` and ``${VAR:-default}`` in string values are replaced from the
   environment (``$${`` writes a literal ``${``). An unset variable without a
   default is an error naming it and where it is used. In an unquoted value
   the result is read as YAML would read it (``fps: ${FPS:-5}`` is a number);
   quote the value to keep a string.
3. ``defaults`` are deep-merged into every camera (the camera's values win).
4. The result is validated by the pydantic models, and cross-references
   (pipelines, models, detectors, element names) are checked.
5. Given an :class:`~camfleet.config.elements.ElementCatalog` (the pipeline
   registry hands one in: :mod:`camfleet.pipeline.validate`), every pipeline
   element's settings are validated by that element's typed model, and its
   errors are placed and worded like every other error of the file.

This module is over 500 lines on purpose: positions are recorded while the
YAML is built and consumed when pydantic's errors (the configuration's and
each element's) are turned into issues; split apart, the two halves would
share private structures across modules. (A split into YAML-with-positions
and error mapping is possible once the parallel edits to this file settle.)

Credentials never reach an error: URLs in messages are masked
(:func:`camfleet.redact.mask_text`), substituted values are redacted and
no message quotes an input value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from camfleet.redact import mask_text

from .elements import ElementCatalog, settings_errors
from .model import Config, ConfigPath, format_path, merge_defaults, reference_problems

__all__ = [
    "ConfigError", "ConfigIssue", "Positions", "element_issues", "load_config", "load_config_text",
    "parse_yaml",
]

_MAX_NODES = 1_000_000  # alias expansion bound ("billion laughs")


@dataclasses.dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration.

    Attributes:
        path: where in the data, e.g. ``cameras.door.detect.fps`` (empty: the whole file).
        line: 1-based line in the file, if known.
        column: 1-based column in the file, if known.
        message: what is wrong (never contains credentials).
        suggestion: e.g. ``"did you mean 'fps'?"``, when a close valid key or name exists.
    """

    path: str
    line: int | None
    column: int | None
    message: str
    suggestion: str | None = None

    def format(self, source: str | None = None) -> str:
        """``FILE:LINE:COL: path: message (did you mean ...?)``; parts that are unknown are left out."""
        where = ":".join(str(p) for p in (source, self.line, self.column) if p is not None)
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.suggestion:
            text += f" ({self.suggestion})"
        return f"{where}: {text}" if where else text

    def __str__(self) -> str:
        return self.format()


class ConfigError(ValueError):
    """The configuration is invalid; ``issues`` lists every problem found, in file order."""

    def __init__(self, issues: list[ConfigIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        count = len(self.issues)
        head = f"{count} problem{'s' if count != 1 else ''} in configuration {source or ''}".rstrip()
        super().__init__("\n".join([head + ":", *(f"  {i.format(source)}" for i in self.issues)]))


# --------------------------------------------------------------------------- YAML with positions

_Pos = tuple[int, int]  # 1-based line, column


@dataclasses.dataclass
class Positions:
    """Where each key and value sits in the file, by data path."""

    keys: dict[ConfigPath, _Pos] = dataclasses.field(default_factory=dict)
    values: dict[ConfigPath, _Pos] = dataclasses.field(default_factory=dict)

    def find(self, path: ConfigPath, at_key: bool) -> _Pos | None:
        """Position of ``path``'s key (or value), else of its nearest recorded ancestor's key."""
        table = self.keys if at_key else self.values
        if path in table:
            return table[path]
        if path in self.keys:
            return self.keys[path]
        while path:
            path = path[:-1]
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
        return self.values.get((), (1, 1))


def _pos(mark: yaml.Mark | None) -> _Pos:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


_SUBST = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_SUBST_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


class _Builder:
    """Turns a composed YAML node tree into plain data, recording positions and issues."""

    loader: yaml.SafeLoader

    def __init__(self, env: Mapping[str, str], require_env: bool) -> None:
        self.env = env
        self.require_env = require_env
        self.positions = Positions()
        self.issues: list[tuple[ConfigPath, _Pos, str]] = []
        self.secrets: set[str] = set()
        self._active: set[int] = set()
        self._count = 0

    def build(self, node: yaml.Node, path: ConfigPath) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            raise _TooLarge
        self.positions.values.setdefault(path, _pos(node.start_mark))
        if id(node) in self._active:
            self.issues.append((path, _pos(node.start_mark), "recursive alias: a node cannot contain itself"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
            assert isinstance(node, yaml.ScalarNode)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: ConfigPath) -> dict[str, Any]:
        try:
            self.loader.flatten_mapping(node)  # resolves '<<' merge keys
        except yaml.MarkedYAMLError as exc:
            self.issues.append((path, _pos(exc.problem_mark), _yaml_message(exc)))
            return {}
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                message = "a key must be a plain name, not a list or mapping"
                self.issues.append((path, _pos(knode.start_mark), message))
                continue
            key = str(knode.value)
            here = (*path, key)
            if key in out:
                first = self.positions.keys.get(here, (0, 0))[0]
                self.issues.append((here, _pos(knode.start_mark),
                                    f"duplicate key {key!r} (first at line {first})"))
                continue
            self.positions.keys[here] = _pos(knode.start_mark)
            out[key] = self.build(vnode, here)
        return out

    def _scalar(self, node: yaml.ScalarNode, path: ConfigPath) -> Any:
        value = self.loader.construct_object(node, deep=True)
        if not isinstance(value, str) or "$" not in value:
            return value
        text = self._substitute(node.value, path, _pos(node.start_mark))
        if text == node.value:
            return value
        if node.style is None:  # unquoted: read the result as YAML would
            tag = self.loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
            try:
                return self.loader.construct_object(yaml.ScalarNode(tag, text, style=None), deep=True)
            except (yaml.YAMLError, ValueError):
                return text
        return text

    def _substitute(self, text: str, path: ConfigPath, pos: _Pos) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            if m.group(1) is None:
                self.issues.append((path, pos, "'${' without a closing '}': write ${NAME}, or $${ for a "
                                   "literal '${'"))
                return m.group(0)
            body = _SUBST_BODY.fullmatch(m.group(1))
            if body is None:
                # the text is not quoted: it may be part of a credential
                self.issues.append((path, pos, "invalid ${...} substitution: write ${NAME} or "
                                   "${NAME:-default}, NAME made of letters, digits and '_'"))
                return m.group(0)
            name, default = body.group(1), body.group(2)
            value = self.env.get(name)
            if value is not None and (value != "" or default is None):
                if len(value) >= 4:
                    self.secrets.add(value)
                return value
            if default is not None:
                return default
            if self.require_env:
                self.issues.append((path, pos, f"environment variable {name} is not set "
                                   f"(set it, or write ${{{name}:-default}})"))
            return m.group(0)

        return _SUBST.sub(one, text)


class _TooLarge(Exception):
    pass


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    # Built from the problem alone: str(exc) quotes the offending line, which may hold a password.
    parts = [p for p in (exc.context, exc.problem) if p]
    text = "; ".join(parts) or "invalid YAML"
    if exc.context_mark is not None and exc.problem_mark is not None and \
            exc.context_mark.line != exc.problem_mark.line:
        text += f" (started at line {exc.context_mark.line + 1})"
    return "YAML syntax error: " + text


def parse_yaml(
    text: str, *, env: Mapping[str, str] | None = None, require_env: bool = True
) -> tuple[Any, Positions, list[ConfigIssue], set[str]]:
    """Parse ``text`` into plain data with substitution done.

    Returns the data (None when it could not be parsed), the positions of
    keys and values, the issues found (syntax, duplicate keys, unset
    variables) and the substituted values (to be redacted from messages).
    """
    builder = _Builder(os.environ if env is None else env, require_env)
    loader: yaml.SafeLoader | None = None
    try:
        loader = builder.loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, builder.positions, [ConfigIssue("", 1, 1, "the configuration is empty")], set()
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        line, col = _pos(exc.problem_mark or exc.context_mark)
        return None, builder.positions, [ConfigIssue("", line, col, mask_text(_yaml_message(exc)))], set()
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        msg = f"YAML error: character #x{char:04x} is not allowed"
        return None, builder.positions, [ConfigIssue("", line, col, msg)], set()
    except yaml.YAMLError as exc:
        issue = ConfigIssue("", None, None, f"YAML error ({type(exc).__name__})")
        return None, builder.positions, [issue], set()
    except _TooLarge:
        return None, builder.positions, [ConfigIssue("", None, None,
                                                    "too many nodes after alias expansion")], set()
    except RecursionError:
        return None, builder.positions, [ConfigIssue("", None, None, "the YAML is nested too deeply")], set()
    finally:
        if loader is not None:
            loader.dispose()
    issues = [ConfigIssue(format_path(p), line, col, msg) for p, (line, col), msg in builder.issues]
    return data, builder.positions, issues, builder.secrets


# --------------------------------------------------------------------------- validation errors


_YAML_TYPE = {
    dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
    float: "a number", type(None): "null (empty)",
}


def _type_name(value: Any) -> str:
    return next((n for t, n in _YAML_TYPE.items() if isinstance(value, t)), type(value).__name__)


def _data_path(loc: tuple[int | str, ...], data: Any, error_type: str) -> tuple[ConfigPath, bool]:
    """The path in ``data`` that pydantic's ``loc`` points at, and whether the problem is the key itself.

    pydantic adds segments that are not in the data (union members, ``[key]``
    for a bad dict key); they are dropped.
    """
    out: list[str | int] = []
    cur = data
    at_key = error_type == "extra_forbidden"
    for i, seg in enumerate(loc):
        if seg == "[key]":
            at_key = True
            continue
        in_mapping = isinstance(cur, Mapping) and seg in cur
        if in_mapping or (isinstance(cur, list) and isinstance(seg, int) and 0 <= seg < len(cur)):
            out.append(seg)
            cur = cur[seg]
        elif error_type == "missing" and i == len(loc) - 1 and isinstance(seg, str):
            out.append(seg)
    return tuple(out), at_key


def _schema_keys(schema: dict[str, Any], path: ConfigPath) -> list[str]:
    """The keys the JSON schema allows in the mapping at ``path`` (for suggestions)."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> list[dict[str, Any]]:
        if "$ref" in node:
            return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return [r for sub in node["anyOf"] for r in resolve(sub)]
        if "allOf" in node:
            return [r for sub in node["allOf"] for r in resolve(sub)]
        return [node]

    nodes = resolve(schema)
    for seg in path:
        nxt: list[dict[str, Any]] = []
        for node in nodes:
            if isinstance(seg, int):
                if isinstance(node.get("items"), dict):
                    nxt += resolve(node["items"])
            elif seg in node.get("properties", {}):
                nxt += resolve(node["properties"][seg])
            elif isinstance(node.get("additionalProperties"), dict):
                nxt += resolve(node["additionalProperties"])
            else:  # a key that breaks the pattern is reported on its own; look inside anyway
                nxt += [r for sub in node.get("patternProperties", {}).values() for r in resolve(sub)]
        nodes = nxt
    return sorted({k for node in nodes for k in node.get("properties", {})})


def _message(err: Mapping[str, Any], key: str | int | None) -> str:
    kind, msg = str(err["type"]), str(err["msg"])
    if kind == "extra_forbidden":
        return f"unknown key {key!r}"
    if kind == "missing":
        return f"missing required key {key!r}"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind.endswith("_type"):
        msg += f" (got {_type_name(err.get('input'))})"
    return msg


_GOT = re.compile(r" \(got [^)]*\)$")


def _union_message(messages: list[str]) -> str:
    """One message for the alternatives of a union that all failed."""
    messages = list(dict.fromkeys(messages))
    if len(messages) == 1:
        return messages[0]
    prefix = "Input should be "
    if all(m.startswith(prefix) for m in messages):
        got = _GOT.search(messages[0])
        parts = [_GOT.sub("", m)[len(prefix):] for m in messages]
        return prefix + " or ".join(dict.fromkeys(parts)) + (got.group(0) if got else "")
    return "expected one of: " + "; ".join(messages)


class _Converter:
    """Turns pydantic errors and reference problems into positioned, redacted issues."""

    def __init__(self, merged: Any, origins: dict[ConfigPath, ConfigPath], positions: Positions,
                 secrets: set[str]) -> None:
        self.merged = merged
        self.origins = origins
        self.positions = positions
        self.secrets = sorted(secrets, key=len, reverse=True)
        self._schema: dict[str, Any] | None = None

    def schema(self) -> dict[str, Any]:
        if self._schema is None:
            self._schema = Config.model_json_schema()
        return self._schema

    def origin(self, path: ConfigPath) -> ConfigPath:
        """Where ``path`` of the merged data was written (``defaults`` for merged-in values)."""
        for n in range(len(path), 0, -1):
            src = self.origins.get(path[:n])
            if src is not None:
                return (*src, *path[n:])
        return path

    def redact(self, text: str) -> str:
        text = mask_text(text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def issue(self, path: ConfigPath, at_key: bool, message: str, suggestion: str | None) -> ConfigIssue:
        src = self.origin(path)
        line, col = self.positions.find(src, at_key) or (None, None)
        return ConfigIssue(self.redact(format_path(src)), line, col, self.redact(message), suggestion)

    def from_validation(
        self, exc: ValidationError, prefix: ConfigPath = (), schema: dict[str, Any] | None = None
    ) -> list[ConfigIssue]:
        """One issue per location in ``exc`` (a union's alternatives are folded into one).

        ``prefix`` is where the validated value sits in the data (an element's
        settings: ``pipelines.default[1].track``) and ``schema`` its JSON
        Schema (for suggestions); by default the whole configuration.
        """
        by_path: dict[tuple[ConfigPath, bool], list[Mapping[str, Any]]] = {}
        for err in exc.errors(include_url=False):
            path, at_key = _data_path((*prefix, *err["loc"]), self.merged, str(err["type"]))
            by_path.setdefault((path, at_key), []).append(err)
        suggestions: dict[ConfigPath, str] = {}
        suggested: set[ConfigPath] = set()  # keys proposed for a misspelt key
        for (path, _), errs in by_path.items():
            key = path[-1] if path else None
            if errs[0]["type"] == "extra_forbidden" and isinstance(key, str):
                if path[:len(prefix)] != prefix:
                    continue
                valid = _schema_keys(schema if schema is not None else self.schema(), path[len(prefix):-1])
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
                if close:
                    suggestions[path] = f"did you mean {close[0]!r}?"
                    suggested.add((*path[:-1], close[0]))
                elif valid:
                    suggestions[path] = f"valid keys: {', '.join(valid)}"
            elif errs[0]["type"] == "literal_error" and isinstance(errs[0].get("input"), str):
                choices = re.findall(r"'([^']*)'", str(errs[0].get("ctx", {}).get("expected", "")))
                close = difflib.get_close_matches(errs[0]["input"], choices, n=1, cutoff=0.6)
                if close:
                    suggestions[path] = f"did you mean {close[0]!r}?"
        issues: list[ConfigIssue] = []
        for (path, at_key), errs in by_path.items():
            kind = str(errs[0]["type"])
            if kind == "missing" and path in suggested:
                continue  # 'missing sources' next to 'unknown key sourcs (did you mean sources?)'
            key = path[-1] if path else None
            message = _union_message([_message(e, key) for e in _prefer_range(errs)])
            if kind in ("greater_than_equal", "less_than_equal") and ("points" in path or "masks" in path):
                message += " (coordinates are normalised: 0..1 across and down the frame)"
            if path[:1] == ("cameras",) and len(path) == 2 and at_key:
                message = "invalid camera name: use 1-63 letters, digits, '_' or '-' (it becomes a ring key)"
            if kind == "missing" and path[:1] == ("cameras",) and len(path) == 3 and key == "pipeline":
                message = "no pipeline: set 'pipeline' on the camera or under 'defaults'"
            issues.append(self.issue(path, at_key, message, suggestions.get(path)))
        return issues


def _prefer_range(errs: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A union's errors without the "wrong type" ones when another alternative had the right type.

    ``min_score: 2`` against ``float | dict[str, float]`` fails as a number out of
    range and as "not a mapping"; only the first says what to fix.
    """
    fitting = [e for e in errs if not str(e["type"]).endswith("_type")]
    return fitting if fitting and len(fitting) < len(errs) else errs


def _element_issues(conv: _Converter, elements: ElementCatalog) -> list[ConfigIssue]:
    """Every pipeline element's settings checked by the element's own model, as positioned issues."""
    issues: list[ConfigIssue] = []
    for prefix, name, exc in settings_errors(conv.merged, elements):
        if isinstance(exc, ValidationError):
            issues += conv.from_validation(exc, prefix, elements.settings_schema(name))
        else:  # a plugin's validator raised something else; its text may quote the input, so name the type
            message = f"element {name!r} rejected its settings ({type(exc).__name__})"
            issues.append(conv.issue(prefix, True, message, None))
    return issues


def element_issues(data: Mapping[str, Any], elements: ElementCatalog) -> list[ConfigIssue]:
    """The problems of the element settings in configuration ``data`` (no positions: paths only).

    For a configuration that is already a :class:`Config` (``config.model_dump()``),
    e.g. one about to be applied that was not read by :func:`load_config_text`.
    """
    return _dedupe_sorted(_element_issues(_Converter(data, {}, Positions(), set()), elements))


def _dedupe_sorted(issues: list[ConfigIssue]) -> list[ConfigIssue]:
    """Issues in file order, each once (a default merged into many cameras is reported once)."""
    unique: dict[tuple[str, int | None, int | None, str], ConfigIssue] = {}
    for issue in issues:
        key = (issue.path, issue.line, issue.column, issue.message)
        if key not in unique or (issue.suggestion and not unique[key].suggestion):
            unique[key] = issue
    return sorted(unique.values(), key=lambda i: (i.line or 0, i.column or 0))


# --------------------------------------------------------------------------- entry points


def load_config_text(
    text: str,
    *,
    source: str = "<string>",
    base_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    require_env: bool = True,
    elements: ElementCatalog | None = None,
) -> Config:
    """Validate the configuration in ``text``.

    Args:
        text: the YAML.
        source: a name for messages (usually the file name; default ``<string>``).
        base_dir: directory a relative ``data_dir`` is resolved against (default: the cwd).
        env: variables for ``${VAR}`` (default: ``os.environ``).
        require_env: when False, an unset variable is left as written instead
            of being an error (to check a file where the secrets are not set).
        elements: the pipeline elements and their typed settings; when given,
            element names come from it and every element's settings are
            validated. Without it only names are checked (entry points are
            listed, not imported). :mod:`camfleet.pipeline.validate` passes the registry's.

    Raises:
        ConfigError: with every problem found.
    """
    data, positions, issues, secrets = parse_yaml(text, env=env, require_env=require_env)
    if data is None:
        raise ConfigError(issues, source)
    if not isinstance(data, dict):
        message = f"the configuration must be a mapping of sections, not {_type_name(data)}"
        issues.append(ConfigIssue("", 1, 1, message))
        raise ConfigError(issues, source)
    merged, origins = merge_defaults(data)
    conv = _Converter(merged, origins, positions, secrets)
    config: Config | None = None
    validation_issues: list[ConfigIssue] = []
    try:
        config = Config.model_validate(merged, context={"defaults_merged": True, "skip_references": True,
                                                        "base_dir": base_dir})  # relative data_dir
    except ValidationError as exc:
        validation_issues = conv.from_validation(exc)
    issues += validation_issues
    names = None if elements is None else (lambda: set(elements.names()))
    problems = reference_problems(merged, names)
    issues += [conv.issue(p.path, p.at_key, p.message, p.suggestion) for p in problems]
    if elements is not None:
        issues += _element_issues(conv, elements)
    if issues or config is None:
        raise ConfigError(_dedupe_sorted(issues), source)
    config._base_dir = Path(base_dir) if base_dir is not None else None
    config._source = source
    return config


def load_config(
    path: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    require_env: bool = True,
    elements: ElementCatalog | None = None,
) -> Config:
    """Read and validate the configuration file at ``path``.

    A relative ``data_dir`` is resolved against the file's directory;
    ``elements`` as for :func:`load_config_text`.

    Raises:
        ConfigError: the file cannot be read, or has problems (all of them listed).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
    else:
        return load_config_text(
            text, source=str(p), base_dir=p.resolve().parent, env=env, require_env=require_env,
            elements=elements,
        )
    raise ConfigError([ConfigIssue("", None, None, problem)], str(p))
