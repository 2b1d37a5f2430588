"""Redaction (camfleet.redact): credentials in user info and in query strings never survive masking."""

from __future__ import annotations

import logging

import pytest

from camfleet.api.cameras import unmask_sources
from camfleet.redact import MASK, SECRET_QUERY_KEYS, mask_query, mask_text, mask_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("http://cam/snap.jpg?user=admin&pwd=s3cret&res=hd", "http://cam/snap.jpg?user=***&pwd=***&res=hd"),
        ("rtsp://a:b@cam:554/s?token=t0k&channel=1", "rtsp://***:***@cam:554/s?token=***&channel=1"),
        ("http://cam/x?Password=P&USERNAME=u", "http://cam/x?Password=***&USERNAME=***"),
        ("http://cam/x?pass=&auth=abc#frag", "http://cam/x?pass=***&auth=***#frag"),
        ("http://cam/x?key=k1&key=k2", "http://cam/x?key=***&key=***"),
        ("http://[::1]:8080/x?token=t", "http://[::1]:8080/x?token=***"),
        ("http://u:p@cam:99999/x?token=t", "http://***:***@cam:99999/x?token=***"),  # malformed port
    ],
)
def test_secret_query_parameters_are_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(masked) == masked  # idempotent: a masked URL stays as it is


@pytest.mark.parametrize(
    "url",
    [
        "synthetic://cam1?width=320&height=240&fps=10&objects=person",
        "http://cam/x?keyframe=1&passive=true&author=me&monkey=2&user_id=7",
        "http://cam/password/key/token",  # path segments named like secrets are not parameters
        "/tmp/video.mp4",
    ],
)
def test_other_parameters_and_paths_are_kept(url: str) -> None:
    assert mask_url(url) == url


def test_every_secret_key_is_masked() -> None:
    for key in SECRET_QUERY_KEYS:
        assert mask_query(f"a=1&{key}=hunter2&b=2") == f"a=1&{key}={MASK}&b=2"
    assert mask_query("") == ""


def test_mask_text_scrubs_query_credentials_inside_messages() -> None:
    text = ("HTTP error 401 for 'http://cam/snap.cgi?user=admin&pwd=hunter2' and "
            "rtsp://x:y@h/z?token=abc def")
    out = mask_text(text)
    assert "hunter2" not in out and "admin" not in out and "abc" not in out and "x:y" not in out
    assert "'http://cam/snap.cgi?user=***&pwd=***'" in out and "rtsp://***:***@h/z?token=*** def" in out


def test_a_masked_query_url_from_the_api_is_restored_to_the_real_one() -> None:
    real = "http://cam/snap.jpg?user=admin&pwd=s3cret"
    known = [{"sources": [{"url": real}]}]
    edited = unmask_sources({"sources": [{"url": mask_url(real)}]}, known)
    assert edited["sources"][0]["url"] == real


def test_http_client_request_lines_never_reach_the_logs() -> None:
    """httpx logs each request's URL at INFO; a webhook URL's path can be its secret."""
    from camfleet.cli.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(verbose=True)
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
