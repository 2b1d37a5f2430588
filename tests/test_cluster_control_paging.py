"""The control API at fleet scale: listings in pages, staging checks only what changed, apply's bounded reply.

The control API runs here against a real fleet database (SQLite) and, for the
client side, a real NATS server; the leader it asks is a stand-in holding
plain state (members, desired states), since no scheduling happens here.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import pytest

from camfleet.cluster import control
from camfleet.cluster.connection import NatsOptions
from camfleet.cluster.control import ControlAPI, ControlError, apply_fleet, ask, ask_all, page, page_args
from camfleet.cluster.fleetconfig import FleetConfigError, FleetValidator
from camfleet.cluster.membership import Member
from camfleet.cluster.registry import CTL_PREFIX
from camfleet.fleetstore.store import FleetStore

pytestmark = pytest.mark.unit


def _cam(i: int, fps: int = 5) -> dict[str, Any]:
    return {
        "sources": [{"url": f"rtsp://viewer:secret{i}@10.0.0.1/s{i}", "roles": ["detect"]}],
        "detect": {"fps": fps},
        "placement": {"group": f"g{i % 3}"},
    }


class _Leader:
    """What ControlAPI reads of a FleetLeader: plain state, no scheduling."""

    def __init__(self, store: FleetStore, nodes: int = 0) -> None:
        self.store = store
        self._members = {f"n{i:03d}": Member(f"n{i:03d}", "alive") for i in range(nodes)}
        self.last_plan = None
        self.flags: dict[str, tuple[bool, bool]] = {}
        self.desired: dict[str, Any] = {}
        self.applied: dict[str, Any] = {}
        self.transit: dict[str, Any] = {}
        self.cameras: dict[str, Any] = {}
        self.statuses: dict[str, Any] = {}
        self.revision = 0
        self.error = None

    def leading(self) -> bool:
        return True

    def members(self) -> dict[str, Member]:
        return dict(self._members)

    async def resume(self) -> None:
        return None

    async def reload(self) -> None:
        self.cameras = self.store.cameras()

    async def wait_pass(self, _timeout_s: float) -> bool:
        return True


@pytest.fixture
def api(tmp_path: Path) -> ControlAPI:
    store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    return ControlAPI(_Leader(store, nodes=25), lambda: {}, page_bytes=1200)  # type: ignore[arg-type]


async def _call(api: ControlAPI, verb: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    return await api.handle(verb, json.dumps(payload or {}).encode())


def test_pages_follow_the_names_hold_the_limit_and_the_byte_budget_and_end_with_none() -> None:
    items = [(f"k{i:02d}", {"v": "x" * 10}) for i in range(30)]
    first, nxt = page(reversed(items), 7, None, 10_000)
    assert [k for k, _ in first] == [f"k{i:02d}" for i in range(7)] and nxt == "k06"
    seen, after = [], None
    while True:
        got, after = page(items, 1000, after, 100)  # about 4 items of ~26 bytes per 100 bytes
        assert 1 <= len(got) <= 4
        seen += [k for k, _ in got]
        if after is None:
            break
    assert seen == [k for k, _ in items]
    huge, nxt = page([("a", "y" * 500), ("b", 1)], 10, None, 100)
    assert [k for k, _ in huge] == ["a"] and nxt == "a"  # one item over the budget still makes a page
    assert page([], 5, None, 100) == ([], None)
    for bad in ({"limit": 0}, {"limit": "5"}, {"limit": True}, {"after": 3}, {"limit": 10_001}):
        with pytest.raises(ValueError):
            page_args(bad)


def test_nodes_come_in_pages_that_ask_all_joins_in_order_each_once(api: ControlAPI) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        first = await _call(api, "nodes")

        async def asker(verb: str, payload: dict[str, Any]) -> dict[str, Any]:
            return await _call(api, verb, payload)

        return first, await ask_all(asker, "nodes", "nodes")

    first, whole = asyncio.run(go())
    assert first["ok"] and first["next"] and 1 <= len(first["nodes"]) < 25
    assert [n["node_id"] for n in whole["nodes"]] == [f"n{i:03d}" for i in range(25)]
    assert whole["next"] is None
    bad = asyncio.run(_call(api, "nodes", {"limit": -1}))
    assert not bad["ok"] and "limit" in bad["error"]


def test_status_pages_its_cameras_nodes_come_with_the_first_page(api: ControlAPI) -> None:
    names = [f"cam{i:03d}" for i in range(60)]
    api.leader.cameras = dict.fromkeys(names)  # type: ignore[attr-defined]

    async def go() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        pages, after = [], None
        while True:
            reply = await _call(api, "status", {} if after is None else {"after": after})
            pages.append(reply)
            if (after := reply["next"]) is None:
                return pages, await ask_all(lambda v, b: _call(api, v, b), "status", "cameras")

    pages, whole = asyncio.run(go())
    assert len(pages) > 2 and all(p["ok"] for p in pages)
    assert len(pages[0]["nodes"]) == 25 and all(p["nodes"] == [] for p in pages[1:])
    assert sum(len(p["cameras"]) for p in pages) == 60
    assert sorted(whole["cameras"]) == names and len(whole["nodes"]) == 25


def test_staging_checks_only_its_own_cameras_and_apply_does_not_check_them_again(api: ControlAPI) -> None:
    async def go() -> None:
        r = await _call(api, "stage", {"cameras": {f"c{i}": _cam(i) for i in range(4)}})
        assert r["ok"] and sorted(r["staged"]) == ["c0", "c1", "c2", "c3"] and r["total"] == 4
        assert "secret" not in json.dumps(r)
        assert api.validator.checked == 4
        r = await _call(api, "stage", {"cameras": {"c4": _cam(4), "c0": None}})
        assert r["staged"] == {"c0": None, "c4": r["staged"]["c4"]} and r["total"] == 5
        assert api.validator.checked == 5  # one camera checked, not the 4 staged before
        bad = await _call(api, "stage", {"cameras": {"c5": _cam(5) | {"detect": {"fps": -1}}}})
        assert not bad["ok"] and any(i.startswith("cameras.c5.detect.fps") for i in bad["issues"])
        assert (await _call(api, "staged", {"limit": 2}))["next"] == "c1"
        assert api.leader.store.staged_count() == 5  # the refused page staged nothing
        r = await _call(api, "apply")
        assert r["ok"] and r["counts"] == {"added": 4, "removed": 0, "changed": 0}
        assert r["added"] == ["c1", "c2", "c3", "c4"] and not r["truncated"]
        assert api.validator.checked == 6  # c5 (refused) was the only other check: apply reused them all
        assert sorted(api.leader.store.cameras()) == ["c1", "c2", "c3", "c4"]
        # a changed setting is checked again; the same settings under a stored name are not
        r = await _call(api, "apply", {"cameras": {f"c{i}": _cam(i, fps=2 if i == 1 else 5) for i in (1, 2)}})
        assert r["ok"] and r["changed"] == ["c1"] and r["removed"] == ["c3", "c4"]
        assert api.validator.checked == 7

    asyncio.run(go())


def test_apply_reply_is_counts_and_capped_lists(api: ControlAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "REPLY_CAP", 2)

    async def go() -> None:
        r = await _call(api, "apply", {"cameras": {f"c{i}": _cam(i) for i in range(5)}})
        assert r["ok"] and r["counts"]["added"] == 5 and r["added"] == ["c0", "c1"] and r["truncated"]
        # staged_only: the fleet becomes exactly what is staged (a whole fleet sent in pages)
        await _call(api, "stage", {"cameras": {"c1": _cam(1), "c9": _cam(9)}})
        r = await _call(api, "apply", {"staged_only": True})
        assert r["ok"] and r["counts"] == {"added": 1, "removed": 4, "changed": 0}
        assert sorted(api.leader.store.cameras()) == ["c1", "c9"]
        bad = await _call(api, "apply", {"staged_only": True, "cameras": {}})
        assert not bad["ok"] and "staged_only" in bad["error"]

    asyncio.run(go())


def test_the_validator_checks_what_changed_and_reports_like_the_whole_check() -> None:
    v = FleetValidator()
    out = v.validate({"b": _cam(2), "a": _cam(1)})
    assert list(out) == ["a", "b"] and v.checked == 2
    assert v.validate({"a": _cam(1), "b": _cam(2, fps=3)})["b"].settings["detect"] == {"fps": 3}
    assert v.checked == 3
    with pytest.raises(FleetConfigError) as err:
        v.validate({"a": _cam(1), "bad.name": _cam(3), "c": {"sources": "no"}})
    assert any("bad.name" in i for i in err.value.issues) and any("cameras.c" in i for i in err.value.issues)
    v.retain(["a"])
    v.validate({"b": _cam(2, fps=3)})
    assert v.checked == 3 + 2 + 1  # b forgotten: checked again


def test_a_fleet_larger_than_one_request_is_staged_in_pages_all_or_nothing(
    nats1: Any, api: ControlAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "STAGE_PAGE", 3)
    pages: list[str] = []

    async def go() -> None:
        client = await nats.connect(nats1.url)

        async def answer(msg: Any) -> None:
            pages.append(msg.subject.rsplit(".", 1)[1])
            await api.on_message(msg)

        await client.subscribe(f"{CTL_PREFIX}.*", cb=answer)
        options = NatsOptions((nats1.url,))
        try:
            fleet = {f"c{i}": _cam(i) for i in range(8)}
            r = await apply_fleet(options, fleet, max_bytes=1000)
            assert r["counts"]["added"] == 8 and pages == ["discard", "stage", "stage", "stage", "apply"]
            assert sorted(api.leader.store.cameras()) == sorted(fleet)
            pages.clear()
            small = await apply_fleet(options, {"c0": _cam(0)})
            assert pages == ["apply"] and small["counts"]["removed"] == 7
            # problems in two pages: all reported, the staging discarded, the fleet unchanged
            broken = fleet | {"c1": _cam(1) | {"detect": {"fps": -1}}, "c7": {"sources": 5}}
            with pytest.raises(ControlError) as err:
                await apply_fleet(options, broken, max_bytes=1000)
            assert {i.split(".")[1] for i in err.value.reply["issues"]} == {"c1", "c7"}
            assert list(api.leader.store.cameras()) == ["c0"] and api.leader.store.staged_count() == 0
            assert (await ask(client, "nodes", {"limit": 5}))["next"] in {f"n00{i}" for i in range(5)}
        finally:
            await client.close()

    asyncio.run(go())
