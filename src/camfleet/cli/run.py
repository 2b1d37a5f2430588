"""``camfleet run [CONFIG]``: run cameras through their pipelines on this machine.

The node watches CONFIG and applies changes as they are saved (``camfleet
reload`` asks for the same at once, through SIGHUP); a file that does not
validate is rejected and the running cameras stay as they were. SIGTERM or
SIGINT stops everything.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from camfleet.config import (
    Config,
    ConfigError,
    ConfigFileWatcher,
    ConfigSource,
    FileSource,
    FixedSource,
    OverlaySource,
)
from camfleet.detect.models import ModelError
from camfleet.detect.service import DetectorFailed
from camfleet.pipeline.validate import element_catalog  # element settings checked, with FILE:LINE:COL
from camfleet.runtime import Node, NodeAlreadyRunning, default_config
from camfleet.runtime.node import restrict_umask

from .logs import setup_logging

if TYPE_CHECKING:
    from camfleet.api import ApiServer
    from camfleet.store import Store

log = logging.getLogger("camfleet.cli")


def run(
    config: Path | None = typer.Argument(None, help="Configuration file (default: the embedded demo)."),
    data_dir: Path = typer.Option(Path("camfleet-data"), help="Data directory of the embedded default."),
    cameras: int = typer.Option(4, min=1, max=32, help="Synthetic cameras of the embedded default."),
    port: int = typer.Option(5080, min=0, max=65535, help="API/web UI port of the embedded default."),
    duration: float = typer.Option(0.0, help="Stop after this many seconds (0: until Ctrl-C)."),
    watch: bool = typer.Option(True, help="Apply changes to CONFIG as soon as the file changes."),
    skip_checks: bool = typer.Option(False, "--skip-checks", help="Start even if start-up checks fail."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run every camera: decode once, pipeline, shared detectors, events, snapshots, recordings."""
    restrict_umask()  # first: the data directory, database and logs are created owner-only
    # Ctrl-C reaches every process of the group at once: from the first instant it is a stop request,
    # never a KeyboardInterrupt, and the node is told before its processes start ending
    stop = threading.Event()
    reload_requested = threading.Event()
    nodes: list[Node] = []

    def on_stop(*_: object) -> None:
        stop.set()
        for started in nodes:
            started.request_stop()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    setup_logging(verbose)
    elements = element_catalog()
    base: ConfigSource = (FileSource(config, elements) if config
                          else FixedSource(default_config(data_dir, cameras, port=port)))
    try:
        cfg = base.load()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not skip_checks:
        _preflight(cfg)

    from camfleet.runtime.logfiles import LogRouter  # noqa: PLC0415 - keeps `camfleet --help` fast

    router = LogRouter(cfg, console=True, level="debug" if verbose else None)
    router.start()
    store, store_problem = _open_store(cfg)

    problems: Callable[[], list[str]] = lambda: [store_problem] if store_problem else []  # noqa: E731
    source: ConfigSource = base
    if store is not None:
        from camfleet.store.overlay import StoreOverlay  # noqa: PLC0415

        overlay = OverlaySource(base, StoreOverlay(store), elements)
        cfg = overlay.apply(cfg)  # a lost key or an outage: the file's cameras run, overlay.problems says why
        source, problems = overlay, lambda: list(overlay.problems)
    for problem in problems():
        typer.echo(f"camfleet: {problem}", err=True)
    node = Node(cfg, loader=source.load if config else None, store=store, log_router=router,
                load_problems=problems)
    from camfleet.integrations import Integrations  # noqa: PLC0415

    integrations = Integrations.for_config(cfg)
    integrations.attach(node)
    nodes.append(node)
    if stop.is_set():  # Ctrl-C while the store opened: start nothing
        node.request_stop()
    watcher = ConfigFileWatcher(config, reload_requested.set) if config is not None and watch else None
    api = None
    try:
        try:
            node.start()
            integrations.start(node)
            api = _start_api(cfg, node, store)
        except (ModelError, DetectorFailed, NodeAlreadyRunning, ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if not stop.is_set():  # stopped while starting: nothing to announce
            where = f"  web UI and API: {api.url}\n" if api is not None else ""
            typer.echo(
                f"camfleet: {len(cfg.cameras)} camera(s) running from {config or 'the embedded default'}.\n"
                f"{where}"
                f"  status:    camfleet status{'' if config is None else f' {config}'}\n"
                f"  logs:      {cfg.logs_path} (camfleet logs CAMERA -f)\n"
                f"  events:    {cfg.database_url if store is not None else cfg.data_path / 'events.jsonl'}\n"
                f"  snapshots: {cfg.data_path / 'snapshots'}\n"
                "  rings:     camfleet bus list\n  Ctrl-C to stop."
            )
        end = time.monotonic() + duration if duration > 0 else None
        if watcher is not None:
            watcher.start()
        while not stop.wait(0.2):
            if end is not None and time.monotonic() >= end:
                break
            if config is None:
                continue
            if reload_requested.is_set():  # saved (the watcher) or asked for (SIGHUP)
                reload_requested.clear()
                if watcher is not None:
                    watcher.mark_seen()  # this reload applies what is on disk now: not again when it settles
                result = node.reload()
                verdict = "applied" if result.ok else "rejected (nothing changed)"
                typer.echo(f"camfleet: configuration {verdict}: generation {result.generation}"
                           + (f"; {'; '.join(result.errors)}" if result.errors else ""), err=not result.ok)
    finally:
        if watcher is not None:
            watcher.stop()
        if api is not None:
            api.stop(3.0)
        integrations.quiesce()  # no command may start a process while the node stops
        node.stop()
        integrations.stop()
        if store is not None:
            store.close()
        router.stop()
    typer.echo("camfleet: stopped.")


def _preflight(cfg: Config) -> None:
    from camfleet.runtime.checks import preflight  # noqa: PLC0415

    problems = preflight(cfg)
    if problems:
        typer.echo("camfleet: cannot start:", err=True)
        for problem in problems:
            typer.echo(f"  - {problem}", err=True)
        typer.echo("  (--skip-checks starts anyway)", err=True)
        raise typer.Exit(1)


def _open_store(cfg: Config) -> tuple[Store | None, str | None]:
    """The store, or None and why when it cannot be opened (the file's cameras run without it)."""
    from camfleet.store import Store, StoreError  # noqa: PLC0415

    try:
        return Store.open(cfg.database_url, secret_key_path=cfg.data_path / "secret.key"), None
    except StoreError as exc:
        problem = (f"database unavailable: {exc}; running the configuration file's cameras without it "
                   f"(events to {cfg.data_path / 'events.jsonl'}, no API; restart when the database is back)")
        log.error("%s", problem)
        return None, problem


def _start_api(cfg: Config, node: Node, store: Store | None) -> ApiServer | None:
    if not cfg.api.enabled or store is None:
        return None
    from camfleet.api import ApiServer, create_app  # noqa: PLC0415

    app = create_app(node, store, cfg.api, data_dir=cfg.data_path,
                     recordings_dir=cfg.recordings_path)
    server = ApiServer(app, cfg.api.host, cfg.api.port)
    server.start()
    return server
