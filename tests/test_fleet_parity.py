"""The coordinator's API is the node's API (issue 15): the two OpenAPI documents compared, and pure parts.

Both apps are built as ``camfleet run`` and ``camfleet coordinator --api`` build them
(nothing started: the documents come from the routes). Every node path and method
must exist on the coordinator with the same parameters (the coordinator may add
optional ones), the same request body and, for every documented status, a response
schema that holds everything the node's holds (the coordinator may add fields, such
as ``node``); the coordinator's only extra paths are ``/api/fleet/*``. WebSocket
routes (not in OpenAPI) are compared by path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Match
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from camfleet.api.app import create_app
from camfleet.api.fleet import create_fleet_app
from camfleet.api.fleet.agent_app import ClusterGuard
from camfleet.api.fleet.routes_config import validate_text
from camfleet.api.fleet.routes_storage import FORGET_LOST_S, NodeStorage, storage_nodes, total
from camfleet.api.schemas import CameraStorage, Storage
from camfleet.cluster.clusterauth import AUTH_HEADER, sign, verify
from camfleet.cluster.connection import NatsOptions
from camfleet.fleetstore.events import Incoming, page_events, store_batch
from camfleet.fleetstore.flags import (
    flags_of,
    mark_retain_told,
    pending_retains,
    reviewed_filter,
    set_retained,
    set_reviewed,
)
from camfleet.fleetstore.store import FleetStore
from camfleet.store import Store
from camfleet.vocabulary import Event, EventMessage

pytestmark = pytest.mark.unit

_IGNORED = {"title", "description", "examples", "example"}


def _apps(tmp_path: Path) -> tuple[FastAPI, FastAPI, Store, FleetStore]:
    store = Store.open(f"sqlite:///{tmp_path / 'node.db'}")
    fleet_store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    from camfleet.config import ApiSettings

    node = create_app(None, store, ApiSettings(), data_dir=tmp_path,  # type: ignore[arg-type]
                      recordings_dir=tmp_path)  # the document needs no node
    fleet = create_fleet_app(fleet_store, NatsOptions(("nats://127.0.0.1:1",)), ApiSettings(),
                             coordinator_id="c1")
    return node, fleet, store, fleet_store


def _resolve(doc: dict[str, Any], schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _compatible(node_doc: dict[str, Any], node: Any, fleet_doc: dict[str, Any], fleet: Any,
                where: str, problems: list[str], depth: int = 0) -> None:
    """Add to ``problems`` where ``fleet`` does not hold everything ``node`` does (fields may be added)."""
    node, fleet = _resolve(node_doc, node), _resolve(fleet_doc, fleet)
    if depth > 20 or node == fleet:
        return
    if not isinstance(node, dict) or not isinstance(fleet, dict):
        problems.append(f"{where}: {node!r} != {fleet!r}")
        return
    for key in sorted(set(node) | set(fleet)):
        if key in _IGNORED:
            continue
        a, b = node.get(key), fleet.get(key)
        if key == "properties":
            for name, sub in (a or {}).items():
                if name not in (b or {}):
                    problems.append(f"{where}: field {name!r} missing")
                else:
                    _compatible(node_doc, sub, fleet_doc, b[name], f"{where}.{name}", problems, depth + 1)
        elif key == "required" and isinstance(a, list):
            missing = set(a or []) - set(b or [])
            if missing:
                problems.append(f"{where}: {sorted(missing)} not required")
        elif isinstance(a, dict) and isinstance(b, dict):  # items, content, a media type's schema...
            _compatible(node_doc, a, fleet_doc, b, f"{where}[{key}]", problems, depth + 1)
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(a, list) and isinstance(b, list) \
                and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _compatible(node_doc, x, fleet_doc, y, f"{where}<{key}{i}>", problems, depth + 1)
        elif a != b:
            problems.append(f"{where}: {key} {a!r} != {b!r}")


REQUIRED_ON_THE_COORDINATOR = {("GET /api/recordings", ("camera", "query"))}
"""Optional on a node, required on a coordinator (and its schema then not nullable): each node lists
only its own cameras' recordings, so the coordinator must know which node to ask."""


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without its ``null`` alternative (an optional parameter's ``anyOf [T, null]`` -> T)."""
    alternatives = [a for a in schema.get("anyOf", []) if a != {"type": "null"}]
    return alternatives[0] if len(alternatives) == 1 else schema


def _params(op: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["name"], p["in"]): p for p in op.get("parameters", [])}


def test_the_coordinator_serves_every_node_path_with_the_same_shapes(tmp_path: Path) -> None:
    node_app, fleet_app, store, fleet_store = _apps(tmp_path)
    try:
        node_doc, fleet_doc = node_app.openapi(), fleet_app.openapi()
    finally:
        store.close()
        fleet_store.close()
    node_paths, fleet_paths = node_doc["paths"], fleet_doc["paths"]
    problems: list[str] = []
    for path, ops in node_paths.items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            theirs = fleet_paths.get(path, {}).get(method)
            if theirs is None:
                problems.append(f"{where}: not on the coordinator")
                continue
            mine, other = _params(op), _params(theirs)
            for key, param in mine.items():
                if key not in other:
                    problems.append(f"{where}: parameter {key} missing")
                    continue
                schema = param["schema"]
                if (where, key) in REQUIRED_ON_THE_COORDINATOR:
                    if param.get("required", False) or not other[key].get("required", False):
                        problems.append(f"{where}: parameter {key} not optional on the node, required here")
                    schema = _not_null(schema)
                elif param.get("required", False) != other[key].get("required", False):
                    problems.append(f"{where}: parameter {key} required differs")
                _compatible(node_doc, schema, fleet_doc, other[key]["schema"], f"{where} ?{key[0]}", problems)
            problems += [f"{where}: added parameter {k} is required" for k, p in other.items()
                         if k not in mine and p.get("required")]
            _compatible(node_doc, op.get("requestBody"), fleet_doc, theirs.get("requestBody"),
                        f"{where} body", problems)
            for status, response in op["responses"].items():
                got = theirs["responses"].get(status)
                if got is None:
                    problems.append(f"{where}: no {status} response")
                    continue
                for media, content in response.get("content", {}).items():
                    if media not in got.get("content", {}):
                        problems.append(f"{where} {status}: no {media}")
                    else:
                        theirs_schema = got["content"][media].get("schema")
                        _compatible(node_doc, content.get("schema"), fleet_doc, theirs_schema,
                                    f"{where} {status} {media}", problems)
    extra = sorted(p for p in fleet_paths if p not in node_paths and not p.startswith("/api/fleet/"))
    assert not extra, f"coordinator paths a node does not serve: {extra}"
    assert not problems, "\n".join(problems)

    for path in ("/api/ws", "/api/cameras/door/meta"):  # the node's WebSockets
        assert _serves_websocket(node_app, path) and _serves_websocket(fleet_app, path), path


def _serves_websocket(app: FastAPI, path: str) -> bool:
    scope = {"type": "websocket", "path": path, "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def test_a_signed_body_cannot_be_swapped() -> None:
    key = b"k" * 32
    header = sign(key, "PUT", "/api/events/e1/retain", body=b'{"retained":true}')
    assert verify(key, header, "PUT", "/api/events/e1/retain", body=b'{"retained":true}')
    assert not verify(key, header, "PUT", "/api/events/e1/retain", body=b'{"retained":false}')
    assert not verify(key, header, "PUT", "/api/events/e1/retain")
    # a GET's signature is unchanged by the body support (agents of the previous release verify it)
    assert verify(key, sign(key, "GET", "/api/x"), "GET", "/api/x")


def _events(store: FleetStore, node: str, *ids: str) -> None:
    batch = [Incoming(node=node, seq=i + 1, camera="door", token=1, published_at=100.0 + i,
                      message=EventMessage("end", Event(id=eid, camera="door", label="person",
                                                        start=100.0 + i, end=101.0 + i, top_score=0.9)))
             for i, eid in enumerate(ids)]
    store_batch(store.engine, batch)


def test_reviewed_and_retain_marks_are_kept_centrally(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        _events(store, "n1", "a", "b", "c")
        assert set_reviewed(store.engine, ["a", "b", "ghost"], True) == 2
        assert set_reviewed(store.engine, ["b"], False) == 1
        rows, n = page_events(store.engine, where=reviewed_filter(True))
        assert [r["id"] for r in rows] == ["a"] and n == 1
        rows, n = page_events(store.engine, where=reviewed_filter(False))
        assert [r["id"] for r in rows] == ["c", "b"] and n == 2
        set_retained(store.engine, "c", "n1", True, pending=True)
        assert pending_retains(store.engine) == [("c", "n1", True)]
        set_retained(store.engine, "c", "n1", False, pending=True)  # changed before the node was told
        assert not mark_retain_told(store.engine, "c", True)  # the old value's delivery clears nothing
        assert mark_retain_told(store.engine, "c", False) and pending_retains(store.engine) == []
        marks = flags_of(store.engine, ["a", "c", "b"])
        assert marks["a"].reviewed and marks["c"].retained is False and not marks["b"].reviewed
        _events(store, "n1", "c")  # a later state of the event keeps the users' marks
        assert flags_of(store.engine, ["c"])["c"].retained is False
    finally:
        store.close()


def test_storage_sums_the_nodes_and_names_the_silent_ones() -> None:
    n1 = Storage(recordings_dir_total_bytes=100, recordings_dir_free_bytes=40, events=3,
                 cameras={"door": CameraStorage(segments=2, bytes=10)})
    n2 = Storage(recordings_dir_total_bytes=50, recordings_dir_free_bytes=None, events=1,
                 cameras={"door": CameraStorage(segments=1, bytes=5),
                          "yard": CameraStorage(segments=4, bytes=8)})
    down = NodeStorage(error="node n3 unreachable since 2026-01-01T00:00:00Z (ConnectError)")
    got = total({"n1": NodeStorage(storage=n1), "n2": NodeStorage(storage=n2), "n3": down}, events=9)
    assert (got.recordings_dir_total_bytes, got.recordings_dir_free_bytes, got.events) == (150, 40, 9)
    assert got.cameras["door"] == CameraStorage(segments=3, bytes=15) and got.cameras["yard"].bytes == 8
    assert got.nodes["n3"].error is not None and "unreachable since" in got.nodes["n3"].error
    assert total({"n3": down}, 0).recordings_dir_total_bytes is None


def test_validate_checks_a_fleet_document_as_apply_does() -> None:
    good = ("cameras:\n  door:\n    sources: [{url: 'synthetic://d', roles: [detect]}]\n"
            "    placement: {pin: n1}\n")
    assert validate_text(good, None).valid
    bad = ("cameras:\n  door:\n    sources: [{url: 'synthetic://d', roles: [detect]}]\n"
           "    detect: {fps: -1}\n    placement: {gpu: 1}\n")
    result = validate_text(bad, None)
    paths = {i.path for i in result.issues}
    assert not result.valid and "cameras.door.placement.gpu" in paths, result.issues
    fps = next(i for i in result.issues if i.path.startswith("cameras.door.detect"))
    assert fps.line == 4, fps  # placed in the text sent
    typo = validate_text("cameras:\n  door:\n    sourcez: []\n", None).issues
    (issue,) = [i for i in typo if "sourcez" in i.path]
    assert issue.line == 3 and issue.suggestion, issue  # as a node says it
    # anything else is a node's whole configuration, checked as a node checks it
    assert not validate_text("cameras: {}\nbogus: 1\n", None).valid
    assert not validate_text("cameras: [", None).valid


def _routes(routes: list[Any]) -> set[tuple[str, str]]:
    """(path, method) of every HTTP route, in or out of the OpenAPI document; ``WS`` for WebSockets."""
    out: set[tuple[str, str]] = set()
    for r in routes:
        inner = getattr(r, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
        if inner is not None:
            out |= _routes(inner.routes)
        elif isinstance(r, APIRoute):
            out |= {(r.path, m) for m in r.methods}
        elif isinstance(r, APIWebSocketRoute):
            out.add((r.path, "WS"))
    return out


def test_every_node_route_is_on_the_coordinator_frigate_and_websockets_included(tmp_path: Path) -> None:
    node_app, fleet_app, store, fleet_store = _apps(tmp_path)
    store.close()
    fleet_store.close()
    missing = _routes(node_app.router.routes) - _routes(fleet_app.router.routes)
    assert not missing, sorted(missing)
    assert ("/frigate/api/events/{event_id}/thumbnail.jpg", "GET") in _routes(fleet_app.router.routes)


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app answering a request with its body, and accepting a WebSocket."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": scope["camfleet.principal"].name})
        await send({"type": "websocket.close", "code": 1000})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_the_agents_guard_takes_signed_retains_storage_and_meta_only() -> None:
    key = b"k" * 32
    client = TestClient(ClusterGuard(_echo, key=lambda: key))
    path, body = "/api/events/e1/retain", b'{"retained":true}'
    signed = {AUTH_HEADER: sign(key, "PUT", path, body=body)}
    ok = client.put(path, content=body, headers=signed)
    assert ok.status_code == 200 and ok.content == body  # the body read for the check reaches the app
    assert client.put(path, content=b'{"retained":false}', headers=signed).status_code == 401
    big = b"x" * 5000
    assert client.put(path, content=big, headers={AUTH_HEADER: sign(key, "PUT", path, body=big)}
                      ).status_code == 413
    for where, status in (("/api/storage", 200), ("/api/status", 404)):
        assert client.get(where, headers={AUTH_HEADER: sign(key, "GET", where)}).status_code == status
    put = client.put("/api/cameras/x", headers={AUTH_HEADER: sign(key, "PUT", "/api/cameras/x")})
    assert put.status_code == 404
    meta = "/api/cameras/door/meta"
    with client.websocket_connect(meta, headers={AUTH_HEADER: sign(key, "GET", meta)}) as ws:
        assert ws.receive_text().startswith("cluster#")  # a name per connection: no shared slot limit
    for where, header in ((meta, None), ("/api/ws", sign(key, "GET", "/api/ws"))):
        with pytest.raises(WebSocketDisconnect) as closed, \
                client.websocket_connect(where, headers={AUTH_HEADER: header} if header else {}) as ws:
            ws.receive_text()
        assert closed.value.code == 1008


def test_storage_forgets_a_node_lost_for_over_a_day() -> None:
    now = 1_000_000.0
    rows = {"alive": {"state": "alive", "updated_at": now - 5 * 86400},  # quiet rows, still a member
            "lost-now": {"state": "lost", "updated_at": now - 60},
            "gone": {"state": "lost", "updated_at": now - FORGET_LOST_S - 1},
            "gone-heard": {"state": "lost", "updated_at": now - 10 * 86400},
            "no-time": {"state": "lost", "updated_at": None}}
    assert storage_nodes(rows, ["gone-heard", "new"], now) == ["alive", "gone-heard", "lost-now", "new"]
