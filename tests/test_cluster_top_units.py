"""``camfleet cluster status``'s pure parts: a node's totals from hostile reports, the screen's layout."""

from __future__ import annotations

import math

import pytest

from camfleet.cli.cluster_top import HOME, render, screen
from camfleet.cluster.leader import node_figures, status_summary

pytestmark = pytest.mark.unit


def test_node_figures_sum_numbers_and_ignore_the_rest() -> None:
    raw = {"at": 100.0, "cameras": {
        "a": {"state": "healthy", "cpu_percent": 10.0, "decode_fps": 15, "processed_fps": 5.0,
              "detector_rps": 2},
        "b": {"state": "starting", "cpu_percent": math.nan, "decode_fps": "fast", "processed_fps": True},
        "c": "not a camera", "d": {"cpu_percent": math.inf, "detector_rps": None},
    }, "detectors": {"cpu-0": {"state": "healthy", "cpu_percent": 30.5}, "x": "?", "y": {"cpu_percent": "1"}}}
    figures = node_figures(status_summary(raw))
    assert figures == {"at": 100.0, "cpu_percent": 40.5, "decode_fps": 15.0, "processed_fps": 5.0,
                       "detector_rps": 2.0, "detectors": 3,
                       "states": {"healthy": 1, "starting": 1, "unknown": 1}}
    assert node_figures({})["cpu_percent"] == 0.0 and node_figures({"at": "x"})["at"] is None


def test_render_copes_with_missing_fields_and_the_screen_fits_the_terminal() -> None:
    nodes = [{"node_id": "n1", "hostname": "evil\x1b]0;owned\x07"},
             {"node_id": "n2", "draining": True, "errors": ["bad pipeline"]}]
    reply = {"at": 0, "leader": {}, "nodes": nodes,
             "cameras": {f"c{i}": {"node": "n1", "unplaced": None} for i in range(30)},
             "node_figures": {"n1": {"cpu_percent": 12.0, "at": -2.0}}, "warnings": ["w1"]}
    lines = render(reply, cameras=True)
    assert "2 node(s), 30 camera(s): 30 unknown" in lines[0]
    n1 = next(x for x in lines if x.startswith("n1 ")).split()
    assert n1[4:6] == ["0", "12.0"] and n1[-1] == "2.0s"  # no cameras listed; report 2 s old
    assert next(x for x in lines if x.startswith("n2 ")).endswith("bad pipeline")
    assert not any("\x1b" in x or "\x07" in x for x in lines) and "evil?]0;owned" in "".join(lines)
    assert lines[-1] == "warning: w1"
    frame = screen(lines, (40, 10))
    rows = frame.removeprefix(HOME).split("\n")
    assert len(rows) == 10 and rows[8].startswith("... ") and all(len(r) <= 40 + 3 for r in rows[:-1])
    assert screen(["a", "b"], None) == "a\nb"
