"""Request-ring keys: every camera gets its own ring to a detector, however long its name."""

from __future__ import annotations

import pytest

from camfleet.detect.protocol import request_ring_key
from camfleet.framebus.layout import KEY_RE

pytestmark = pytest.mark.unit


def test_long_camera_names_sharing_a_prefix_get_different_keys() -> None:
    prefix = "parking_garage_level_minus_two_north_entrance_camera_"
    a, b = prefix + "0001", prefix + "0002"  # 57 characters each: 'dq-cpu-' pushes both past 63
    assert len(f"dq-cpu-{a}") > 63
    key_a, key_b = request_ring_key(a, "cpu"), request_ring_key(b, "cpu")
    assert key_a != key_b
    for key in (key_a, key_b):
        assert KEY_RE.fullmatch(key) and len(key) <= 63


def test_keys_are_stable_and_short_ones_unchanged() -> None:
    assert request_ring_key("cam1", "cpu") == "dq-cpu-cam1"
    long_name = "c" * 63
    assert request_ring_key(long_name, "cpu") == request_ring_key(long_name, "cpu")
    assert request_ring_key(long_name, "cpu") != request_ring_key(long_name, "gpu")


@pytest.mark.parametrize("detector", ["cpu", "d" * 63])
def test_every_camera_name_length_gives_a_valid_distinct_key(detector: str) -> None:
    keys = {request_ring_key("x" * n, detector) for n in range(1, 64)}
    assert len(keys) == 63
    assert all(KEY_RE.fullmatch(k) for k in keys)
