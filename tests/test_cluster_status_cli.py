"""``camfleet cluster status``, the fleet's ``top``: one-shot, refreshes, JSON lines, Ctrl-C, a terminal.

Real parts: one NATS server, one ``camfleet coordinator`` process, two fake agents
(:mod:`tests.support.fake_agents`: real records, beats and status reports with
CPU, fps and detector figures), the CLI as subprocesses. Checked: a watch
started before any coordinator shows "no leader" and then the fleet once one
leads, and Ctrl-C ends it with exit 0 and no traceback; a one-shot prints each
node's state, cameras, CPU, fps and detector load; ``--count 2 --cameras``
prints two refreshes with every camera and exits 0; ``--json`` one JSON document
per refresh; on a terminal (a pty) it refreshes by default, in place (ANSI), cut
to the terminal's width.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from camfleet.cluster.connection import NatsOptions
from camfleet.cluster.control import ControlError, request
from camfleet_testing.nats import NatsHarness
from tests.support.fake_agents import FakeAgent
from tests.support.fleet import cli_env, spawn_cli, stop_process, wait_for
from tests.support.loop_thread import LoopThread

pytestmark = pytest.mark.process

CAMERAS = {f"cam{i}": {"sources": [{"url": f"rtsp://u:secret{i}@10.0.0.{i}/s", "roles": ["detect"]}]}
           for i in range(1, 5)}


def _status(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "camfleet.cli", "cluster", "status", "--nats", url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=cli_env())


def _done(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _pty_frames(url: str, frames: int) -> str:
    """What ``cluster status`` shows on a 100x40 terminal until ``frames`` refreshes, then Ctrl-C."""
    main, sub = pty.openpty()
    term = subprocess.Popen([sys.executable, "-m", "camfleet.cli", "cluster", "status", "--nats", url,
                             "--interval", "0.2"], stdin=subprocess.DEVNULL, stdout=sub, stderr=sub,
                            env=cli_env() | {"COLUMNS": "100", "LINES": "40"})
    os.close(sub)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while screen.count(b"fleet at ") < frames and time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                screen += os.read(main, 65536)
        term.send_signal(signal.SIGINT)
        assert term.wait(30) == 0  # exits cleanly (bounded generously: CI has 2 busy cores)
    finally:
        if term.poll() is None:
            term.kill()
            term.wait(5)
        os.close(main)
    return screen.decode(errors="replace")


def test_cluster_status_once_watch_json_ctrl_c_and_a_terminal(nats1: NatsHarness, tmp_path: Path) -> None:
    url = nats1.url
    options = NatsOptions((url,))
    # a watch from before there is a coordinator: "no leader" refreshes until one answers
    log = tmp_path / "watch.log"
    watch = spawn_cli(["cluster", "status", "--nats", url, "-w", "--interval", "0.3", "--timeout", "1"], log)
    wait_for("a first refresh", lambda: "error: no leader coordinator answers" in log.read_text(), 60)
    coord = spawn_cli(["coordinator", "--nats", url, "--data-dir", str(tmp_path / "c1"),
                       "--db", f"sqlite:///{tmp_path / 'fleet.db'}"], tmp_path / "c1.log")
    loop = LoopThread()
    client = loop.run(nats.connect(url))
    agents = [FakeAgent(client, f"node-{c}") for c in "ab"]
    for agent in agents:
        agent.camera_status = {"processed_fps": 5.0, "detector_rps": 2.5, "cpu_percent": 12.5}
        agent.detectors = {"cpu-0": {"kind": "detector", "state": "healthy", "cpu_percent": 40.0}}
    try:
        for agent in agents:
            loop.run(agent.start())

        def applied() -> dict[str, Any] | None:
            try:
                return loop.run(request(options, "apply", {"cameras": CAMERAS}, timeout_s=5))
            except ControlError:
                return None  # no leader yet

        wait_for("a leader that takes the apply", applied, 30, 0.3)

        def figures() -> dict[str, Any] | None:  # both nodes reported their 2 cameras
            reply = loop.run(request(options, "status", timeout_s=5))
            figs = reply["node_figures"]
            done = len(figs) == 2 and all(f["states"] == {"healthy": 2} for f in figs.values())
            return reply if done else None

        reply = wait_for("both nodes' reports at the leader", figures, 20, 0.3)
        assert reply["node_figures"]["node-a"]["cpu_percent"] == 2 * 12.5 + 40.0
        assert reply["cameras"]["cam1"]["cpu_percent"] == 12.5

        # at once (each CLI start costs seconds): one snapshot (not a terminal), two refreshes with the
        # cameras, two of JSON, and a terminal
        procs = [_status(url), _status(url, "--count", "2", "--interval", "0.3", "--cameras"),
                 _status(url, "--json", "--count", "2", "--interval", "0.2")]
        text = _pty_frames(url, 2)
        once, watched, as_json = (_done(p) for p in procs)
        print(f"$ camfleet cluster status\n{once.stdout}\n$ camfleet cluster status --count 2 --cameras\n"
              f"{watched.stdout}")

        assert once.returncode == 0, once
        lines = once.stdout.splitlines()
        assert lines[0].startswith("fleet at ") and "2 node(s), 4 camera(s): 4 healthy" in lines[0]
        head = next(line for line in lines if line.startswith("NODE"))
        for col in ("STATE", "CAMS", "CPU%", "LOAD", "DEC/s", "PROC/s", "DET/s", "BEAT"):
            assert col in head
        row = next(line for line in lines if line.startswith("node-a")).split()
        assert row[1:8] == ["host-node-a", "alive", "yes", "2", "65.0", row[6], "30.0"], row
        assert row[8:10] == ["10.0", "5.0"]  # frames/s analysed, detector requests/s
        assert "CAMERA" not in once.stdout and "\x1b" not in once.stdout

        assert watched.returncode == 0, watched
        assert watched.stdout.count("fleet at ") == 2 and watched.stdout.count("\ncam3 ") == 2
        assert "secret" not in watched.stdout and "\x1b" not in watched.stdout
        cam = next(line for line in watched.stdout.splitlines() if line.startswith("cam1 ")).split()
        assert cam[3:8] == ["healthy", "15.0", "5.0", "2.5", "12.5"], cam

        docs = [json.loads(x) for x in as_json.stdout.splitlines()]
        assert len(docs) == 2 and all(d["ok"] and len(d["nodes"]) == 2 for d in docs), as_json

        # a terminal: refreshed by default, in place, cut to its width
        assert text.count("\x1b[H") >= 2 and "node-b" in text and "Traceback" not in text
        assert all(len(line) <= 100 for line in re.sub(r"\x1b\[[A-Z]", "", text).split("\r\n"))

        # the watch started before any coordinator said so, then showed the fleet; Ctrl-C ends it cleanly
        wait_for("the watch showing the fleet", lambda: "2 node(s), 4 camera(s)" in log.read_text(), 20)
        watch.send_signal(signal.SIGINT)
        assert watch.wait(30) == 0
        seen = log.read_text()
        assert "error: no leader coordinator answers" in seen and "Traceback" not in seen
    finally:
        stop_process(watch)
        for agent in agents:
            loop.run(agent.die())
        loop.run(client.close())
        loop.close()
        stop_process(coord)
        print("--- c1.log (tail)\n" + "\n".join((tmp_path / "c1.log").read_text().splitlines()[-12:]))
