"""``camfleet status`` and ``camfleet reload``: look at and steer a running node.

Both find the node through its data directory: ``<data_dir>/run/camfleet.pid``
and the status snapshot ``<data_dir>/run/status.json`` it rewrites every second.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import typer

from camfleet.config import ConfigError, load_config
from camfleet.config.model import Config

DEFAULT_DATA_DIR = Path("camfleet-data")


def _data_path(config: Path | None, data_dir: Path) -> Path:
    if config is None:
        return data_dir.resolve()
    try:
        return load_config(config).data_path
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def read_status(data_path: Path) -> dict[str, Any] | None:
    """The running node's last snapshot, or None when no live node uses ``data_path``."""
    run_dir = data_path / "run"
    try:
        pid = int((run_dir / "camfleet.pid").read_text().strip())
        snapshot: dict[str, Any] = json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None
    if not psutil.pid_exists(pid) or snapshot.get("pid") != pid:
        return None
    return snapshot


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def format_status(snapshot: dict[str, Any]) -> str:
    """The snapshot as a table: one row per camera, then its processes, then the detectors."""
    head = (f"{'CAMERA':<16} {'STATE':<12} {'DECODE':>6} {'PROC':>5} {'SKIP':>5} {'DET/s':>5} "
            f"{'INF ms':>6} {'CPU%':>6} {'RSS MB':>7} {'RESTARTS':>8}  REASON")
    up = time.time() - snapshot["started_at"]
    lines = [f"node {snapshot['node']} (pid {snapshot['pid']}), up {up:.0f} s, "
             f"{len(snapshot['cameras'])} camera(s)", "", head]
    for name, cam in sorted(snapshot["cameras"].items()):
        lines.append(
            f"{name:<16} {cam['state']:<12} {_fmt(cam['decode_fps']):>6} {_fmt(cam['processed_fps']):>5} "
            f"{_fmt(cam['skipped_fps']):>5} {_fmt(cam['detector_rps']):>5} {_fmt(cam['inference_ms']):>6} "
            f"{_fmt(cam['cpu_percent']):>6} {_fmt(cam['rss_mb'], 0):>7} {cam['restarts']:>8}  {cam['reason']}"
        )
        for kind, proc in sorted(cam["processes"].items()):
            age = proc["heartbeat_age_s"]
            lines.append(
                f"  {kind:<14} {proc['state']:<12} pid {proc['pid'] or '-':<8} "
                f"beat {'-' if age is None else f'{age:.1f}s':<6} cpu {_fmt(proc['cpu_percent']):>5}% "
                f"rss {_fmt(proc['rss_mb'], 0):>4} MB restarts {proc['restarts']}"
                + (f"  last error: {proc['last_error']}" if proc["last_error"] else "")
            )
    if snapshot["detectors"]:
        lines += ["", f"{'DETECTOR':<16} {'STATE':<12} {'PID':>7} {'INF ms':>7} {'BATCH':>6} {'QUEUE':>6} "
                      f"{'CPU%':>6} {'RSS MB':>7} {'RESTARTS':>8}"]
        for name, det in sorted(snapshot["detectors"].items()):
            m = det["metrics"]
            lines.append(
                f"{name:<16} {det['state']:<12} {det['pid'] or '-':>7} {_fmt(m.get('inference_ms', 0)):>7} "
                f"{_fmt(m.get('mean_batch', 0), 2):>6} {int(m.get('queued', 0)):>6} "
                f"{_fmt(det['cpu_percent']):>6} {_fmt(det['rss_mb'], 0):>7} {det['restarts']:>8}"
            )
    lines += _sink_lines(snapshot.get("sinks") or {})
    reload = snapshot.get("reload") or {}
    if reload.get("at"):
        verdict = "applied" if reload["ok"] else "REJECTED"
        ago = time.time() - reload["at"]
        lines += ["", f"last configuration change: {verdict}, generation {reload['generation']}, "
                      f"{ago:.0f} s ago" + "".join(f"\n  {e}" for e in reload["errors"])]
    return "\n".join(lines)


def _sink_lines(sinks: dict[str, dict[str, Any]]) -> list[str]:
    """One row per outbox sink: lag, up or down (how long), and its delivery counters where it has them."""
    if not sinks:
        return []
    lines = ["", f"{'SINK':<24} {'LAG':>7} {'STATE':<6} {'DELIVERED':>9} {'FAILED':>7} {'REFUSED':>7}  LAST"]
    for name, row in sorted(sinks.items()):
        down = bool(row.get("attempts"))
        counts = [str(row[k]) if k in row else "-" for k in ("delivered", "failed", "refused")]
        last = ""
        if row.get("last_status"):
            last = f"HTTP {row['last_status']} in {_fmt(row.get('last_latency_ms', 0.0))} ms"
        if down:
            last += f"{'; ' if last else ''}down {_fmt(row.get('down_s', 0.0), 0)} s: {row.get('error', '')}"
        elif row.get("broker_error"):  # a broker unreachable while there is nothing to deliver
            last += f"{'; ' if last else ''}not connected: {row['broker_error']}"
        lines.append(f"{name:<24} {row.get('lag', 0):>7} {'DOWN' if down else 'up':<6} {counts[0]:>9} "
                     f"{counts[1]:>7} {counts[2]:>7}  {last}".rstrip())
    return lines


def status(
    config: Path | None = typer.Argument(None, help="The running node's configuration file."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, help="Data directory (when no CONFIG is given)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh every second, like top."),
    as_json: bool = typer.Option(False, "--json", help="Print the raw snapshot as JSON."),
) -> None:
    """Per camera and process: state, fps, detector load, CPU, memory, restarts."""
    data_path = _data_path(config, data_dir)
    while True:
        snapshot = read_status(data_path)
        if snapshot is None:
            typer.echo(f"no camfleet node is running with data directory {data_path}", err=True)
            raise typer.Exit(1)
        text = json.dumps(snapshot, indent=2) if as_json else format_status(snapshot)
        if not watch:
            typer.echo(text)
            return
        typer.echo("\x1b[2J\x1b[H" + text)
        try:
            time.sleep(1.0)  # a display refresh, not synchronisation
        except KeyboardInterrupt:
            return


def reload(
    config: Path = typer.Argument(..., help="The running node's configuration file."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for the node's answer."),
) -> None:
    """Check CONFIG (element settings included), then have the running node apply it (only what changed)."""
    # the pipeline's loader: element settings are checked here, with FILE:LINE:COL, before the node sees them
    from camfleet.pipeline.validate import load_config as load_checked  # noqa: PLC0415 - keeps `status` fast

    try:
        cfg: Config = load_checked(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        typer.echo("camfleet: not reloaded; the running node is unchanged", err=True)
        raise typer.Exit(1) from None
    before = read_status(cfg.data_path)
    if before is None:
        typer.echo(f"no camfleet node is running with data directory {cfg.data_path}", err=True)
        raise typer.Exit(1)
    asked = time.time()
    os.kill(int(before["pid"]), signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = read_status(cfg.data_path)
        result = (snapshot or {}).get("reload") or {}
        if result.get("at", 0) >= asked:
            if not result["ok"]:
                errors = "\n  ".join(result["errors"])
                typer.echo(f"camfleet: rejected, nothing changed:\n  {errors}", err=True)
                raise typer.Exit(1)
            typer.echo(f"camfleet: applied (generation {result['generation']}): added {result['added']}, "
                       f"removed {result['removed']}, restarted {result['restarted']}, "
                       f"updated in place {result['updated']}"
                       + "".join(f"\n  note: {e}" for e in result["errors"]))
            return
        time.sleep(0.2)  # the node rewrites its status file; nothing to wait on
    typer.echo(f"camfleet: the node did not answer within {timeout:g} s", err=True)
    raise typer.Exit(1)
