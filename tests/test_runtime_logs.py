"""Per-camera log files: real spawn children log through the supervisor's router into real files."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from camfleet.config import Config
from camfleet.config.model import LogSettings
from camfleet.runtime.default import default_config
from camfleet.runtime.logfiles import LogRouter, child_logging, follow_log, tail_log

pytestmark = pytest.mark.process

ctx = mp.get_context("spawn")
LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"\[(?P<tag>[^\]]+)\] (?P<logger>[\w.]+): (?P<msg>.*)$"
)
SECRET = "hunter2-s3cret"
JOIN_S = 30.0


# ---------------------------------------------------------------- child process bodies (spawned)


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


def child_basic(address: str, camera: str, role: str) -> None:
    child_logging(address, camera, role, "info")
    log = logging.getLogger(f"camfleet.{role}")
    log.info("hello from %s", camera)
    log.debug("debug is below the level")
    log.info("a lock %s and an extra", threading.Lock(), extra={"thing": threading.Lock()})
    log.info("broken %s", _Unprintable())
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("it failed")
    import warnings
    warnings.warn("a captured warning", UserWarning, stacklevel=1)
    log.info("bye from %s", camera)


def child_secret(address: str, camera: str) -> None:
    child_logging(address, camera, "ingest", "info")
    log = logging.getLogger("camfleet.ingest")
    url = f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1"
    log.info("connecting to %s", url)
    log.warning(f"plain f-string {url}")
    try:
        raise ConnectionError(f"cannot open {url}")
    except ConnectionError:
        log.exception("camera %s failed", camera)


def child_writer(address: str, camera: str, role: str, n: int) -> None:
    child_logging(address, camera, role, "info")
    log = logging.getLogger("camfleet.writer")
    for i in range(n):
        log.info("%s line %05d %s", role, i, "x" * 60)


def child_dies_mid_record(address: str) -> None:
    child_logging(address, "cam1", "ingest", "info")
    logging.getLogger("camfleet.ingest").info("whole line before dying")
    handler = logging.getLogger().handlers[0]
    sock = handler._sock  # type: ignore[attr-defined]
    sock.sendall(b'{"msg": "half a rec')  # and then SIGKILL, as the supervisor's escalation does
    os.kill(os.getpid(), signal.SIGKILL)


def child_outlives_router(address: str, go: Any, done: Any) -> None:
    child_logging(address, "cam1", "ingest", "info")
    log = logging.getLogger("camfleet.ingest")
    log.info("before the router stops")
    go.wait(30)
    t = time.monotonic()
    for i in range(100):
        log.info("nobody listens %d", i)
    done.put(time.monotonic() - t)


# ---------------------------------------------------------------- helpers


def _config(tmp_path: Path, **logging_: Any) -> Config:
    return Config.model_validate({"data_dir": str(tmp_path / "data"), "logging": logging_})


def _run_children(*targets: tuple[Callable[..., None], tuple[Any, ...]]) -> None:
    procs = [ctx.Process(target=t, args=a) for t, a in targets]
    for p in procs:
        p.start()
    for p in procs:
        p.join(JOIN_S)
        assert p.exitcode == 0, f"child exit code {p.exitcode}"


def _parse(path: Path) -> list[re.Match[str]]:
    out = []
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if m is None:
            assert line.startswith(("Traceback", "  ", "ZeroDivisionError", "ConnectionError")), line
            continue
        out.append(m)
    return out


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds (nothing to wait on: the router writes asynchronously)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Any:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    logging.captureWarnings(False)


# ---------------------------------------------------------------- tests


def test_children_and_supervisor_log_into_tagged_camera_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    router = LogRouter(config)
    router.start()
    log = logging.getLogger("camfleet.runtime")
    log.info("node starting")
    log.warning("cam1 restarts", extra={"camera": "cam1"})
    _run_children((child_basic, (router.address, "cam1", "ingest")),
                  (child_basic, (router.address, "cam2", "pipeline")))
    _wait_for(lambda: router.open_cameras == ["cam1", "cam2"])
    assert router.stop(10.0)

    logs = config.logs_path
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert sorted(p.name for p in logs.iterdir()) == ["cam1.log", "cam2.log", "camfleet.log"]
    for p in logs.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p

    main = _parse(logs / "camfleet.log")
    tags = {m["tag"] for m in main}
    assert "node" in tags and "cam1/node" in tags
    assert any(re.fullmatch(r"cam1/ingest pid=\d+", t) for t in tags)
    assert any(re.fullmatch(r"cam2/pipeline pid=\d+", t) for t in tags)
    for cam, role in (("cam1", "ingest"), ("cam2", "pipeline")):
        lines = _parse(logs / f"{cam}.log")
        # only this camera's records, each tagged with it
        assert all(m["tag"].startswith(f"{cam}/") for m in lines)
        msgs = [m["msg"] for m in lines if m["tag"].startswith(f"{cam}/{role}")]
        assert msgs[0] == f"hello from {cam}" and msgs[-1] == f"bye from {cam}"
        assert not any("debug is below" in x for x in msgs)
        assert any(x.startswith("a lock <unlocked _thread.lock") for x in msgs)
        assert any("log formatting failed" in x for x in msgs)
        assert any("a captured warning" in x for x in msgs)
        text = (logs / f"{cam}.log").read_text()
        assert "it failed\nTraceback (most recent call last):" in text
        assert "ZeroDivisionError: division by zero" in text
    cam1 = (logs / "cam1.log").read_text()
    assert "cam1 restarts" in cam1 and "node starting" not in cam1
    # the console got the main stream, tagged too
    err = capsys.readouterr().err
    assert "[node] camfleet.runtime: node starting" in err
    assert re.search(r"\[cam2/pipeline pid=\d+\] camfleet\.pipeline: hello from cam2", err)


def test_level_override_and_a_camera_named_like_the_main_log(tmp_path: Path) -> None:
    config = _config(tmp_path, level="warning")
    with LogRouter(config, console=False, level="debug") as router:
        log = logging.getLogger("camfleet.runtime")
        log.debug("debug shows with --verbose", extra={"camera": "cam1"})
        log.info("about the camera called camfleet", extra={"camera": "camfleet"})
        assert router.open_cameras == ["cam1"]  # its lines are in the main log only
    assert "debug shows with --verbose" in (config.logs_path / "cam1.log").read_text()
    assert (config.logs_path / "camfleet.log").read_text().count("camera called camfleet") == 1
    with pytest.raises(ValueError, match="unknown log level"):
        LogRouter(config, level="loud")


def test_password_in_a_url_never_reaches_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    router = LogRouter(config)
    router.start()
    logging.getLogger("camfleet.runtime").error(
        "supervisor saw rtsp://admin:%s@cam/1", SECRET, extra={"camera": "door"}
    )
    _run_children((child_secret, (router.address, "door")))
    assert router.stop(10.0)
    files = list(config.logs_path.iterdir())
    assert {p.name for p in files} == {"camfleet.log", "door.log"}
    for p in files:
        data = p.read_bytes()
        assert SECRET.encode() not in data, p
        assert b"rtsp://***:***@10.0.0.5:554/stream1" in data
    door = (config.logs_path / "door.log").read_text()
    assert "ConnectionError: cannot open rtsp://***:***@10.0.0.5:554/stream1" in door
    assert "supervisor saw rtsp://***:***@cam/1" in door
    assert SECRET not in capsys.readouterr().err


def test_a_child_killed_mid_record_does_not_stop_anyone_elses_logging(tmp_path: Path) -> None:
    config = _config(tmp_path)
    router = LogRouter(config, console=False)
    router.start()
    victim = ctx.Process(target=child_dies_mid_record, args=(router.address,))
    victim.start()
    victim.join(JOIN_S)
    assert victim.exitcode == -signal.SIGKILL
    _run_children((child_writer, (router.address, "cam1", "pipeline", 50)),
                  (child_writer, (router.address, "cam2", "recorder", 50)))
    _wait_for(lambda: router.dropped == 1)  # the half record, and nothing else
    assert router.stop(10.0)
    cam1 = (config.logs_path / "cam1.log").read_text()
    assert "whole line before dying" in cam1 and "half a rec" not in cam1
    assert _writer_lines([config.logs_path / "cam2.log"]) == {"recorder": list(range(50))}
    lines = [m for m in _parse(config.logs_path / "cam1.log") if "pipeline line" in m["msg"]]
    assert len(lines) == 50


def test_children_never_block_on_a_stopped_router(tmp_path: Path) -> None:
    config = _config(tmp_path)
    router = LogRouter(config, console=False)
    router.start()
    go, done = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=child_outlives_router, args=(router.address, go, done))
    child.start()
    path = config.logs_path / "cam1.log"
    _wait_for(lambda: path.exists() and "before the router stops" in path.read_text())
    assert router.stop(5.0)
    assert not Path(router.address).exists()
    go.set()
    assert done.get(timeout=JOIN_S) < 2.0  # 100 records dropped at once, not waited on
    child.join(JOIN_S)
    assert child.exitcode == 0


def _writer_lines(paths: list[Path]) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for p in paths:
        for line in p.read_text().splitlines():
            m = LINE.fullmatch(line)
            assert m is not None, f"broken line in {p.name}: {line!r}"
            w = re.fullmatch(r"(\w+) line (\d{5}) x{60}", m["msg"])
            assert w is not None, f"broken message in {p.name}: {line!r}"
            assert re.fullmatch(rf"cam\d/{w[1]} pid=\d+", m["tag"])
            seen.setdefault(w[1], []).append(int(w[2]))
    return seen


def _rotated(path: Path) -> list[Path]:
    """``path`` and its backups, oldest first."""
    backups = sorted(path.parent.glob(path.name + ".*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, path]


def test_rotation_keeps_every_line_whole_across_three_writers(tmp_path: Path) -> None:
    config = _config(tmp_path, max_bytes=10_000, backups=100)
    router = LogRouter(config, console=False)
    router.start()
    n = 400
    roles = ["ingest", "pipeline", "recorder"]
    _run_children(*((child_writer, (router.address, "cam1", r, n)) for r in roles))
    assert router.stop(10.0)
    files = _rotated(config.logs_path / "cam1.log")
    assert len(files) > 10  # it did rotate, many times
    for p in files:
        assert p.stat().st_size <= 10_000
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    seen = _writer_lines(files)
    # nothing lost, nothing doubled, each writer's lines in order
    assert seen == {r: list(range(n)) for r in roles}
    assert _writer_lines(_rotated(config.logs_path / "camfleet.log")) == seen


def test_rotation_honours_the_backup_count_and_update(tmp_path: Path) -> None:
    config = _config(tmp_path, max_bytes=10_000, backups=2)
    router = LogRouter(config, console=False)
    router.start()
    n = 300
    roles = ["ingest", "pipeline", "recorder"]
    _run_children(*((child_writer, (router.address, "cam1", r, n)) for r in roles))
    assert router.stop(10.0)
    logs = config.logs_path
    names = {p.name for p in logs.iterdir() if p.name.startswith("cam1")}
    assert names == {"cam1.log", "cam1.log.1", "cam1.log.2"}
    # the kept lines are the newest: per writer, an unbroken run ending at its last line
    kept = _writer_lines(_rotated(logs / "cam1.log"))
    assert kept
    for lines in kept.values():
        assert lines == list(range(lines[0], n))

    router = LogRouter(config, console=False)  # a new run appends to the same files
    router.start()
    router.update(LogSettings(max_bytes=20_000, backups=4, level="warning"))
    log = logging.getLogger("camfleet.runtime")
    log.info("not written: below the new level", extra={"camera": "cam1"})
    for i in range(400):
        log.warning("after update %04d %s", i, "y" * 60, extra={"camera": "cam1"})
    router.close_camera("cam1")
    assert router.stop(10.0)
    names = {p.name for p in logs.iterdir() if p.name.startswith("cam1")}
    assert names == {"cam1.log", *(f"cam1.log.{i}" for i in range(1, 5))}
    text = "".join(p.read_text() for p in _rotated(logs / "cam1.log"))
    assert "below the new level" not in text
    assert max(p.stat().st_size for p in _rotated(logs / "cam1.log")) > 10_000


def test_follow_survives_rotation(tmp_path: Path) -> None:
    config = _config(tmp_path, max_bytes=10_000, backups=5)
    router = LogRouter(config, console=False)
    router.start()
    log = logging.getLogger("camfleet.runtime")
    log.info("ready", extra={"camera": "cam1"})
    path = config.logs_path / "cam1.log"
    _wait_for(lambda: path.exists() and "ready" in path.read_text())

    got: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def follow() -> None:
        for line in follow_log(path, stop, lines=1, poll=0.05):
            got.put(line)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert got.get(timeout=10).endswith("ready")  # following from here on
    n = 500
    for i in range(n):
        log.info("follow %04d %s", i, "z" * 50, extra={"camera": "cam1"})
    lines = [got.get(timeout=10) for _ in range(n)]
    stop.set()
    follower.join(5)
    assert not follower.is_alive()
    assert router.stop(10.0)
    assert (config.logs_path / "cam1.log.3").exists()  # it rotated several times meanwhile
    assert [int(re.search(r"follow (\d{4})", x)[1]) for x in lines] == list(range(n))  # type: ignore[index]


def test_follow_catches_up_across_several_rotations_at_once(tmp_path: Path) -> None:
    from camfleet.runtime.logfiles import _LogFile

    path = tmp_path / "c.log"
    handler = _LogFile(path, 10_000, 8)
    handler.setFormatter(logging.Formatter("%(message)s"))

    def write(i: int) -> None:
        handler.emit(logging.makeLogRecord({"msg": f"line {i:05d} " + "q" * 80}))

    write(-1)
    got: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def follow() -> None:
        for line in follow_log(path, stop, lines=1, poll=0.5):
            got.put(line)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    assert got.get(timeout=10).startswith("line -0001")
    for i in range(600):  # ~55 kB: five rotations, well within one poll
        write(i)
    lines = [got.get(timeout=10) for _ in range(600)]
    stop.set()
    follower.join(5)
    handler.close()
    assert (tmp_path / "c.log.5").exists()
    assert lines == [f"line {i:05d} " + "q" * 80 for i in range(600)]


def test_no_backups_truncates_in_place(tmp_path: Path) -> None:
    from camfleet.runtime.logfiles import _LogFile

    path = tmp_path / "c.log"
    handler = _LogFile(path, 10_000, 0)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(1000):
        handler.emit(logging.makeLogRecord({"msg": f"line {i:05d} " + "q" * 80}))
    handler.close()
    assert [p.name for p in tmp_path.iterdir()] == ["c.log"]
    assert 0 < path.stat().st_size <= 10_000
    assert path.read_text().splitlines()[-1].startswith("line 00999")


def test_tail_log(tmp_path: Path) -> None:
    p = tmp_path / "x.log"
    p.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_log(p, 3) == ["line 99997", "line 99998", "line 99999"]
    assert tail_log(p, 0) == []
    q = tmp_path / "short.log"
    q.write_text("a\nb")
    assert tail_log(q, 10) == ["a", "b"]
    with pytest.raises(FileNotFoundError):
        tail_log(tmp_path / "missing.log", 5)


# ---------------------------------------------------------------- the CLI

def _cli() -> typer.Typer:
    from camfleet.cli.logview import logs

    app = typer.Typer()
    app.command()(logs)
    return app


def test_cli_prints_the_last_lines_and_names_the_cameras_with_logs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    logs = default_config(data, cameras=1).logs_path
    logs.mkdir(parents=True)
    (logs / "camfleet.log").write_text("main\n")
    (logs / "cam1.log").write_text("".join(f"cam1 line {i}\n" for i in range(100)))
    (logs / "door.log").write_text("door line\n")
    runner = CliRunner()
    res = runner.invoke(_cli(), ["cam1", "--data-dir", str(data), "-n", "3"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["cam1 line 97", "cam1 line 98", "cam1 line 99"]
    res = runner.invoke(_cli(), ["cam1", "--data-dir", str(data)])
    assert len(res.output.splitlines()) == 50

    res = runner.invoke(_cli(), ["garage", "--data-dir", str(data)])
    assert res.exit_code == 1
    assert "no log for camera 'garage'" in res.output
    assert "cameras with logs: cam1, door" in res.output

    res = runner.invoke(_cli(), ["cam1", "--data-dir", str(tmp_path / "nothing-here")])
    assert res.exit_code == 1 and "no logs yet" in res.output

    cfg = tmp_path / "node.yaml"
    cfg.write_text(f"data_dir: {data}\nlogging: {{dir: {logs}}}\n")
    res = runner.invoke(_cli(), ["door", "-c", str(cfg)])
    assert res.exit_code == 0 and res.output == "door line\n"


def test_cli_follow_survives_rotation_until_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    logs = default_config(data, cameras=1).logs_path
    logs.mkdir(parents=True)
    path = logs / "cam1.log"
    path.write_text("old 1\nold 2\n")
    cmd = [sys.executable, "-u", "-m", "camfleet.cli.logview", "cam1", "--data-dir", str(data), "-f", "-n1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for x in proc.stdout or []:
            out.put(x.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        assert out.get(timeout=30) == "old 2"
        with path.open("a") as f:
            f.write("new 1\n")
        assert out.get(timeout=10) == "new 1"
        os.rename(path, logs / "cam1.log.1")  # rotate: rename, then a new file
        with (logs / "cam1.log.1").open("a") as f:
            f.write("late in the old file\n")
        path.write_text("fresh 1\n")
        assert out.get(timeout=10) == "late in the old file"
        assert out.get(timeout=10) == "fresh 1"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0  # exits cleanly (bounded generously: CI has 2 busy cores)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
