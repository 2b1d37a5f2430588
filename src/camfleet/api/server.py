"""``ApiServer``: uvicorn in a thread, started and stopped with bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading

import uvicorn
from fastapi import FastAPI

from .context import LOOPBACK_HOSTS, ApiContext

log = logging.getLogger("camfleet.api")


class ApiServer:
    """Serves ``app`` on ``host:port`` from a background thread (port 0: a free port, see :attr:`url`)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        ctx: ApiContext | None = getattr(app.state, "ctx", None)
        if ctx is not None and ctx.open and host not in LOOPBACK_HOSTS:
            raise ValueError(f"api.open is only allowed on a loopback host, not {host!r}")
        self.app = app
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` once started."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Bind, start serving, and return once the server accepts connections.

        Raises:
            OSError: the address cannot be bound.
            TimeoutError: the server did not start within ``timeout`` seconds.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on",
                                ws_ping_interval=20, ws_ping_timeout=20, timeout_graceful_shutdown=3)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="camfleet-api", daemon=True)
        self._thread.start()
        self._thread.join(0)  # let it begin
        started = threading.Event()

        def poll() -> None:
            assert self._server is not None
            while not (self._server.started or self._error is not None or not self._thread_alive()):
                if started.wait(0.01):  # woken only by the deadline below
                    return

        waiter = threading.Thread(target=poll, daemon=True)
        waiter.start()
        waiter.join(timeout)
        started.set()
        if self._error is not None:
            raise RuntimeError(f"the API server failed to start: {self._error}") from self._error
        if not self._server.started:
            self.stop(2.0)
            raise TimeoutError(f"the API server did not start within {timeout} s")
        log.info("API listening on %s", self.url)

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close WebSockets and streams, and wait up to ``timeout`` seconds."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(2.0)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
