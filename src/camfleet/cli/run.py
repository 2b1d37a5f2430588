"""``camfleet run [CONFIG]``: run cameras through their pipelines on this machine."""

from __future__ import annotations

import collections
import json
import signal
import threading
import time
from pathlib import Path

import typer

from camfleet.config import ConfigError, load_config
from camfleet.detect.models import ModelError
from camfleet.detect.service import DetectorFailed
from camfleet.runtime import Node, default_config

from .logs import setup_logging


def run(
    config: Path | None = typer.Argument(None, help="Configuration file (default: the embedded demo)."),
    data_dir: Path = typer.Option(Path("camfleet-data"), help="Data directory of the embedded default."),
    cameras: int = typer.Option(4, min=1, max=32, help="Synthetic cameras of the embedded default."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until Ctrl-C)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run every camera: decode once, pipeline, shared detectors, events and snapshots."""
    setup_logging(verbose)
    try:
        cfg = load_config(config) if config else default_config(data_dir, cameras)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    node = Node(cfg)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        node.start()
    except (ModelError, DetectorFailed, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        node.stop()
        raise typer.Exit(1) from None
    events = cfg.data_path / "events.jsonl"
    typer.echo(
        f"camfleet: {len(cfg.cameras)} camera(s) running from {config or 'the embedded default'}.\n"
        f"  events:    {events}\n  snapshots: {cfg.data_path / 'snapshots'}\n"
        "  rings:     camfleet bus list   (frames and packets of every camera)\n  Ctrl-C to stop."
    )
    supervisor = threading.Thread(target=node.supervise, daemon=True)
    supervisor.start()
    end = time.monotonic() + duration if duration > 0 else None
    seen = 0
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            stop.wait(5.0)
            lines = events.read_text().splitlines() if events.exists() else []
            for line in lines[seen:]:
                e = json.loads(line)
                typer.echo(f"  event {e['type']:<6} {e['camera']:<8} {e['label']:<10} "
                           f"score {e['top_score']:.2f} zones {e['zones']}")
            seen = len(lines)
    except KeyboardInterrupt:
        pass
    finally:
        node.stop()
    counts = collections.Counter(json.loads(x)["type"] for x in events.read_text().splitlines()) \
        if events.exists() else collections.Counter()
    typer.echo(f"camfleet: stopped. events: {dict(counts)}")
