"""The camera source's tls and corrupt_degraded_per_min settings: defaults, checks, errors that say where."""

from __future__ import annotations

import pytest

from camfleet.config import Config, ConfigError, ConfigIssue, load_config_text

pytestmark = pytest.mark.unit


def config(source: str) -> str:
    return ("version: 1\npipelines:\n  p:\n    - motion: {threshold: 25}\n"
            f"cameras:\n  door:\n    pipeline: p\n    sources:\n      - {source}\n")


def load(text: str) -> Config:
    return load_config_text(text, source="t.yaml", env={})


def issues(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.issues


def test_tls_is_verified_by_default() -> None:
    src = load(config('{url: "rtsps://cam.local/s", roles: [detect]}')).cameras["door"].sources[0]
    assert src.tls.verify is True and src.tls.ca_file is None
    assert src.corrupt_degraded_per_min == 30.0


def test_tls_ca_file_and_verify_false() -> None:
    src = load(config('{url: "rtsps://cam.local/s", roles: [detect], tls: {ca_file: /etc/cam-ca.pem}}'))
    assert src.cameras["door"].sources[0].tls.ca_file == "/etc/cam-ca.pem"
    src = load(config('{url: "https://cam.local/v.mjpg", roles: [detect], tls: {verify: false}}'))
    assert src.cameras["door"].sources[0].tls.verify is False


def test_tls_on_a_plain_url_is_refused() -> None:
    (issue,) = issues(config('{url: "rtsp://cam.local/s", roles: [detect], tls: {verify: false}}'))
    assert "cameras.door.sources[0]" in issue.path
    assert "'tls' applies to rtsps:// and https:// sources only" in issue.message


def test_ca_file_with_verify_false_is_refused() -> None:
    (issue,) = issues(config('{url: "rtsps://c/s", roles: [detect], tls: {verify: false, ca_file: /ca.pem}}'))
    assert issue.path.startswith("cameras.door.sources[0].tls")
    assert "'ca_file' has no effect with 'verify: false'" in issue.message


def test_unknown_tls_key_is_refused() -> None:
    (issue,) = issues(config('{url: "rtsps://c/s", roles: [detect], tls: {verfy: false}}'))
    assert "verfy" in issue.path or "verfy" in issue.message


def test_corrupt_threshold() -> None:
    src = load(config('{url: "synthetic://d", roles: [detect], corrupt_degraded_per_min: 5}'))
    assert src.cameras["door"].sources[0].corrupt_degraded_per_min == 5
    (issue,) = issues(config('{url: "synthetic://d", roles: [detect], corrupt_degraded_per_min: -1}'))
    assert "corrupt_degraded_per_min" in issue.path
