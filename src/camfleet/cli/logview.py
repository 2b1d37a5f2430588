"""``camfleet logs CAMERA``: print (and follow) one camera's log file."""

from __future__ import annotations

import threading
from pathlib import Path

import typer

from camfleet.config import ConfigError, load_config
from camfleet.runtime.default import default_config
from camfleet.runtime.logfiles import MAIN_LOG, follow_log, tail_log


def _logs_dir(config: Path | None, data_dir: Path) -> Path:
    if config is None:
        return default_config(data_dir, cameras=1).logs_path
    try:
        # secrets need not be set to read logs: ${VAR}s may stay unresolved
        return load_config(config, require_env=False).logs_path
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def logged_cameras(logs_dir: Path) -> list[str]:
    """Names of the cameras that have a log file in ``logs_dir`` (the main log excluded), sorted."""
    if not logs_dir.is_dir():
        return []
    found = (p for p in logs_dir.glob("*.log") if p.name != MAIN_LOG and p.is_file())
    return sorted(p.name[: -len(".log")] for p in found)


def logs(
    camera: str = typer.Argument(..., help="Camera name (or 'camfleet' for the node's main log)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Configuration file of the node."),
    data_dir: Path = typer.Option(
        Path("camfleet-data"), "--data-dir", help="Data directory of the embedded default configuration."
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until Ctrl-C."),
    lines: int = typer.Option(50, "--lines", "-n", min=0, help="How many of the last lines to print."),
) -> None:
    """Print the last lines of a camera's log file; with -f, follow it (across rotations)."""
    logs_dir = _logs_dir(config, data_dir)
    path = logs_dir / f"{camera}.log"
    if "/" in camera or camera.startswith(".") or not path.is_file():
        known = logged_cameras(logs_dir)
        where = f"in {logs_dir}"
        if not logs_dir.is_dir():
            hint = "no logs yet: has `camfleet run` run with this configuration / data directory?"
        elif known:
            hint = f"cameras with logs: {', '.join(known)}"
        else:
            hint = "no camera has a log there yet"
        typer.echo(f"error: no log for camera {camera!r} {where}; {hint}", err=True)
        raise typer.Exit(1)
    if not follow:
        for line in tail_log(path, lines):
            typer.echo(line)
        return
    stop = threading.Event()
    try:
        for line in follow_log(path, stop, lines=lines):
            typer.echo(line)
    except KeyboardInterrupt:
        stop.set()


if __name__ == "__main__":  # python -m camfleet.cli.logview CAMERA [-f]
    typer.run(logs)
