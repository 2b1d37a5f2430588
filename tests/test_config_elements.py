"""Element settings are part of the configuration's contract.

`camfleet config check`, the exported JSON Schema, the API's validate endpoint
and apply all check every pipeline element's settings against the element's
typed model (built-ins and plugins), with FILE:LINE:COL and suggestions.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import Field, model_validator
from typer.testing import CliRunner

import camfleet.pipeline.validate as pv
from camfleet.api import create_app
from camfleet.cli import config as config_cli
from camfleet.config import ApiSettings, Config, ConfigError, load_config_text
from camfleet.pipeline import Element, ElementConfig, FrameContext
from camfleet.runtime import Node
from camfleet.runtime.control import Listener, NodeStatus, ReloadResult
from camfleet.store import Store

pytestmark = pytest.mark.unit

HEAD = """\
models:
  ssd: {path: models/ssd.tflite, runtime: tflite, input: {width: 300, height: 300}}
detectors: {cpu: {runtime: tflite}}
cameras:
  door:
    pipeline: default
    sources: [{url: "synthetic://door", roles: [detect]}]
pipelines:
  default:
"""

TYPO = HEAD + """\
    - motion: {}
    - detect: {model: ssd, detector: cpu}
    - track: {max_dissapeared_s: 3}
"""


def pos(text: str, needle: str, offset: int = 0) -> tuple[int, int]:
    """1-based line and column of ``needle`` (plus ``offset`` characters) in ``text``."""
    at = text.index(needle) + offset
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


def issues(text: str) -> list[tuple[str, int | None, int | None, str, str | None]]:
    """Every issue the element-aware loader finds in ``text``."""
    with pytest.raises(ConfigError) as info:
        pv.load_config_text(text)
    return [(i.path, i.line, i.column, i.message, i.suggestion) for i in info.value.issues]


# --------------------------------------------------------------------------- config check


def test_config_check_reports_a_misspelt_element_setting(tmp_path: Path) -> None:
    path = tmp_path / "camfleet.yaml"
    path.write_text(TYPO)
    r = CliRunner().invoke(config_cli.app, ["check", str(path)])
    line, col = pos(TYPO, "max_dissapeared_s")
    assert r.exit_code == 1, r.output
    assert r.output.splitlines() == [
        f"{path}:{line}:{col}: pipelines.default[2].track.max_dissapeared_s: unknown key "
        "'max_dissapeared_s' (did you mean 'max_disappeared_s'?)",
        f"{path}: 1 problem",
    ]


def test_the_camfleet_command_reports_it_too(tmp_path: Path) -> None:
    path = tmp_path / "camfleet.yaml"
    path.write_text(TYPO)
    r = subprocess.run([sys.executable, "-m", "camfleet.cli", "config", "check", str(path)],
                       capture_output=True, text=True, timeout=120, check=False)
    line, col = pos(TYPO, "max_dissapeared_s")
    assert r.returncode == 1, r.stderr
    assert f"{path}:{line}:{col}: pipelines.default[2].track.max_dissapeared_s: " in r.stdout
    assert "(did you mean 'max_disappeared_s'?)" in r.stdout


def test_range_and_type_errors_point_at_the_value() -> None:
    text = HEAD + """\
    - motion: {threshold: 300}
    - detect: {model: ssd, detector: cpu, min_score: 2, mode: regionz}
    - track: {fps: fast}
"""
    assert issues(text) == [
        ("pipelines.default[0].motion.threshold", *pos(text, "threshold: 300", 11),
         "Input should be less than or equal to 255", None),
        ("pipelines.default[1].detect.min_score", *pos(text, "2, mode"),
         "Input should be less than or equal to 1", None),
        ("pipelines.default[1].detect.mode", *pos(text, "regionz"),
         "Input should be 'regions' or 'frame'", "did you mean 'regions'?"),
        ("pipelines.default[2].track.fps", *pos(text, "fast"),
         "Input should be a valid number, unable to parse string as a number", None),
    ]


def test_unknown_element_is_named_with_a_suggestion() -> None:
    text = HEAD + "    - motion: {}\n    - trak: {max_disappeared_s: 3}\n"
    assert issues(text) == [
        ("pipelines.default[1].trak", *pos(text, "trak"), "unknown pipeline element 'trak'",
         "did you mean 'track'?"),
    ]


def test_valid_element_settings_pass_in_every_written_form() -> None:
    text = HEAD + """\
    - motion
    - detect: {model: ssd, detector: cpu, min_score: {default: 0.5, person: 0.7}}
    - track:
    - events: {min_frames: 2}
"""
    config = pv.load_config_text(text)
    assert [e.name for e in config.pipelines["default"]] == ["motion", "detect", "track", "events"]


def test_settings_of_an_unused_pipeline_are_checked_too() -> None:
    text = HEAD + "    - motion: {}\n  spare:\n    - zones: {dwell_s: -1}\n"
    assert issues(text) == [
        ("pipelines.spare[0].zones.dwell_s", *pos(text, "-1"), "Input should be greater than 0", None),
    ]


def test_without_a_catalog_config_alone_checks_names_only() -> None:
    # `config` cannot import the pipeline; the element-aware loader lives in camfleet.pipeline.validate
    assert load_config_text(TYPO).pipelines["default"][2].params == {"max_dissapeared_s": 3}


# --------------------------------------------------------------------------- JSON Schema


def test_schema_describes_every_element_setting() -> None:
    schema = json.loads(CliRunner().invoke(config_cli.app, ["schema"]).stdout)
    defs = schema["$defs"]
    assert defs["element:track"]["properties"]["max_disappeared_s"]["exclusiveMinimum"] == 0
    assert defs["element:track"]["additionalProperties"] is False
    assert defs["element:detect"]["properties"]["mode"]["enum"] == ["regions", "frame"]
    entry = defs["ElementSpec"]["anyOf"][1]
    assert entry["maxProperties"] == 1 and entry["additionalProperties"] is False
    assert entry["properties"]["track"]["anyOf"][0] == {"$ref": "#/$defs/element:track"}


def test_a_json_schema_validator_rejects_the_typo() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.validator_for(pv.config_json_schema())
    assert validator.is_valid(yaml.safe_load(TYPO.replace("max_dissapeared_s", "max_disappeared_s")))
    assert not validator.is_valid(yaml.safe_load(TYPO))
    assert not validator.is_valid(yaml.safe_load(TYPO.replace("max_dissapeared_s: 3", "fps: -1")))
    assert not validator.is_valid(yaml.safe_load(TYPO.replace("track:", "trak:")))


# --------------------------------------------------------------------------- plugins


class CountConfig(ElementConfig):
    """Settings of the test plugin."""

    alert_at: int = Field(3, ge=1)


class CountPeople(Element[CountConfig]):
    """A plugin element, installed through a (fake) entry point."""

    name = "count_people"
    config_type = CountConfig

    def process(self, ctx: FrameContext) -> None:
        """Nothing: only its settings matter here."""


class _EntryPoint:
    name, value, group = "count_people", "tests.test_config_elements:CountPeople", "camfleet.elements"

    def load(self) -> type[CountPeople]:
        return CountPeople


class StrictConfig(ElementConfig):
    """Settings whose own check fails with something other than a validation error."""

    level: int = 1

    @model_validator(mode="after")
    def _explode(self) -> StrictConfig:
        raise RuntimeError(f"level {self.level} is secret-ish input")


class Exploding(Element[StrictConfig]):
    """A plugin whose settings check raises a plain RuntimeError."""

    name = "exploding"
    config_type = StrictConfig

    def process(self, ctx: FrameContext) -> None:
        """Nothing."""


class _EntryPointOf(_EntryPoint):
    def __init__(self, name: str, obj: Any) -> None:
        self.name, self.obj = name, obj

    def load(self) -> Any:
        return self.obj


def _install(monkeypatch: pytest.MonkeyPatch, *eps: _EntryPoint) -> None:
    real: Callable[..., Any] = importlib.metadata.entry_points

    def entry_points(**kw: Any) -> Any:
        return list(eps) if kw.get("group") == "camfleet.elements" else real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _install(monkeypatch, _EntryPoint())
    yield


@pytest.mark.usefixtures("plugin")
def test_plugin_elements_are_checked_and_exported() -> None:
    text = HEAD + "    - count_people: {alert_at: 0, alert_a: 1}\n    - count_peeple: {}\n"
    assert issues(text) == [
        ("pipelines.default[0].count_people.alert_at", *pos(text, "alert_at: 0", 10),
         "Input should be greater than or equal to 1", None),
        ("pipelines.default[0].count_people.alert_a", *pos(text, "alert_a:"), "unknown key 'alert_a'",
         "did you mean 'alert_at'?"),
        ("pipelines.default[1].count_peeple", *pos(text, "count_peeple"),
         "unknown pipeline element 'count_peeple'", "did you mean 'count_people'?"),
    ]
    schema = pv.config_json_schema()
    assert schema["$defs"]["element:count_people"]["properties"]["alert_at"]["minimum"] == 1


def test_a_plugin_whose_check_raises_is_an_issue_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, _EntryPointOf("exploding", Exploding))
    text = HEAD + "    - exploding: {level: 7}\n"
    assert issues(text) == [  # the exception's text is not quoted: it may carry an input value
        ("pipelines.default[0].exploding", *pos(text, "exploding"),
         "element 'exploding' rejected its settings (RuntimeError)", None),
    ]


def test_a_broken_plugin_is_reported_by_config_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _install(monkeypatch, _EntryPointOf("broken", object()))
    path = tmp_path / "camfleet.yaml"
    path.write_text(TYPO)
    r = CliRunner().invoke(config_cli.app, ["check", str(path)])
    assert r.exit_code == 1
    assert r.output.startswith(f"{path}: pipelines: cannot load the installed pipeline elements: TypeError: "
                               "entry point 'broken'"), r.output


# --------------------------------------------------------------------------- API: validate and apply


class _Node:
    """Just enough of NodeControl for the config routes; records what it was asked to apply."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.applied: list[Config] = []

    def current_config(self) -> Config:
        return self.config

    def status(self) -> NodeStatus:
        raise AssertionError("the config routes do not ask for the status")

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        return lambda: None

    def apply_config(self, config: Config, *, base: Config | None = None) -> ReloadResult:
        self.applied.append(config)
        self.config = config
        return ReloadResult(generation=1)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, _Node, Store]]:
    # a configuration in force that was never checked against the elements (e.g. read before a
    # plugin was upgraded): applying anything on top of it must not go through
    node = _Node(Config.model_validate(yaml.safe_load(TYPO)))
    store = Store.open(f"sqlite:///{tmp_path / 'camfleet.db'}")
    token = store.create_token("test-admin", "admin")
    # TestClient says "Host: testserver": allow that name (the API answers loopback names only)
    app = create_app(node, store, ApiSettings(allowed_hosts=["testserver"]), data_dir=tmp_path,
                     recordings_dir=tmp_path)
    try:  # no lifespan (no `with`): no status ticker, no live view
        yield TestClient(app, headers={"Authorization": f"Bearer {token}"}), node, store
    finally:
        store.close()


def test_api_validate_reports_the_same_issue(api: tuple[TestClient, _Node, Store]) -> None:
    client, _, _ = api
    r = client.post("/api/config/validate", content=TYPO.encode(), headers={"content-type": "text/plain"})
    line, col = pos(TYPO, "max_dissapeared_s")
    assert r.status_code == 200
    assert r.json() == {"valid": False, "issues": [{
        "path": "pipelines.default[2].track.max_dissapeared_s", "line": line, "column": col,
        "message": "unknown key 'max_dissapeared_s'", "suggestion": "did you mean 'max_disappeared_s'?",
    }]}
    fixed = TYPO.replace("dissapeared", "disappeared").encode()
    assert client.post("/api/config/validate", content=fixed).json() == {"valid": True, "issues": []}


def test_api_apply_refuses_invalid_element_settings_and_changes_nothing(
    api: tuple[TestClient, _Node, Store],
) -> None:
    client, node, store = api
    before = node.config
    camera = {"sources": [{"url": "synthetic://yard", "roles": ["detect"]}], "pipeline": "default"}
    store.stage_camera("yard", camera)
    r = client.post("/api/apply")
    assert r.status_code == 422
    assert {"path": "pipelines.default[2].track.max_dissapeared_s", "line": None, "column": None,
            "message": "unknown key 'max_dissapeared_s'",
            "suggestion": "did you mean 'max_disappeared_s'?"} in r.json()["issues"]
    assert node.applied == [] and node.config is before
    assert store.staged_cameras() == {"yard": camera}


def test_element_issues_of_a_built_configuration() -> None:
    config = Config.model_validate(yaml.safe_load(TYPO))
    assert [(i.path, i.message, i.suggestion) for i in pv.element_issues(config)] == [
        ("pipelines.default[2].track.max_dissapeared_s", "unknown key 'max_dissapeared_s'",
         "did you mean 'max_disappeared_s'?"),
    ]
    fixed = Config.model_validate(yaml.safe_load(TYPO.replace("dissapeared", "disappeared")))
    assert pv.element_issues(fixed) == []


def test_node_apply_config_refuses_invalid_element_settings(tmp_path: Path) -> None:
    data = {**yaml.safe_load(TYPO), "data_dir": str(tmp_path)}
    good = Config.model_validate({**data, "pipelines": yaml.safe_load(
        TYPO.replace("dissapeared", "disappeared"))["pipelines"]})
    node = Node(good)  # never started: a rejected configuration must not start anything either
    result = node.apply_config(Config.model_validate(data))
    assert not result.ok and "max_dissapeared_s" in " ".join(result.errors)
    assert node.current_config() is good and node.processes() == {}
