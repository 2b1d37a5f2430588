"""Shared set-up of the API tests: a real node on synthetic cameras, a real SQLite store, the server."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from camfleet.api import ApiServer, create_app
from camfleet.config import ApiSettings, Config, load_config_text
from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE, models_dir
from camfleet.runtime import Node
from camfleet.store import Store


def camera_yaml(name: str, seed: int = 0, objects: str = "person", record: bool = False) -> str:
    roles = "[detect, record]" if record else "[detect]"
    text = (f"  {name}:\n    sources: [{{url: \"synthetic://{name}?width=320&height=240&fps=10&seed={seed}"
            f"&objects={objects}\", roles: {roles}}}]\n"
            f"    zones:\n      left: {{points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}\n")
    if record:
        text += "    record: {enabled: true, segment_seconds: 2, pre_capture: 1, post_capture: 1}\n"
    return text


def node_config(data_dir: Path, cameras: str, api: str = "") -> Config:
    return load_config_text(node_yaml(data_dir, cameras, api))


def node_yaml(data_dir: Path | str, cameras: str, api: str = "") -> str:
    """The API tests' node settings: the default model on one CPU detector, the full default pipeline."""
    return f"""
data_dir: {data_dir}
models:
  ssd: {{path: {models_dir() / DEFAULT_MODEL_FILE}, runtime: tflite, input: {{width: 300, height: 300}},
        labels: {models_dir() / DEFAULT_LABELS_FILE}}}
detectors:
  cpu: {{runtime: tflite, processes: 1, threads: 1}}
pipelines:
  default:
    - motion: {{}}
    - detect: {{model: ssd, detector: cpu, min_score: 0.4}}
    - track: {{fps: 5}}
    - zones: {{}}
    - events: {{min_frames: 2}}
    - snapshot: {{boxes: true}}
defaults: {{pipeline: default, detect: {{fps: 5}}}}
{api}
cameras:
{cameras}
"""


@dataclass
class Running:
    """A node, its store and the API server in front of them."""

    config: Config
    node: Node
    store: Store
    server: ApiServer
    shm: Path
    data_dir: Path
    admin: str
    viewer: str

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15, **kwargs)

    def ws(self, token: str | None, **kwargs: Any) -> ClientConnection:
        url = self.url.replace("http://", "ws://") + "/api/ws"
        if token:
            url += f"?token={token}"
        return connect(url, open_timeout=5, close_timeout=2, **kwargs)


@contextlib.contextmanager
def shm_env(prefix: str) -> Iterator[Path]:
    """A segment directory for a module's node, set in the environment while it runs."""
    path = Path("/dev/shm") / f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"
    path.mkdir(mode=0o700)
    old = os.environ.get("CAMFLEET_SHM_DIR")
    os.environ["CAMFLEET_SHM_DIR"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("CAMFLEET_SHM_DIR", None)
        else:
            os.environ["CAMFLEET_SHM_DIR"] = old
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def running(tmp: Path, cameras: str, api: str = "", settings: ApiSettings | None = None) -> Iterator[Running]:
    """Start everything (the caller sets CAMFLEET_SHM_DIR); stop it all, bounded, at the end."""
    config = node_config(tmp, cameras, api)
    store = Store.open(config.database_url)
    admin = store.create_token("test-admin", "admin")
    viewer = store.create_token("test-viewer", "viewer")
    node = Node(config, store=store)
    node.start()
    server: ApiServer | None = None
    try:
        app = create_app(node, store, settings or config.api, data_dir=config.data_path,
                         recordings_dir=config.recordings_path)
        server = ApiServer(app, "127.0.0.1", 0)
        server.start()
        yield Running(config, node, store, server, Path(os.environ["CAMFLEET_SHM_DIR"]), config.data_path,
                      admin, viewer)
    finally:
        if server is not None:
            server.stop(5)
        node.stop()
        store.close()


def wait_ws(ws: ClientConnection, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    """The first WebSocket message (JSON) for which ``pred`` holds; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching WebSocket message within {timeout} s ({seen} seen)")
        try:
            raw = ws.recv(timeout=left)
        except TimeoutError:
            continue
        seen += 1
        msg = json.loads(raw)
        if pred(msg):
            return msg


def camera_state(msg: dict[str, Any], name: str) -> dict[str, Any] | None:
    if msg.get("type") != "snapshot":
        return None
    cam: dict[str, Any] | None = msg["status"]["cameras"].get(name)
    return cam
