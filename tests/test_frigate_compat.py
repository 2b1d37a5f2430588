"""``compat.frigate``: Frigate's HTTP API under ``/frigate/api`` of a real node, as Home Assistant calls it.

One module-scoped node (a synthetic camera, the default model, recording) with
``compat: {frigate: true}``. The requests follow the integration's client
(``custom_components/frigate/api.py`` of blakeblackshear/frigate-hass-integration):
its URL is ``http://HOST:PORT/frigate`` and every path is joined onto it; it
logs in with ``POST api/login`` (user, password = a camfleet token), takes the
``frigate_token`` value out of ``Set-Cookie``, reads ``exp`` from the JWT
without verifying it and sends the JWT as a bearer token. The field-by-field
shape checks are in ``test_frigate_shapes.py``; here: the wire, auth and media.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from PIL import Image

from camfleet.config.sections import CompatSettings
from camfleet.store import EventRecord

from .support.api_node import Running, camera_yaml, running, shm_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("frigate")
    with shm_env("camfleet-frigate") as shm, \
            running(tmp, camera_yaml("cam1", record=True), api="compat: {frigate: true}") as r:
        yield r
        assert r.shm == shm
    assert not shm.exists()


@pytest.fixture(autouse=True)
def _module_shm(rt: Running, shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # latest.jpg subscribes in this process: point it at the module node's rings
    monkeypatch.setenv("CAMFLEET_SHM_DIR", str(rt.shm))


def _base(rt: Running) -> str:
    return rt.url + "/frigate"  # what the user types into the integration


def _login(rt: Running, token: str) -> httpx.Response:
    return httpx.post(f"{_base(rt)}/api/login", json={"user": "homeassistant", "password": token}, timeout=10)


def _session(rt: Running, token: str) -> str:
    """The JWT, taken out of Set-Cookie exactly as api.py _get_token does."""
    r = _login(rt, token)
    assert r.status_code == 200, r.text
    header = r.headers.get("Set-Cookie", "")
    for raw in header.split(";"):
        prop = raw.strip()
        if prop.startswith("frigate_token="):
            return prop.split("=", 1)[1]
    raise AssertionError(f"no frigate_token in {header!r}")


@pytest.fixture(scope="module")
def ha(rt: Running) -> Iterator[httpx.Client]:
    """The integration's client, logged in with a viewer token."""
    token = _session(rt, rt.viewer)
    # no keep-alive: a connection the server closed while idle (uvicorn: 5 s) must not fail a request
    with httpx.Client(base_url=_base(rt) + "/", headers={"Authorization": f"Bearer {token}"}, timeout=20,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


def _until(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout} s: {value!r}"[:2000])
        time.sleep(0.3)  # the node writes stats, events and segments on its own clock: nothing to await


def test_login_as_the_integration_does(rt: Running) -> None:
    r = _login(rt, rt.viewer)
    cookie = r.headers["Set-Cookie"]
    attrs = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "path", "samesite"} <= attrs and "samesite=strict" in cookie.lower()
    assert "secure" not in attrs  # plain HTTP here; set when the request came over TLS
    assert "path=/frigate" in cookie.lower()
    token = _session(rt, rt.viewer)
    # api.py _get_token: jwt_wrapper.unverified_hs256_token_decode(token).get("exp")
    claims = jwt.decode(token, options={"verify_signature": False}, algorithms=["HS256"])
    assert claims["exp"] > time.time() + 3600 and claims["sub"] == "test-viewer"
    assert rt.viewer not in token
    assert _login(rt, "cft_not-a-token").status_code == 401
    assert _login(rt, "").status_code == 401
    assert httpx.post(f"{_base(rt)}/api/login", json={"user": "x"}, timeout=10).status_code == 422


def test_setup_and_poll(rt: Running, ha: httpx.Client) -> None:
    # __init__.py async_setup_entry: stats first (coordinator), then version and config
    stats = _until(lambda: ha.get("api/stats").json(),
                   lambda s: s.get("cameras", {}).get("cam1", {}).get("camera_fps", 0) > 0, 30, "camera_fps")
    version = ha.get("api/version")
    assert version.status_code == 200 and version.headers["content-type"].startswith("text/plain")
    assert tuple(int(x) for x in version.text.split("-")[0].split(".")) >= (0, 12, 0)
    config = ha.get("api/config").json()
    assert config["mqtt"]["topic_prefix"] == "frigate"
    assert config["cameras"]["cam1"]["zones"]["left"]["objects"] == []
    assert "person" in config["objects"]["track"]
    assert "person" in config["cameras"]["cam1"]["objects"]["track"]
    for name in stats["cameras"]:  # sensor.py: frigate_config["cameras"][name]["audio"]["enabled_in_config"]
        assert config["cameras"][name]["audio"]["enabled_in_config"] is False
    assert stats["cameras"]["cam1"]["pid"] and str(stats["cameras"]["cam1"]["pid"]) in stats["cpu_usages"]
    assert set(stats["detectors"]) and all("inference_speed" in d for d in stats["detectors"].values())
    assert stats["service"]["uptime"] >= 0 and stats["service"]["storage"]
    assert "secret" not in repr(config).lower() and "synthetic://" not in repr(config)


def test_auth(rt: Running, ha: httpx.Client) -> None:
    paths = ["api/version", "api/config", "api/stats", "api/events", "api/events/x", "api/cam1/latest.jpg",
             "api/events/x/snapshot.jpg", "api/events/x/thumbnail.jpg", "api/events/x/clip.mp4"]
    with httpx.Client(base_url=_base(rt) + "/", timeout=10) as anon:
        for path in paths:
            assert anon.get(path).status_code == 401, path
            assert anon.get(path, headers={"Authorization": "Bearer cft_wrong"}).status_code == 401, path
            assert anon.get(path, headers={"Authorization": "Bearer a.b.c"}).status_code == 401, path
        forged = jwt.encode({"sub": "test-admin", "tid": 1, "role": "admin", "exp": int(time.time()) + 99},
                            b"x" * 32, algorithm="HS256")
        assert anon.get("api/config", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert anon.get("api/config", headers={"Cookie": f"frigate_token={forged}"}).status_code == 401
        # a camfleet token works directly, and the session works as a cookie (reads only)
        assert anon.get("api/config", headers={"Authorization": f"Bearer {rt.viewer}"}).status_code == 200
        good = ha.headers["Authorization"].split(" ", 1)[1]
        assert anon.get("api/version", headers={"Cookie": f"frigate_token={good}"}).status_code == 200
        # the session is good for /frigate only, never for camfleet's own API
        own = httpx.get(f"{rt.url}/api/events", headers={"Authorization": f"Bearer {good}"}, timeout=10)
        assert own.status_code == 401
        # the integration's links to Frigate's UI land on camfleet's
        for link in ("", "cameras/cam1"):
            r = anon.get(link, follow_redirects=False)
            assert r.status_code == 307 and r.headers["location"] == "/", link
        # hostile Host: the API's DNS-rebinding guard covers these paths too
        assert anon.get("api/version", headers={"Host": "evil.example"}).status_code == 421
    # a revoked token's sessions end at once
    token = rt.store.create_token("ha-temp", "viewer")
    session = _session(rt, token)
    auth = {"Authorization": f"Bearer {session}"}
    with httpx.Client(base_url=_base(rt) + "/", headers=auth, timeout=10) as c:
        assert c.get("api/version").status_code == 200
        rt.store.revoke_token(next(t.id for t in rt.store.list_tokens() if t.name == "ha-temp"))
        assert c.get("api/version").status_code == 401
    assert _login(rt, token).status_code == 401


def test_events_and_media(rt: Running, ha: httpx.Client) -> None:
    events = _until(lambda: ha.get("api/events", params={"cameras": "cam1", "has_snapshot": 1,
                                                        "include_thumbnails": 0}).json(),
                    bool, 60, "an event with a snapshot")
    ev = events[0]
    assert ev["camera"] == "cam1" and ev["has_snapshot"] is True and ev["start_time"] > 0
    assert isinstance(ev["data"]["top_score"], float) and "top_score" in ev
    one = ha.get(f"api/events/{ev['id']}").json()
    assert one["id"] == ev["id"] and one["label"] == ev["label"]
    # camfleet's own API keeps /api/events/{id}: no clash
    own = httpx.get(f"{rt.url}/api/events/{ev['id']}", headers={"Authorization": f"Bearer {rt.viewer}"})
    assert own.status_code == 200 and "start" in own.json() and "start_time" not in own.json()
    # filters the integration sends
    label = ev["label"]
    assert ha.get("api/events", params={"labels": "no-such-label"}).json() == []
    assert any(e["id"] == ev["id"] for e in ha.get("api/events", params={"labels": f"{label},car",
                                                                        "limit": 500}).json())
    assert ha.get("api/events", params={"sub_labels": "bob"}).json() == []
    assert len(ha.get("api/events", params={"limit": 1}).json()) == 1
    assert ha.get("api/events", params={"after": ev["start_time"] + 3600}).json() == []
    assert ha.get("api/events", params={"cameras": "nope"}).json() == []
    assert all(not e["zones"] for e in ha.get("api/events", params={"zones": "None"}).json())
    # a damaged snapshot file is a 404, never a 500
    path = rt.data_dir / "snapshots" / "cam1" / "damaged1.jpg"
    path.write_bytes(b"not a jpeg")
    rt.store.upsert_event(EventRecord(id="damaged1", camera="cam1", label="person", start=1.0, end=2.0,
                                      snapshot=str(path), data={"box": [1, 2, 30, 40]}))
    assert ha.get("api/events/damaged1").json()["has_snapshot"] is True
    assert ha.get("api/events/damaged1/thumbnail.jpg").status_code == 404
    assert ha.get("api/events/damaged1/snapshot.jpg", params={"h": 50}).status_code == 404
    assert ha.get("api/events/nope").status_code == 404
    assert ha.get("api/events/..%2Fx").status_code in (404, 422)
    # media
    snap = ha.get(f"api/events/{ev['id']}/snapshot.jpg")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    full = Image.open(io.BytesIO(snap.content))
    small = Image.open(io.BytesIO(ha.get(f"api/events/{ev['id']}/snapshot.jpg", params={"h": 100}).content))
    assert small.height == 100 and full.height != 100
    thumb = ha.get(f"api/events/{ev['id']}/thumbnail.jpg")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).height == 175
    latest = ha.get("api/cam1/latest.jpg", params={"h": 120})
    assert latest.status_code == 200 and Image.open(io.BytesIO(latest.content)).height == 120
    assert ha.get("api/nope/latest.jpg").status_code == 404
    # the clip, once the recorder has covered the event
    with_clip = _until(lambda: ha.get(f"api/events/{ev['id']}").json(), lambda e: e["has_clip"], 30,
                       "has_clip")
    assert with_clip["has_clip"] is True
    assert any(e["id"] == ev["id"] for e in ha.get("api/events", params={"has_clip": 1, "limit": 500}).json())
    clip = ha.get(f"api/events/{ev['id']}/clip.mp4", headers={"Range": "bytes=0-7"})
    assert clip.status_code == 206 and clip.content[4:8] == b"ftyp"


def test_off_is_404_and_reload_turns_it_on(rt: Running, ha: httpx.Client) -> None:
    on = rt.node.current_config()
    off = on.model_copy(update={"compat": CompatSettings(frigate=False)})
    assert rt.node.apply_config(off).ok
    try:
        assert ha.get("api/version").status_code == 404
        assert ha.get("api/config").status_code == 404
        assert _login(rt, rt.viewer).status_code == 404
        with httpx.Client(base_url=_base(rt) + "/", timeout=10) as anon:
            assert anon.get("api/stats").status_code == 404
    finally:
        assert rt.node.apply_config(on).ok
    assert ha.get("api/version").status_code == 200
