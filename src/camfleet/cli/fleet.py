"""The fleet's commands: ``camfleet nats``, ``camfleet agent``, ``camfleet coordinator`` (preview).

* ``camfleet nats``: a local JetStream server, or a cluster of them on this
  machine, for development and tests (production uses any NATS cluster by URL).
* ``camfleet agent --nats URL``: this machine's node, registered in the fleet,
  beating and reporting its status; it runs the cameras the fleet places on it
  (its key in ``camfleet_desired``) over the node settings of ``--config``,
  and only while its heartbeat lease holds.
* ``camfleet coordinator --nats URL``: watches the fleet and competes for leadership; the leader
  places the fleet's cameras (its database: ``--db``) and answers ``camfleet cluster ...``.

SIGTERM or Ctrl-C stops each of them cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger("camfleet.cli")

_LABEL_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.\-/]{0,62})=([A-Za-z0-9_.\-/:]{0,128})$")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def _begin(verbose: bool) -> threading.Event:
    """The start of a long-running fleet command: private umask, logging, SIGTERM/Ctrl-C as its stop."""
    from camfleet.runtime.node import restrict_umask  # noqa: PLC0415

    from .logs import setup_logging  # noqa: PLC0415

    restrict_umask()
    setup_logging(verbose)
    return _stop_on_signals()


def nats(
    cluster: int = typer.Option(1, "--cluster", min=1, max=7, help="Servers to start (3: a cluster that "
                                "survives one lost server)."),
    data_dir: Path = typer.Option(Path("camfleet-nats"),
                                  help="Store directory (a sub-directory per server)."),
    port: int = typer.Option(4222, min=0, max=65535, help="Client port of the first server (the others take "
                             "the next ones; monitoring +4000, routes +2000); 0: free ports."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback: this machine only)."),
) -> None:
    """Run a local NATS JetStream server, or a cluster on this machine, until Ctrl-C (development, tests)."""
    from camfleet.cluster.server import (  # noqa: PLC0415 - keeps `camfleet --help` fast
        MIN_VERSION,
        NatsCluster,
        NatsServerError,
        cluster_specs,
        find_server_binary,
        free_port,
        server_version,
    )

    stop = _stop_on_signals()
    try:
        binary = find_server_binary()
        version = server_version(binary)
    except NatsServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if version < MIN_VERSION:
        typer.echo(f"error: {binary} is nats-server {'.'.join(map(str, version))}; camfleet needs "
                   f">= {'.'.join(map(str, MIN_VERSION))}", err=True)
        raise typer.Exit(1)
    if port == 0:
        ports = [(free_port(host), free_port(host), free_port(host)) for _ in range(cluster)]
    else:
        if port + cluster - 1 + 4000 > 65535:
            typer.echo(f"error: --port {port}: the monitoring ports (+4000) would pass 65535", err=True)
            raise typer.Exit(1)
        ports = [(port + i, port + 4000 + i, port + 2000 + i) for i in range(cluster)]
    servers = NatsCluster(cluster_specs(cluster, data_dir.resolve(), host=host, ports=ports), binary,
                          die_with_parent=True)
    try:
        servers.start()
    except NatsServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        typer.echo(f"camfleet nats: {cluster} JetStream server(s) ready (nats-server "
                   f"{'.'.join(map(str, version))}, store {data_dir}).\n"
                   f"  client URL: {servers.url}\n"
                   f"  use:        camfleet agent --nats {servers.url}\n  Ctrl-C to stop.")
        reported: set[str] = set()
        while not stop.wait(0.5):
            # one server of a cluster going away is what a cluster is for: say so, keep the others
            gone = [s.spec.name for s in servers.servers if s.pid is None]
            for name in sorted(set(gone) - reported):
                log_file = data_dir / name.rsplit("-", 1)[-1] / "server.log"
                typer.echo(f"camfleet nats: {name} exited; see {log_file}", err=True)
            reported.update(gone)
            if len(gone) == len(servers.servers):
                break
    finally:
        servers.stop()
    if not stop.is_set():
        typer.echo("camfleet nats: every server exited.", err=True)
        raise typer.Exit(1)
    typer.echo("camfleet nats: stopped.")


def _parse_labels(labels: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in labels:
        match = _LABEL_RE.match(text)
        if match is None:
            raise typer.BadParameter(f"{text!r}: expected KEY=VALUE (letters, digits, _ . - / in the key; "
                                     "no spaces)", param_hint="--label")
        out[match.group(1)] = match.group(2)
    return out


def _options(url: str, creds: Path | None, ca: Path | None) -> Any:
    from camfleet.cluster.connection import NatsOptions, parse_urls  # noqa: PLC0415

    try:
        return NatsOptions(tuple(parse_urls(url)), creds=creds, ca_file=ca)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--nats") from None


def _run_async(main: Any, stop: threading.Event) -> None:
    """Run the coroutine function ``main(async_stop)`` until it ends; ``stop`` (a signal) ends it."""

    async def runner() -> None:
        async_stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(async_stop.set)),
                         daemon=True, name="stop-bridge").start()
        await main(async_stop)

    asyncio.run(runner())


def agent(
    nats_url: str = typer.Option(..., "--nats", help="NATS URL(s), comma-separated (nats://, tls://)."),
    config: Path | None = typer.Option(None, help="This node's settings (storage, detectors, models, "
                                       "pipelines, defaults...); its own cameras are not run: the fleet "
                                       "places cameras (default: camfleet run's embedded default: the "
                                       "default model, detector and pipeline, recording on)."),
    data_dir: Path | None = typer.Option(None, help="Where the node id, capacity cache and the node's "
                                         "files live (default: the configuration's data_dir, else "
                                         "camfleet-agent)."),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE placement label (repeatable)."),
    creds: Path | None = typer.Option(None, "--nats-creds", help="NATS credentials file (.creds)."),
    ca: Path | None = typer.Option(None, "--nats-ca", help="CA bundle for tls:// servers."),
    api: str | None = typer.Option(None, "--api", help="Serve the node's media (live frames, MJPEG, "
                                   "recordings, clips, snapshots) to the fleet's coordinators on HOST:PORT "
                                   "(default: a free port on the address this node registers). Only "
                                   "requests signed with the fleet's key are answered."),
    api_node_tokens: bool = typer.Option(False, "--api-node-tokens", help="Also accept this node's own "
                                         "API tokens (`camfleet token create`) on the agent's API."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run this machine's node in the fleet: register, beat, report, run the cameras placed on it."""
    stop = _begin(verbose)
    from camfleet.cluster.agent import Agent, describe_node  # noqa: PLC0415
    from camfleet.cluster.desired import KvDesiredState, fleet_base  # noqa: PLC0415
    from camfleet.cluster.events_sink import FleetEventsSink  # noqa: PLC0415
    from camfleet.cluster.identity import IdentityError, load_or_create_id  # noqa: PLC0415
    from camfleet.config import ConfigError, FileSource  # noqa: PLC0415
    from camfleet.pipeline.validate import element_catalog  # noqa: PLC0415
    from camfleet.runtime import Node, NodeAlreadyRunning  # noqa: PLC0415
    from camfleet.runtime.default import default_config  # noqa: PLC0415
    from camfleet.store import Store, StoreError  # noqa: PLC0415

    labels = _parse_labels(label)
    api_address = _split_address(api) if api is not None else None
    options = _options(nats_url, creds, ca)
    local: list[str] = []
    try:
        if config is not None:
            cfg = FileSource(config, element_catalog()).load()
            local = sorted(cfg.cameras)
            base = fleet_base(cfg, str(data_dir.resolve()) if data_dir is not None else None)
        else:
            # the embedded default's node settings: a placed camera needs no more than its sources
            base = fleet_base(default_config((data_dir or Path("camfleet-agent")).resolve(), cameras=1))
        data_dir = base.data_path
        node_id = load_or_create_id(data_dir)
        # the node's own database: its events, snapshots and segments, as its API serves them
        store = Store.open(base.database_url, secret_key_path=data_dir / "secret.key")
    except (ConfigError, IdentityError, OSError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if local:
        log.warning("fleet mode: the %d camera(s) in %s (%s) are not run here; this node runs the cameras "
                    "the fleet places on it", len(local), config, ", ".join(local))
    record = describe_node(node_id, data_dir, labels)
    desired = KvDesiredState(node_id, base, elements=element_catalog())
    # the node's events leave through CAMFLEET_EVENTS, each with its camera's fencing token
    events = FleetEventsSink(options, node_id, desired.token_of)
    # the node id as node key: its status names it, and two agents on one machine keep apart
    node = Node(base, store=store, node_key=node_id, fencing=True)
    node.add_sink(events)
    # the API first: its start takes seconds (imports), which must not pass between the node's start and
    # the agent's first lease (the node's cameras would be held meanwhile, as fenced)
    keys: list[bytes] = []
    server = _agent_api(api_address, record, node, store, base, keys, api_node_tokens)
    if server is None:
        events.close()
        store.close()
        raise typer.Exit(1)
    try:
        node.start()
    except (NodeAlreadyRunning, ValueError, OSError) as exc:
        server.stop()
        events.close()
        store.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    fleet = Agent(options, node, record, desired=desired, lease=node.lease.hold_until,
                  cluster_key=keys.append)
    typer.echo(f"camfleet agent: node {node_id} ({record.hostname}); fleet at {options.shown}; "
               f"cameras come from the fleet. Ctrl-C to stop.")
    try:
        _run_async(fleet.run, stop)
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        server.stop()
        node.stop()
        events.close()
        store.close()
    typer.echo("camfleet agent: stopped.")


def _split_address(address: str) -> tuple[str, int]:
    """HOST:PORT of ``--api`` (a bad one exits with the usage error)."""
    from camfleet.api.hosts import split_host  # noqa: PLC0415

    parts = split_host(address)
    if parts is None or parts[1] is None:
        raise typer.BadParameter(f"{address!r} is not HOST:PORT (e.g. 10.0.0.5:5091, [::1]:0)",
                                 param_hint="--api")
    return parts[0], int(parts[1])


def _agent_api(address: tuple[str, int] | None, record: Any, node: Any, store: Any, base: Any,
               keys: list[bytes], node_tokens: bool) -> Any:
    """The agent's API server, started, its URL set in ``record`` (None: it could not start; said why)."""
    from camfleet.api.fleet.agent_app import create_agent_app  # noqa: PLC0415
    from camfleet.api.server import ApiServer  # noqa: PLC0415

    chosen = address is not None
    v4 = [a for a in record.addresses if ":" not in a]
    registered = (v4 or record.addresses or ["127.0.0.1"])[0]
    if address is None:
        address = (registered, 0)
    app = create_agent_app(node, store, base.api, lambda: keys[-1] if keys else None,
                           data_dir=base.data_path, recordings_dir=base.recordings_path,
                           node_tokens=node_tokens)
    server = ApiServer(app, *address)
    try:
        server.start()
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        typer.echo(f"error: the agent's API on {address[0]}:{address[1]}: {exc}", err=True)
        return None
    # listening on every address: the coordinators reach it on the one this node registers
    reach = registered if address[0] in ("0.0.0.0", "::") else address[0]
    record.api_url = f"http://{f'[{reach}]' if ':' in reach else reach}:{server.port}"
    log.info("agent API (media for the coordinators, signed requests only) on %s%s", record.api_url,
             "" if chosen else " (a free port on the registered address; set --api "
             "HOST:PORT to choose)")
    typer.echo(f"camfleet agent: API on {record.api_url}")
    return server


def coordinator(
    nats_url: str = typer.Option(..., "--nats", help="NATS URL(s), comma-separated (nats://, tls://)."),
    data_dir: Path = typer.Option(Path("camfleet-coordinator"), help="Where the coordinator id and its state "
                                  "file (coordinator.json) live."),
    db: str | None = typer.Option(None, "--db", help="The fleet database shared by every coordinator: "
                                  "postgresql://... or sqlite:///PATH (default: sqlite:///DATA_DIR/fleet.db, "
                                  "for coordinators on one machine only). Or $CAMFLEET_FLEET_DB."),
    strategy: str = typer.Option("spread", help="Placement: spread (the least loaded node) or binpack "
                                 "(the fullest that fits)."),
    drain_batch: int = typer.Option(4, "--drain-batch", min=1, help="Cameras a drain moves per pass (each "
                                    "pass after the previous batch stopped on the drained node)."),
    max_moves: int = typer.Option(4, "--max-moves", min=0, help="Rebalancing moves per pass (0: never "
                                  "rebalance)."),
    imbalance: float = typer.Option(0.25, "--imbalance", min=0.0, max=1.0, help="Rebalance only when the "
                                    "most and least loaded nodes differ by more than this (utilisation)."),
    base_config: Path | None = typer.Option(None, "--base-config", help="Node configuration whose models, "
                                            "detectors, pipelines and defaults fleet cameras are checked "
                                            "against (default: camfleet's embedded default)."),
    creds: Path | None = typer.Option(None, "--nats-creds", help="NATS credentials file (.creds)."),
    ca: Path | None = typer.Option(None, "--nats-ca", help="CA bundle for tls:// servers."),
    api: str | None = typer.Option(None, "--api", help="Serve the fleet's REST + WebSocket API (the node "
                                   "API's paths, every camera of every node) on HOST:PORT (off by default). "
                                   "Tokens: `camfleet cluster token create`."),
    api_open: bool = typer.Option(False, "--api-open", help="Accept API requests without a token "
                                  "(loopback HOST only)."),
    api_allowed_host: list[str] = typer.Option([], "--api-allowed-host", help="A host name (name or "
                                               "name:port) the API answers to besides loopback names and "
                                               "IP addresses (repeatable)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run a coordinator: watch the fleet, compete for leadership; the leader places the cameras."""
    stop = _begin(verbose)
    from camfleet.cluster.coordinator import Coordinator  # noqa: PLC0415
    from camfleet.cluster.identity import IdentityError, load_or_create_id  # noqa: PLC0415
    from camfleet.cluster.statefile import StateFile  # noqa: PLC0415

    options = _options(nats_url, creds, ca)
    try:
        coordinator_id = load_or_create_id(data_dir.resolve(), "coordinator-id")
    except (IdentityError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    store, base, placement = _fleet_database(db, data_dir.resolve(), base_config, strategy=strategy,
                                             drain_batch=drain_batch, max_moves=max_moves,
                                             imbalance_threshold=imbalance)
    coord = Coordinator(options, coordinator_id, store=store, base=base, placement=placement)
    state = StateFile(coord, data_dir.resolve() / "coordinator.json")
    typer.echo(f"camfleet coordinator: {coordinator_id}; fleet at {options.shown}; database {store.shown}; "
               f"state in {state.path}. Ctrl-C to stop.")
    server = None
    if api is not None:
        server = _fleet_api(api, api_open, api_allowed_host, store, options, coordinator_id, base)
    state.start()
    try:
        _run_async(coord.run, stop)
    except ConnectionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        state.stop()
        if server is not None:
            server.stop()
        store.close()
    typer.echo("camfleet coordinator: stopped.")


def _fleet_api(address: str, api_open: bool, allowed: list[str], store: Any, options: Any,
               coordinator_id: str, base: Any = None) -> Any:
    """The coordinator's API server, started (exits with a message when it cannot be)."""
    from pydantic import ValidationError  # noqa: PLC0415

    from camfleet.api.fleet import create_fleet_app  # noqa: PLC0415
    from camfleet.api.hosts import split_host  # noqa: PLC0415
    from camfleet.api.server import ApiServer  # noqa: PLC0415
    from camfleet.config import ApiSettings  # noqa: PLC0415

    parts = split_host(address)
    if parts is None or parts[1] is None:
        raise typer.BadParameter(f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:5090, [::1]:5090)",
                                 param_hint="--api")
    host, port = parts[0], int(parts[1])
    try:
        settings = ApiSettings(host=host, port=port, open=api_open, allowed_hosts=allowed)
    except ValidationError as exc:
        messages = "; ".join(str(e["msg"]) for e in exc.errors())
        raise typer.BadParameter(messages, param_hint="--api/--api-open/--api-allowed-host") from None
    app = create_fleet_app(store, options, settings, coordinator_id=coordinator_id, base=base)
    server = ApiServer(app, host, port)
    try:
        server.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        typer.echo(f"error: the API on {address}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"camfleet coordinator: API on {server.url}")
    return server


def _fleet_database(db: str | None, data_dir: Path, base_config: Path | None,
                    **placement_settings: Any) -> Any:
    """The coordinator's database, the base configuration and the placement settings (exits on an error)."""
    import os  # noqa: PLC0415

    from camfleet.cluster.placement_types import PlacementSettings  # noqa: PLC0415
    from camfleet.config import ConfigError  # noqa: PLC0415
    from camfleet.fleetstore.store import FleetStore  # noqa: PLC0415
    from camfleet.pipeline.validate import load_config  # noqa: PLC0415
    from camfleet.store.errors import StoreError  # noqa: PLC0415

    try:
        placement = PlacementSettings(**placement_settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        base = load_config(base_config) if base_config is not None else None
        store = FleetStore(db or os.environ.get("CAMFLEET_FLEET_DB") or f"sqlite:///{data_dir / 'fleet.db'}")
    except (ConfigError, StoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    return store, base, placement
