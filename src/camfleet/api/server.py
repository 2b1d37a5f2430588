"""``ApiServer``: uvicorn in a thread, started and stopped with bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import threading

import uvicorn
from fastapi import FastAPI

from .context import LOOPBACK_HOSTS, ApiContext

log = logging.getLogger("camfleet.api")


_TOKEN_RE = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Masks ``token=...`` in log records (uvicorn logs WebSocket paths with their query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with tokens masked; never drops a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        if "token=" in message.lower():
            record.msg = _TOKEN_RE.sub(r"\1***", message)
            record.args = None
        return True


def _install_redaction() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


class _Server(uvicorn.Server):
    """uvicorn's server, setting ``ready`` once it listens."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening, then say so."""
        await super().startup(sockets=sockets)
        self.ready.set()


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
        self._ready = threading.Event()

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
        # proto IPPROTO_TCP (not 0): asyncio sets TCP_NODELAY on accepted connections only then;
        # without it, keep-alive requests wait ~40 ms for delayed ACKs (Nagle)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="on",
                                ws_ping_interval=20, ws_ping_timeout=20, ws_max_size=1 << 16,
                                timeout_graceful_shutdown=3)
        _install_redaction()
        self._ready = threading.Event()
        self._server = _Server(config, self._ready)
        self._thread = threading.Thread(target=self._run, name="camfleet-api", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)  # set once listening, or when serving ended (failed)
        if self._error is not None:
            raise RuntimeError(f"the API server failed to start: {self._error}") from self._error
        if not self._server.started:
            ended = not self._thread.is_alive()
            self.stop(2.0)
            if ended:
                raise RuntimeError("the API server failed to start (see the log)")
            raise TimeoutError(f"the API server did not start within {timeout} s")
        log.info("API listening on %s", self.url)

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self._ready.set()

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
