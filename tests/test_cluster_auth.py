"""The fleet's request signatures (``camfleet.cluster.clusterauth``) and the paths an agent serves."""

from __future__ import annotations

import pytest

from camfleet.api.fleet.agent_app import MEDIA_PATHS
from camfleet.cluster.clusterauth import WINDOW_S, sign, verify

pytestmark = pytest.mark.unit

KEY = b"k" * 32
NOW = 1_800_000_000.0


def test_a_signature_opens_only_its_own_read_for_a_short_while() -> None:
    header = sign(KEY, "GET", "/api/cameras/door/frame.jpg?after=3", now=NOW)
    assert verify(KEY, header, "GET", "/api/cameras/door/frame.jpg?after=3", now=NOW + 1)
    assert verify(KEY, header, "get", "/api/cameras/door/frame.jpg?after=3", now=NOW - WINDOW_S + 1)
    assert not verify(KEY, header, "GET", "/api/cameras/door/frame.jpg?after=4", now=NOW)
    assert not verify(KEY, header, "GET", "/api/cameras/yard/frame.jpg?after=3", now=NOW)
    assert not verify(KEY, header, "PUT", "/api/cameras/door/frame.jpg?after=3", now=NOW)
    assert not verify(b"x" * 32, header, "GET", "/api/cameras/door/frame.jpg?after=3", now=NOW)
    assert not verify(KEY, header, "GET", "/api/cameras/door/frame.jpg?after=3", now=NOW + WINDOW_S + 1)


@pytest.mark.parametrize("header", [None, "", "v1", "v2 1800000000 ab", "v1 -5 ab", "v1 1800000000",
                                    "v1 1800000000 " + "a" * 500, "Bearer cft_x", "v1 1e9 ab"])
def test_malformed_signatures_are_refused(header: str | None) -> None:
    assert not verify(KEY, header, "GET", "/api/health", now=NOW)


@pytest.mark.parametrize(("path", "served"), [
    ("/api/cameras/door/frame.jpg", True), ("/api/cameras/door/mjpeg", True), ("/api/recordings", True),
    ("/api/recordings/door/clip.mp4", True), ("/api/recordings/door/timeline", True),
    ("/api/recordings/files/door/2026-12-07/05/1.mp4", True), ("/api/events/ev1/snapshot.jpg", True),
    ("/api/events/ev1/clip.mp4", True), ("/api/status", False), ("/api/cameras/door", False),
    ("/api/config", False), ("/api/ws", False), ("/ui/index.html", False), ("/api/tokens", False),
    ("/api/cameras/door/frame.jpg/x", False), ("/api/events", False)])
def test_the_agent_serves_only_media_paths(path: str, served: bool) -> None:
    assert bool(MEDIA_PATHS.match(path)) is served
