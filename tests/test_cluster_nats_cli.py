"""``camfleet nats``: a 3-server JetStream cluster from the wheel's nats-server; Ctrl-C and kill -9 end it."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from pathlib import Path

import nats
import pytest
from nats.js.api import KeyValueConfig

from tests.support.fleet import spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.e2e


def _urls(log: Path) -> list[str] | None:
    match = re.search(r"client URL: (\S+)", log.read_text())
    return match.group(1).split(",") if match else None


def _listening(url: str) -> bool:
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, int(port))) == 0


async def _replicated_bucket(urls: list[str]) -> tuple[int, int]:
    client = await nats.connect(servers=urls, connect_timeout=2)
    try:
        js = client.jetstream(timeout=5)
        kv = await js.create_key_value(KeyValueConfig(bucket="probe", replicas=3))
        revision = await kv.put("k", b"v")
        info = await js.stream_info("KV_probe")
        assert info.cluster is not None
        return revision, 1 + len(info.cluster.replicas or [])
    finally:
        await client.close()


def test_cluster_of_three_serves_replicated_kv_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    log = tmp_path / "nats.log"
    proc = spawn_cli(["nats", "--cluster", "3", "--port", "0", "--data-dir", str(tmp_path / "store")], log)
    try:
        urls = wait_for("the client URLs", lambda: _urls(log), 30)
        assert len(urls) == 3 and all(_listening(u) for u in urls)
        assert "nats-server 2." in log.read_text()
        revision, copies = asyncio.run(_replicated_bucket(urls))
        assert revision == 1 and copies == 3
        assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["n1", "n2", "n3"]
        assert all((tmp_path / "store" / n / "jetstream").is_dir() for n in ("n1", "n2", "n3"))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, log.read_text()
        assert not any(_listening(u) for u in urls)
        assert "stopped." in log.read_text()
    finally:
        stop_process(proc)


def test_kill_9_of_the_command_leaves_no_server(tmp_path: Path) -> None:
    log = tmp_path / "nats.log"
    proc = spawn_cli(["nats", "--port", "0", "--data-dir", str(tmp_path / "store")], log)
    try:
        urls = wait_for("the client URL", lambda: _urls(log), 30)
        assert _listening(urls[0])
        proc.kill()
        proc.wait(5)
        # the pidfd watch fires at once; on a busy machine the server's exit may take a while
        wait_for("the server to die with its parent", lambda: not _listening(urls[0]), 30)
    finally:
        stop_process(proc)
