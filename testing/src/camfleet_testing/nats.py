"""Throw-away NATS JetStream servers for tests: one server or a cluster on loopback, on free ports.

A thin wrapper over :mod:`camfleet.cluster.server` (the one place that
starts ``nats-server``): free ports chosen once (a restarted server comes
back on its own ports, so clients find it again), a store directory per
server under ``root``, and ``kill``/``restart`` of one server for failure tests.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from camfleet.cluster.server import NatsCluster, NatsServer, cluster_specs, free_port

__all__ = ["NatsHarness"]


class NatsHarness:
    """``size`` servers under ``root``; :meth:`start` waits until all serve JetStream.

    ``tls`` (certificate and key files) makes clients connect over ``tls://``;
    ``users`` (name -> password) requires those credentials.
    """

    def __init__(self, root: Path, size: int = 1, *, tls: tuple[Path, Path] | None = None,
                 users: dict[str, str] | None = None) -> None:
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        specs = cluster_specs(size, root, ports=ports, name="camfleet-test")
        for spec in specs:  # tls: (certificate, key) every server presents; users: name -> password
            spec.tls_cert, spec.tls_key = tls if tls is not None else (None, None)
            spec.users = dict(users or {})
        self.cluster = NatsCluster(specs)

    @property
    def servers(self) -> list[NatsServer]:
        """The servers, in order (``n1`` first)."""
        return self.cluster.servers

    @property
    def url(self) -> str:
        """Every server's client URL, comma-separated (what ``--nats`` takes)."""
        return self.cluster.url

    @property
    def urls(self) -> list[str]:
        """Every server's client URL."""
        return self.cluster.urls

    def start(self) -> NatsHarness:
        """Start every server and wait until each is ready (for a cluster, until its meta leader is known)."""
        self.cluster.start()
        return self

    def kill(self, index: int) -> None:
        """``kill -9`` server ``index`` (from 0)."""
        self.servers[index].kill()

    def restart(self, index: int, timeout: float = 20.0) -> None:
        """Start server ``index`` again on its ports and store, and wait until it serves JetStream."""
        server = self.servers[index]
        server.start()
        server.wait_ready(timeout)

    def stop(self) -> None:
        """Stop every server."""
        self.cluster.stop()

    def __enter__(self) -> NatsHarness:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
