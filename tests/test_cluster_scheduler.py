"""The leader's pure decisions (placement nodes, safe desired-state writes) and fleet validation."""

from __future__ import annotations

import pytest

from camfleet.cluster.fleetconfig import FleetConfigError, placement_camera, validate_fleet
from camfleet.cluster.membership import Member
from camfleet.cluster.placement import plan
from camfleet.cluster.placement_types import NodeState
from camfleet.cluster.registry import DesiredCamera, DesiredNode, NodeRecord
from camfleet.cluster.scheduler import (
    Transit,
    current_assignments,
    desired_writes,
    gone_nodes,
    placement_nodes,
)

pytestmark = pytest.mark.unit

CAM = {"sources": [{"url": "rtsp://u:pw@10.0.0.1/s", "roles": ["detect"]}]}


def _record(node: str, **labels: str) -> NodeRecord:
    return NodeRecord(
        node_id=node,
        hostname=node,
        addresses=[],
        version="t",
        labels=dict(labels),
        cores=4,
        memory_bytes=1,
        shm_bytes=1,
        capacity={"decode_pixels_per_s": 1e9, "inferences_per_s": 40},
    )


def _members(**states: str) -> dict[str, Member]:
    return {
        n: Member(n, s, _record(n), last_beat=None if s == "registered" else 1.0)  # type: ignore[arg-type]
        for n, s in states.items()
    }


def _desired(node: str, rev: int, **cams: int) -> DesiredNode:
    return DesiredNode(node, rev, 1, {c: DesiredCamera(dict(CAM), token) for c, token in cams.items()})


def test_member_states_and_flags_become_placement_states() -> None:
    members = _members(a="alive", b="alive", c="alive", d="expired", e="lost", f="registered")
    nodes = {n.id: n for n in placement_nodes(members, {"b": (True, False), "c": (False, True)})}
    assert {k: v.state for k, v in nodes.items()} == {
        "a": NodeState.SCHEDULABLE,
        "b": NodeState.CORDONED,
        "c": NodeState.DRAINING,
        "d": NodeState.CORDONED,
        "e": NodeState.LOST,
        "f": NodeState.LOST,
    }
    assert nodes["a"].decode_pps == 1e9 and nodes["a"].infer_ps == 40
    assert gone_nodes(members, ["e", "x"]) == {"e", "f", "x"}  # x: a desired key of an unregistered node


def test_a_lost_nodes_key_is_emptied_before_the_cameras_are_added_elsewhere() -> None:
    desired = {"a": _desired("a", 3, cam1=1, cam2=2), "b": _desired("b", 4, cam3=4)}
    settings = {c: dict(CAM) for c in ("cam1", "cam2", "cam3")}
    writes, leaving = desired_writes(desired, {"cam1": "b", "cam2": "b", "cam3": "b"}, settings, {"a"}, {})
    assert [(w.node, w.phase, w.added, w.removed) for w in writes] == [
        ("a", 1, (), ("cam1", "cam2")),
        ("b", 2, ("cam1", "cam2"), ()),
    ]
    assert leaving == {}
    record = writes[1].desired(9, 2, 0.0)
    assert {c: dc.token for c, dc in record.cameras.items()} == {"cam1": 9, "cam2": 9, "cam3": 4}


def test_a_camera_leaving_a_live_node_waits_for_it_to_stop() -> None:
    desired = {"a": _desired("a", 3, cam1=1), "b": _desired("b", 4)}
    writes, leaving = desired_writes(desired, {"cam1": "b"}, {"cam1": dict(CAM)}, set(), {})
    assert [(w.node, w.added, w.removed) for w in writes] == [("a", (), ("cam1",))]
    assert leaving == {"cam1": ("a", "b")}
    # still in transit: not added anywhere; once confirmed (transit cleared), added to b
    after = {"a": _desired("a", 5), "b": _desired("b", 4)}
    assert (
        desired_writes(after, {"cam1": "b"}, {"cam1": dict(CAM)}, set(), {"cam1": Transit("a", 5, "b")})[0]
        == []
    )
    writes, _ = desired_writes(after, {"cam1": "b"}, {"cam1": dict(CAM)}, set(), {})
    assert [(w.node, w.added) for w in writes] == [("b", ("cam1",))]


def test_nothing_changes_nothing_and_new_settings_keep_the_token() -> None:
    desired = {"a": _desired("a", 3, cam1=1)}
    assert desired_writes(desired, {"cam1": "a"}, {"cam1": dict(CAM)}, set(), {}) == ([], {})
    changed = dict(CAM) | {"detect": {"fps": 2}}
    writes, _ = desired_writes(desired, {"cam1": "a"}, {"cam1": changed}, set(), {})
    assert writes[0].desired(7, 1, 0.0).cameras["cam1"] == DesiredCamera(changed, 1)
    writes, _ = desired_writes(desired, {}, {}, set(), {})  # removed from the fleet
    assert [(w.node, w.removed) for w in writes] == [("a", ("cam1",))]


def test_a_camera_on_two_keys_counts_where_its_token_is_highest() -> None:
    desired = {"a": _desired("a", 3, cam1=1), "b": _desired("b", 5, cam1=5)}
    assert current_assignments(desired, {})["cam1"].node == "b"
    assert current_assignments({}, {"cam2": Transit("a", 4, "b")})["cam2"].node == "b"


def test_handover_adopts_the_placement_unchanged() -> None:
    fleet = validate_fleet({f"c{i}": dict(CAM) for i in range(6)})
    members = _members(a="alive", b="alive", c="alive")
    first = plan(placement_nodes(members, {}), [placement_camera(c) for c in fleet.values()])
    desired = {
        n: _desired(n, 1, **{c: a.revision for c, a in first.assignments.items() if a.node == n})
        for n in "abc"
    }
    again = plan(
        placement_nodes(members, {}),
        [placement_camera(c) for c in fleet.values()],
        current_assignments(desired, {}),
    )
    targets = {c: a.node for c, a in again.assignments.items()}
    assert desired_writes(desired, targets, {c: f.settings for c, f in fleet.items()}, set(), {}) == ([], {})


def test_a_bad_fleet_names_the_camera_and_the_key() -> None:
    with pytest.raises(FleetConfigError) as err:
        validate_fleet(
            {
                "door": CAM | {"detect": {"fps": "x"}, "placement": {"labelz": {}}},
                "bad name": CAM,
                "yard": "nope",
            }
        )
    text = str(err.value)
    assert "cameras.door.detect.fps" in text and "cameras.door.placement.labelz" in text
    assert "'bad name'" in text and "cameras.yard: expected a mapping" in text and "pw" not in text
    ok = validate_fleet(
        {
            "door": CAM
            | {
                "placement": {
                    "labels": {"zone": "n"},
                    "group": "porch",
                    "stream": {"width": 1920, "height": 1080, "fps": 10},
                }
            }
        }
    )
    cam = placement_camera(ok["door"])
    assert "placement" not in ok["door"].settings
    assert (cam.decode_pps, cam.infer_ps, cam.selector, cam.group) == (
        1920 * 1080 * 10,
        5.0,
        {"zone": "n"},
        "porch",
    )


def test_masked_urls_come_back_from_the_stored_camera() -> None:
    from camfleet.api.cameras import mask_camera
    from camfleet.cluster.control import _unmasked
    from camfleet.config import ConfigError

    shown = mask_camera(CAM)
    assert shown is not None and "pw" not in str(shown)
    edited = shown | {"detect": {"fps": 2}}
    assert _unmasked({"door": edited}, {"door": CAM})["door"]["sources"] == CAM["sources"]
    with pytest.raises(ConfigError, match=r"cameras\.door\.sources\.0\.url"):
        _unmasked({"door": edited}, {"other": CAM})
