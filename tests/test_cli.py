"""The camfleet CLI, run as a real subprocess against live rings."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camfleet import framebus as fb

from .support import fb_workers as w

pytestmark = pytest.mark.e2e

ctx = mp.get_context("spawn")
CAMFLEET = [sys.executable, "-m", "camfleet.cli"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CAMFLEET, *args], capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy(), check=False)


def test_version() -> None:
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.strip() == "0.1.0"


def test_a_subcommand_imports_only_its_own_module() -> None:
    # `camfleet cluster nodes` used to import the pipeline, the detectors and the API first (~1.5 s)
    probe = ("import sys\nfrom camfleet.cli.main import main\nsys.argv = ['camfleet', *sys.argv[1:]]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('camfleet.pipeline', 'camfleet.runtime', 'camfleet.api', 'sqlalchemy')"
             " if m in sys.modules))")
    for args, loaded in ((["cluster", "--help"], "[]"), (["version"], "[]"),
                         (["run", "--help"], "['camfleet.pipeline', 'camfleet.runtime', "
                                             "'sqlalchemy']")):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60,
                           check=False)
        assert r.stdout.strip().splitlines()[-1] == loaded, (args, r.stdout[-2000:], r.stderr[-2000:])
    # the top-level help still lists every subcommand
    listed = run_cli("--help").stdout
    assert all(f" {name} " in listed for name in ("run", "cluster", "agent", "storage", "import", "version"))


def test_bus_list_and_stat_show_publisher_format_and_subscribers() -> None:
    fmt = fb.FrameFormat(320, 240, "nv12")
    with fb.FramePublisher("cli-cam", fmt, slots=4, policy="wait") as pub, \
            fb.PacketPublisher("cli-cam", "h264") as pp, \
            fb.subscribe("cli-cam", mode="sequential", name="detector") as sub:
        pub.publish(bytes(fmt.frame_bytes), pts=90)
        pp.publish(b"\x00\x00\x01\x65", key=True)
        with sub.next(1):
            r = run_cli("bus", "list")
            assert r.returncode == 0, r.stderr
            lines = r.stdout.splitlines()
            frames = next(line for line in lines if "cli-cam" in line and "frames" in line)
            assert str(os.getpid()) in frames and "320x240 nv12" in frames and "detector" in frames
            assert any("cli-cam" in line and "packets" in line and "h264" in line for line in lines)

            r = run_cli("bus", "stat", "cli-cam", "--json")
            info = json.loads(r.stdout)
            assert info["publisher_alive"] and info["policy"] == "wait" and info["last_seq"] == 1
            [s] = info["subscribers"]
            assert (s["name"], s["mode"], s["held"], s["delivered"]) == ("detector", "sequential", 1, 1)

            r = run_cli("bus", "stat", "cli-cam")
            assert "detector" in r.stdout and "alive" in r.stdout


def test_bus_tail_follows_a_live_ring() -> None:
    ready = ctx.Event()
    pub = ctx.Process(target=w.publish_forever, args=("cli-tail", ready))
    pub.start()
    try:
        assert ready.wait(30)
        r = run_cli("bus", "tail", "cli-tail", "--duration", "2.5")
        assert r.returncode == 0, r.stderr
        lines = [line for line in r.stdout.splitlines() if line.startswith("seq")]
        assert len(lines) >= 2
        assert "fps" in lines[-1]
        fps = float(lines[-1].split("fps")[0].split()[-1])
        assert fps > 10  # publisher sends ~90 frames/s
    finally:
        pub.kill()
        pub.join(10)
    fb.FramePublisher("cli-tail", fb.FrameFormat(8, 8, "gray")).close()  # reclaim the crashed one


def test_bus_stat_errors_are_clear(shm_dir: Path) -> None:
    r = run_cli("bus", "stat", "missing")
    assert r.returncode == 1 and "No such file" in r.stdout
    r = run_cli("bus", "stat", "bad key")
    assert r.returncode == 2 and "invalid ring key" in r.stderr
    r = run_cli("bus", "tail", "missing", "--connect-timeout", "0.2")
    assert r.returncode == 1 and "no ring 'missing'" in r.stderr


def test_framebus_demo_for_a_few_seconds(shm_dir: Path) -> None:
    r = run_cli("demo", "--cameras", "2", "--duration", "4", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "demo-cam1" in r.stdout and "stopped" in r.stdout
    assert "gaps 0" in r.stdout
    assert list(shm_dir.iterdir()) == []
