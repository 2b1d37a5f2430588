"""The configuration: loading, substitution, defaults, errors that say where, the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camfleet.cli import config as config_cli
from camfleet.config import (
    CameraConfig,
    Config,
    ConfigError,
    ConfigIssue,
    config_json_schema,
    load_config,
    load_config_text,
)
from camfleet.pipeline.validate import config_json_schema as with_elements
from camfleet.pipeline.validate import element_catalog

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "camfleet.yaml"
PASSWORD = "hunter2-s3cret"

SECTIONS = {
    "version": "version: 1\n",
    "models": """\
models:
  ssd-mobilenet-v2:
    path: models/ssd.tflite
    runtime: tflite
    input: {width: 300, height: 300}
""",
    "detectors": """\
detectors:
  cpu: {runtime: tflite, threads: 2}
""",
    "pipelines": """\
pipelines:
  default:
    - motion: {threshold: 25}
    - detect: {model: ssd-mobilenet-v2, detector: cpu}
    - track: {}
""",
    "defaults": """\
defaults:
  detect: {width: 640, height: 360, fps: 5}
  pipeline: default
""",
    "cameras": """\
cameras:
  door:
    sources:
      - {url: "synthetic://door", roles: [detect, record]}
""",
}


def doc(extra: str = "", **sections: str) -> str:
    """A configuration: the sections above, some replaced (dedented), then ``extra`` as it is."""
    parts = {**SECTIONS, **{k: textwrap.dedent(v) for k, v in sections.items()}}
    return "".join(parts.values()) + extra


CAM = SECTIONS["cameras"]


def load(text: str, env: dict[str, str] | None = None) -> Config:
    return load_config_text(text, source="t.yaml", env=env or {})


def errors(text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    assert info.value.issues
    return info.value.issues


def one(issues: list[ConfigIssue], path: str) -> ConfigIssue:
    found = [i for i in issues if i.path == path]
    assert len(found) == 1, f"no single issue at {path}: {issues}"
    return found[0]


def pos(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``text``."""
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in text")


# --------------------------------------------------------------------------- the example


def test_example_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PASSWORD", PASSWORD)
    monkeypatch.delenv("HALL_PASSWORD", raising=False)
    c = load_config(EXAMPLE)
    assert set(c.cameras) == {"door", "hall", "lab"}
    assert set(c.pipelines) == {"default", "people"}
    model = c.models["ssd-mobilenet-v2"]
    assert model.runtime == "tflite" and (model.input.width, model.input.height) == (300, 300)
    assert model.labels == "models/coco_labels.txt"
    assert c.resolve_path(model.path) == EXAMPLE.parent / "camfleet-data" / model.path
    assert c.source == str(EXAMPLE)
    door = c.camera("door")
    assert isinstance(door, CameraConfig)
    assert door.detect_source.url == f"rtsp://admin:{PASSWORD}@10.0.0.5:554/sub"
    assert door.source("record") is not None and door.detect_source.transport == "tcp"
    assert (door.detect.width, door.detect.height, door.detect.fps) == (640, 360, 8)  # merged
    assert door.pipeline == "default" and c.camera("hall").pipeline == "people"
    names = [e.name for e in c.pipeline_of("door")]
    assert names == ["motion", "detect", "track", "zones", "events", "snapshot"]
    assert c.pipelines["default"][1].params["min_score"] == {"default": 0.5, "person": 0.6}
    assert c.camera("lab").detect.fps == 15
    assert c.camera("lab").detect_source.url.startswith("synthetic://lab")
    # credentials stay out of reprs and the public dump
    assert PASSWORD not in repr(c) and PASSWORD not in str(door)
    public = json.dumps(c.model_dump_public())
    assert PASSWORD not in public and "rtsp://***:***@10.0.0.5:554/main" in public


def test_camera_lookup_suggests() -> None:
    c = load(doc())
    with pytest.raises(KeyError, match="did you mean 'door'"):
        c.camera("dor")


# --------------------------------------------------------------------------- unknown keys, types


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        (doc(version="verison: 1\n"), "verison", "version"),
        (doc("    detcet: {fps: 5}\n"), "cameras.door.detcet", "detect"),
        (doc("    detect: {fsp: 5}\n"), "cameras.door.detect.fsp", "fps"),
        (doc(cameras="""\
            cameras:
              door:
                sources:
                  - url: synthetic://x
                    roles: [detect]
                    transprt: tcp
            """), "cameras.door.sources[0].transprt", "transport"),
        (doc("detectorz: {}\n"), "detectorz", "detectors"),
        (doc(models="models:\n  m: {path: a, runtime: onnx, input: {width: 2, hieght: 2}}\n"),
         "models.m.input.hieght", "height"),
    ],
)
def test_unknown_key_names_path_position_and_closest_key(text: str, path: str, suggestion: str) -> None:
    key = path.rsplit(".", 1)[-1]
    issue = one(errors(text), path)
    assert issue.message == f"unknown key {key!r}"
    assert issue.suggestion == f"did you mean {suggestion!r}?"
    line, col = pos(text, key + ":")
    assert (issue.line, issue.column) == (line, col)
    assert issue.format("t.yaml") == (
        f"t.yaml:{line}:{col}: {path}: unknown key {key!r} (did you mean {suggestion!r}?)"
    )


def test_unknown_key_in_defaults_is_reported_once_at_defaults() -> None:
    text = doc("  yard:\n    sources: [{url: synthetic://y, roles: [detect]}]\n",
               defaults="defaults:\n  detect: {width: 640, height: 360, fsp: 5}\n  pipeline: default\n")
    issues = errors(text)
    assert [(i.path, i.suggestion) for i in issues] == [("defaults.detect.fsp", "did you mean 'fps'?")]
    assert (issues[0].line, issues[0].column) == pos(text, "fsp")


def test_misspelt_required_key_is_not_also_reported_missing() -> None:
    issues = errors(doc(cameras="cameras:\n  door:\n    sourcs: [{url: synthetic://x, roles: [detect]}]\n"))
    assert [(i.path, i.suggestion) for i in issues] == [("cameras.door.sourcs", "did you mean 'sources'?")]


def test_wrong_type_names_path_and_types() -> None:
    text = doc('    detect:\n      fps: "5"\n')
    issue = one(errors(text), "cameras.door.detect.fps")
    assert issue.message == "Input should be a valid number (got a string)"
    assert (issue.line, issue.column) == pos(text, '"5"')
    issue = one(errors(doc(detectors="detectors:\n  cpu: {runtime: tflite, threads: 2.5}\n")),
                "detectors.cpu.threads")
    assert issue.message == "Input should be a valid integer (got a number)"
    issue = one(errors(doc("    enabled: yes please\n")), "cameras.door.enabled")
    assert issue.message == "Input should be a valid boolean (got a string)"
    issue = one(errors(doc(models="models:\n  m: {path: a, runtime: onnx, input: {width: 2, height: 2}, "
                               "labels: 5}\n")), "models.m.labels")
    assert issue.message == "Input should be a valid string or a valid list (got an integer)"
    issue = one(errors(doc(version="version: 2\n")), "version")
    assert issue.message == "Input should be 1"


def test_literal_values_are_suggested() -> None:
    text = doc(cameras="cameras:\n  door:\n    sources: [{url: synthetic://x, roles: [detect, recrod]}]\n")
    issue = one(errors(text), "cameras.door.sources[0].roles[1]")
    assert issue.message == "Input should be 'detect' or 'record'"
    assert issue.suggestion == "did you mean 'record'?" and (issue.line, issue.column) == pos(text, "recrod")
    issue = one(errors(doc(detectors="detectors:\n  cpu: {runtime: tensorrt}\n")), "detectors.cpu.runtime")
    assert issue.message == "Input should be 'tflite' or 'onnx'"


def test_every_problem_is_reported_in_file_order() -> None:
    text = doc("    detcet: {}\n  bad name:\n    sources: []\n",
               models="models:\n  ssd-mobilenet-v2: {path: a, runtime: tflite}\n")
    issues = errors(text)
    assert [i.path for i in issues] == [
        "models.ssd-mobilenet-v2.input", "cameras.door.detcet", 'cameras."bad name"',
        'cameras."bad name".sources',
    ]
    assert issues[0].message == "missing required key 'input'"
    assert [i.line for i in issues] == sorted(i.line or 0 for i in issues)


# --------------------------------------------------------------------------- pipelines and references


def checked_errors(text: str) -> list[ConfigIssue]:
    """The issues of ``text`` read with the pipeline registry's element catalog (names are its to say)."""
    with pytest.raises(ConfigError) as info:
        load_config_text(text, source="t.yaml", env={}, elements=element_catalog())
    return info.value.issues


def test_element_names_are_checked_only_with_the_registry_catalog() -> None:
    text = doc(pipelines="pipelines:\n  default: [motion, zzz]\n")
    load(text)  # config alone does not know the element list
    assert one(checked_errors(text), "pipelines.default[1]").message == "unknown pipeline element 'zzz'"


def test_unknown_element_is_suggested() -> None:
    text = doc(pipelines=SECTIONS["pipelines"].replace("- motion:", "- motoin:"))
    issue = one(checked_errors(text), "pipelines.default[0].motoin")
    assert issue.message == "unknown pipeline element 'motoin'"
    assert issue.suggestion == "did you mean 'motion'?"
    assert (issue.line, issue.column) == pos(text, "motoin")
    text = doc(pipelines="pipelines:\n  default: [motion, zzz]\n")
    issue = one(checked_errors(text), "pipelines.default[1]")
    assert issue.message == "unknown pipeline element 'zzz'"
    assert issue.suggestion is not None and issue.suggestion.startswith("known elements: detect, events")


def test_bare_element_names_and_plugin_elements(monkeypatch: pytest.MonkeyPatch) -> None:
    c = load(doc(pipelines="pipelines:\n  default: [motion, track, {zones: }]\n"))
    specs = [(e.name, e.params) for e in c.pipelines["default"]]
    assert specs == [("motion", {}), ("track", {}), ("zones", {})]
    assert c.pipelines["default"][0].model_dump() == {"motion": {}}
    assert set(element_catalog().names()) >= {"motion", "detect", "track", "zones", "events", "snapshot"}
    # a plugin's element (its settings are checked with the catalog: tests/test_config_elements.py)
    load(doc(pipelines="pipelines:\n  default: [motion, count_people: {alert_at: 3}]\n"))


def test_element_must_be_a_single_key_mapping() -> None:
    issue = one(errors(doc(pipelines="pipelines:\n  default:\n    - {motion: {}, track: {}}\n")),
                "pipelines.default[0]")
    assert "exactly one key" in issue.message
    issue = one(errors(doc(pipelines="pipelines:\n  default:\n    - motion: 5\n")), "pipelines.default[0]")
    assert "must be a mapping" in issue.message
    issue = one(errors(doc(pipelines="pipelines:\n  default: []\n")), "pipelines.default")
    assert "at least 1 item" in issue.message


def test_dangling_references() -> None:
    text = doc(
        pipelines=SECTIONS["pipelines"].replace("model: ssd-mobilenet-v2, detector: cpu",
                                                "model: ssd-mobilnet-v2, detector: gpu"),
        defaults=SECTIONS["defaults"].replace("pipeline: default", "pipeline: defualt"),
    )
    issues = errors(text)
    m = one(issues, "pipelines.default[1].detect.model")
    assert m.message == "model 'ssd-mobilnet-v2' is not defined under 'models'"
    assert m.suggestion == "did you mean 'ssd-mobilenet-v2'?"
    assert (m.line, m.column) == pos(text, "ssd-mobilnet")
    d = one(issues, "pipelines.default[1].detect.detector")
    assert d.message == "detector 'gpu' is not defined under 'detectors'"
    assert d.suggestion == "did you mean 'cpu'?"
    p = one(issues, "defaults.pipeline")  # comes from the defaults: reported once, there
    assert p.message == "pipeline 'defualt' is not defined under 'pipelines'"
    assert p.suggestion == "did you mean 'default'?" and (p.line, p.column) == pos(text, "defualt")
    assert len(issues) == 3
    issue = one(errors(doc("    pipeline: nope\n")), "cameras.door.pipeline")
    assert issue.message == "pipeline 'nope' is not defined under 'pipelines'"
    issue = one(errors(doc(models="models: {}\n")), "pipelines.default[1].detect.model")
    assert issue.message == "model 'ssd-mobilenet-v2' is not defined: 'models' is empty"


def test_detector_runtime_must_match_model() -> None:
    issue = one(errors(doc(detectors="detectors:\n  cpu: {runtime: onnx}\n")),
                "pipelines.default[1].detect.detector")
    assert issue.message == "detector 'cpu' runs onnx but model 'ssd-mobilenet-v2' needs tflite"


def test_programmatic_construction_merges_and_checks_references() -> None:
    data: dict[str, object] = {
        "pipelines": {"p": ["motion"]},
        "defaults": {"pipeline": "p", "detect": {"fps": 2}},
        "cameras": {"c": {"sources": [{"url": f"rtsp://u:{PASSWORD}@h/x", "roles": ["detect"]}]}},
    }
    c = Config.model_validate(data)
    assert c.camera("c").pipeline == "p" and c.camera("c").detect.fps == 2
    data["defaults"] = {"pipeline": "q"}
    with pytest.raises(ValueError, match="pipeline 'q' is not defined") as info:
        Config.model_validate(data)
    assert PASSWORD not in str(info.value)


# --------------------------------------------------------------------------- cameras


def test_camera_needs_one_detect_source() -> None:
    text = doc(cameras="cameras:\n  door:\n    sources: [{url: synthetic://x, roles: [record]}]\n")
    issue = one(errors(text), "cameras.door.sources")
    assert issue.message == "no source has the role 'detect'"
    issues = errors(doc(cameras="""\
        cameras:
          door:
            sources:
              - {url: synthetic://x, roles: [detect]}
              - {url: synthetic://y, roles: [detect]}
        """))
    message = one(issues, "cameras.door.sources").message
    assert message == "role 'detect' is given to 2 sources; give it to one"
    issue = one(errors(doc(cameras="cameras:\n  door:\n    sources: [{url: synthetic://x, roles: []}]\n")),
                "cameras.door.sources[0].roles")
    assert "at least 1 item" in issue.message


@pytest.mark.parametrize("name", ["bad name", "a.b", "x" * 64, "über", "a/b"])
def test_invalid_camera_name(name: str) -> None:
    text = doc(cameras=f'cameras:\n  "{name}":\n    sources: [{{url: synthetic://x, roles: [detect]}}]\n')
    issues = errors(text)
    assert len(issues) == 1
    assert issues[0].path in (f'cameras."{name}"', f"cameras.{name}")
    assert issues[0].message.startswith("invalid camera name: use 1-63 letters, digits, '_' or '-'")
    assert (issues[0].line, issues[0].column) == pos(text, f'"{name}"')


def test_detect_sizes_positive_and_even_fps_positive() -> None:
    issues = errors(doc("    detect: {width: 641, height: -2, fps: 0}\n"))
    assert one(issues, "cameras.door.detect.width").message == "Input should be a multiple of 2"
    assert one(issues, "cameras.door.detect.height").message == "Input should be greater than 0"
    assert one(issues, "cameras.door.detect.fps").message == "Input should be greater than 0"
    issue = one(errors(doc(defaults="defaults: {detect: {width: 640}, pipeline: default}\n")),
                "defaults.detect")
    assert issue.message == "give both width and height, or neither"


def test_zones_in_range_and_polygons_have_three_points() -> None:
    text = doc("    zones:\n      porch: {points: [[0.1, 0.5], [1.5, 0.5], [0.5, 1.0]]}\n")
    issue = one(errors(text), "cameras.door.zones.porch.points[1][0]")
    assert issue.message.startswith("Input should be less than or equal to 1 (coordinates are normalised")
    assert (issue.line, issue.column) == pos(text, "1.5")
    issue = one(errors(doc("    zones:\n      porch: {points: [[0.1, 0.5], [0.5, 0.5]]}\n")),
                "cameras.door.zones.porch.points")
    assert "at least 3 items" in issue.message
    issue = one(errors(doc("    masks: [[[0, 0], [1, 0], [1, -0.1]]]\n")), "cameras.door.masks[0][2][1]")
    assert issue.message.startswith("Input should be greater than or equal to 0")
    issue = one(errors(doc("    masks: [[[0, 0, 0], [1, 0], [1, 1]]]\n")), "cameras.door.masks[0][0]")
    assert "at most 2 items" in issue.message


def test_unknown_url_scheme_and_transport() -> None:
    text = doc(cameras="cameras:\n  door:\n    sources: [{url: 'ftp://u:pw12345@h/x', roles: [detect]}]\n")
    issue = one(errors(text), "cameras.door.sources[0].url")
    assert issue.message.startswith("unsupported camera URL 'ftp://***:***@h/x'")
    text = doc(cameras="cameras:\n  door:\n    sources: [{url: synthetic://x, roles: [detect], "
                       "transport: udp}]\n")
    assert "applies to rtsp://" in one(errors(text), "cameras.door.sources[0]").message


# --------------------------------------------------------------------------- defaults


def test_defaults_deep_merge_camera_wins() -> None:
    text = doc(
        defaults="""\
            defaults:
              detect: {width: 640, height: 360, fps: 5}
              pipeline: default
              zones: {d: {points: [[0, 0], [1, 0], [0, 1]]}}
              masks: [[[0, 0], [1, 0], [1, 0.1]]]
            """,
        pipelines="pipelines:\n  default: [motion]\n  other: [motion, track]\n",
        cameras="""\
            cameras:
              a:
                sources: [{url: synthetic://a, roles: [detect]}]
                detect: {fps: 10}
              b:
                sources: [{url: synthetic://b, roles: [detect]}]
                detect: {width: 1280, height: 720}
                zones: {z: {points: [[0, 0], [1, 0], [1, 1]]}}
                masks: []
              c:
                sources: [{url: synthetic://c, roles: [detect]}]
                pipeline: other
                enabled: false
              d:
            """,
    )
    with pytest.raises(ConfigError) as info:
        load(text)
    assert [i.path for i in info.value.issues] == ["cameras.d.sources"]  # d: only defaults, no sources
    c = load(text.replace("  d:\n", ""))
    a, b, cc = c.camera("a"), c.camera("b"), c.camera("c")
    assert (a.detect.width, a.detect.height, a.detect.fps) == (640, 360, 10)
    assert (b.detect.width, b.detect.height, b.detect.fps) == (1280, 720, 5)
    assert set(a.zones) == {"d"} and set(b.zones) == {"d", "z"}  # mappings merge key by key
    assert len(a.masks) == 1 and b.masks == []  # lists are replaced
    assert (a.pipeline, cc.pipeline) == ("default", "other")
    assert a.enabled and not cc.enabled
    assert c.defaults.detect is not None and c.defaults.detect.fps == 5


def test_missing_pipeline_without_defaults() -> None:
    text = doc(defaults="")
    issue = one(errors(text), "cameras.door.pipeline")
    assert issue.message == "no pipeline: set 'pipeline' on the camera or under 'defaults'"
    assert (issue.line, issue.column) == pos(text, "door:")


# --------------------------------------------------------------------------- ${ENV}


def test_env_substitution_and_defaults() -> None:
    text = doc(
        "    detect:\n"
        "      fps: ${FPS:-7}\n"
        "      width: ${WIDTH:-320}\n"
        "      height: ${HEIGHT}\n"
        "    zones:\n"
        '      z: {points: [[0, 0], [1, 0], [1, 1]], labels: ["$${literal}", "${HEIGHT}"]}\n',
        cameras=CAM.replace("synthetic://door", "rtsp://admin:${PW}@h/sub"),
    )
    door = load(text, {"PW": "pa$$word", "HEIGHT": "180", "WIDTH": ""}).camera("door")
    assert door.detect_source.url == "rtsp://admin:pa$$word@h/sub"
    assert (door.detect.fps, door.detect.width, door.detect.height) == (7, 320, 180)  # unquoted: numbers
    assert door.zones["z"].labels == ["${literal}", "180"]  # quoted: strings


def test_unset_env_names_variable_and_location() -> None:
    text = doc(cameras=CAM.replace("synthetic://door", "rtsp://admin:${CAM_PASSWORD}@10.0.0.5/x"))
    issue = one(errors(text), "cameras.door.sources[0].url")
    assert issue.message.startswith("environment variable CAM_PASSWORD is not set")
    assert (issue.line, issue.column) == pos(text, '"rtsp://')
    c = load_config_text(text, env={}, require_env=False)  # check without the secrets
    assert "${CAM_PASSWORD}" in c.camera("door").detect_source.url
    issues = errors(doc("    pipeline: ${P-x}\n"))
    assert any(i.message.startswith("invalid ${...} substitution") for i in issues)
    issues = errors(doc("    pipeline: a${b\n"))
    assert any(i.message.startswith("'${' without a closing '}'") for i in issues)


# --------------------------------------------------------------------------- YAML itself


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("cameras:\n  door:\n    sources: [{url: x, roles: [detect]}\n  yard: 1\n", 4, 3),
        ("cameras:\n\tdoor: {}\n", 2, 1),
        ("a: 1\n b: 2\n", 2, 3),
        ("a: [1, 2\n", 2, 1),
    ],
)
def test_malformed_yaml_has_line_and_column(text: str, line: int, column: int) -> None:
    issues = errors(text)
    assert len(issues) == 1
    assert issues[0].message.startswith("YAML syntax error")
    assert (issues[0].line, issues[0].column) == (line, column)


def test_duplicate_keys_empty_and_non_mapping() -> None:
    text = doc("  door:\n    sources: []\n")
    issue = one(errors(text), "cameras.door")
    assert issue.message == f"duplicate key 'door' (first at line {pos(text, 'door:')[0]})"
    assert errors("")[0].message == "the configuration is empty"
    assert errors("# nothing\n")[0].message == "the configuration is empty"
    assert errors("- 1\n")[0].message == "the configuration must be a mapping of sections, not a list"
    assert any("recursive alias" in i.message for i in errors("a: &x [*x]\n"))


def test_anchors_and_merge_keys_work() -> None:
    c = load(doc(cameras="""\
        cameras:
          a: &cam
            sources: [{url: synthetic://a, roles: [detect]}]
            detect: {fps: 2}
          b:
            <<: *cam
            pipeline: default
        """))
    assert c.camera("b").detect.fps == 2 and c.camera("b").sources[0].url == "synthetic://a"


# --------------------------------------------------------------------------- credentials never leak


def test_password_never_appears_in_errors() -> None:
    url = f"rtsp://admin:{PASSWORD}@10.0.0.5:554/main"
    cases = [
        # validation problems around a literal URL
        f"cameras:\n  door:\n    sources: [{{url: '{url}', roles: [detect, recrod], transprt: udp}}]\n"
        "    pipeline: 5\n",
        # the URL on the line of a YAML syntax error
        f"cameras:\n  door:\n    sources: [{{url: {url} roles: [detect]}}\n",
        f"cameras:\n  door:\n    sources: [{{url: {url}, roles: [detect]}}]\n  \tx: 1\n",
        # a scheme camfleet does not open
        f"cameras:\n  door:\n    sources: [{{url: 'ftp://admin:{PASSWORD}@h/x', roles: [detect]}}]\n",
        # the password from the environment, where a name is expected
        "cameras:\n  door:\n    sources: [{url: 'ftp://admin:${PW}@h/x', roles: [record]}]\n"
        "    pipeline: ${PW}\n",
        # a URL used as a key
        f"cameras:\n  '{url}':\n    sources: []\n",
        # a malformed substitution next to the password
        f"cameras:\n  door:\n    sources: [{{url: 'rtsp://admin:{PASSWORD}${{x@h/', roles: [detect]}}]\n",
    ]
    for case in cases:
        with pytest.raises(ConfigError) as info:
            load(doc(cameras=case), {"PW": PASSWORD})
        exc = info.value
        everything = [str(exc), repr(exc), *(repr(i) for i in exc.issues)]
        assert all(PASSWORD not in t for t in everything), everything
        assert exc.__cause__ is None and exc.__context__ is None


# --------------------------------------------------------------------------- the CLI and the schema

runner = CliRunner()


def test_cli_check_ok_on_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_PASSWORD", PASSWORD)
    r = runner.invoke(config_cli.app, ["check", str(EXAMPLE)])
    assert r.exit_code == 0, r.output
    assert r.output == f"{EXAMPLE}: ok: 3 cameras, 2 pipelines, 1 model, 1 detector\n"


def test_cli_check_prints_every_issue_and_exits_1(tmp_path: Path) -> None:
    text = doc(
        "    detcet: {}\n    pipeline: nope\n  bad name:\n    sources: []\n",
        detectors="detectors:\n  cpu: {runtime: tflite, threads: x}\n",
        models=SECTIONS["models"].replace("path: models/ssd.tflite", f"path: rtsp://u:{PASSWORD}@h/ssd"),
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = runner.invoke(config_cli.app, ["check", str(path)])
    assert r.exit_code == 1
    lines = r.output.splitlines()
    line, col = pos(text, "threads: x")
    assert lines == [
        f"{path}:{line}:{col + 9}: detectors.cpu.threads: Input should be a valid integer (got a string)",
        f"{path}:{pos(text, 'detcet')[0]}:5: cameras.door.detcet: unknown key 'detcet' "
        "(did you mean 'detect'?)",
        f"{path}:{pos(text, 'nope')[0]}:15: cameras.door.pipeline: pipeline 'nope' is not defined under "
        "'pipelines'",
        f'{path}:{pos(text, "bad name")[0]}:3: cameras."bad name": invalid camera name: use 1-63 letters, '
        "digits, '_' or '-' (it becomes a ring key)",
        f'{path}:{pos(text, "sources: []")[0]}:14: cameras."bad name".sources: List should have at least '
        "1 item after validation, not 0",
        f"{path}: 5 problems",
    ]
    assert PASSWORD not in r.output


def test_cli_check_missing_file_and_unset_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = runner.invoke(config_cli.app, ["check", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 1 and "cannot read: No such file or directory" in r.output
    monkeypatch.delenv("CAM_PASSWORD", raising=False)
    r = runner.invoke(config_cli.app, ["check", str(EXAMPLE)])
    assert r.exit_code == 1 and "CAM_PASSWORD is not set" in r.output
    r = runner.invoke(config_cli.app, ["check", "--ignore-unset-env", str(EXAMPLE)])
    assert r.exit_code == 0, r.output


def test_cli_schema_is_json_with_sections(tmp_path: Path) -> None:
    r = runner.invoke(config_cli.app, ["schema"])
    assert r.exit_code == 0
    schema = json.loads(r.stdout)
    assert {"version", "data_dir", "defaults", "models", "detectors", "pipelines", "cameras"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False
    assert schema["properties"]["cameras"]["additionalProperties"] is False  # names follow the pattern
    assert schema == with_elements()  # the CLI exports the installed elements' settings too
    assert schema["$defs"].keys() >= config_json_schema()["$defs"].keys()
    elements = json.dumps(schema["$defs"]["ElementSpec"])
    assert all(name in elements for name in ("motion", "detect", "track", "zones", "events", "snapshot"))
    out = tmp_path / "schema.json"
    r = runner.invoke(config_cli.app, ["schema", "--output", str(out)])
    assert r.exit_code == 0 and json.loads(out.read_text()) == schema


def test_deeply_nested_yaml_is_a_config_error_not_a_crash() -> None:
    for text in ("cameras: " + "[" * 5000 + "]" * 5000, "cameras: {a: " + "{b: " * 5000 + "1" + "}" * 5001):
        with pytest.raises(ConfigError) as info:
            load_config_text(text)
        assert "nested too deeply" in str(info.value)
