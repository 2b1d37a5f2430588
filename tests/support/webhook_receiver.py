"""A real webhook receiver for tests: a threaded HTTP server on loopback that records every POST.

What it answers is up to the test: :attr:`Receiver.answer` is called with each request and
returns ``(status, delay_s)``; the delay is waited before answering (a slow receiver), and
:meth:`Receiver.close` cuts every wait short. Status 0 drops the connection without an answer;
:attr:`Receiver.reply_body` and :attr:`Receiver.reply_headers` are sent with every answer.
The request is recorded when it arrives, with whether its signature verifies, so a test sees
what a receiver would have processed even when the sender gave up waiting for the answer.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from camfleet.integrations.webhooks.signing import verify


@dataclass
class Received:
    """One POST as the receiver got it; ``status`` is what it answered (or is about to)."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    verified: bool
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The Idempotency-Key header."""
        return self.headers.get("idempotency-key", "")


Answer = Callable[[Received], "tuple[int, float]"]


class Receiver:
    """The server; ``url`` is where it listens (``http://127.0.0.1:PORT/hook``)."""

    def __init__(self, secret: str, *, tls: ssl.SSLContext | None = None) -> None:
        self.secret = secret
        self.answer: Answer = lambda r: (200, 0.0)
        self.requests: list[Received] = []
        self.reply_body = b"ok"
        self.reply_headers: dict[str, str] = {}
        self._cond = threading.Condition()
        self._closing = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok = verify(receiver.secret, headers.get("x-camfleet-timestamp", ""),
                            headers.get("x-camfleet-signature", ""), body, now=time.time())
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {}
                got = Received(time.time(), self.path, headers, body, 0, ok, data)
                status, delay = receiver.answer(got)
                got.status = status
                with receiver._cond:
                    receiver.requests.append(got)
                    receiver._cond.notify_all()
                if delay:
                    receiver._closing.wait(delay)
                if status == 0:
                    self.close_connection = True
                    return
                try:
                    self.send_response(status)
                    for name, value in receiver.reply_headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(receiver.reply_body)))
                    self.end_headers()
                    self.wfile.write(receiver.reply_body)
                except OSError:
                    pass  # the sender gave up waiting (its timeout): it will send again

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.block_on_close = False
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name="webhook-receiver")
        self._thread.start()

    def wait(self, ok: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        """The requests so far, once ``ok(requests)``; AssertionError after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        with self._cond:
            while not ok(self.requests):
                left = end - time.monotonic()
                assert left > 0, f"receiver: condition not met within {timeout} s; got " + ", ".join(
                    f"{r.status} {r.key}" for r in self.requests[-8:])
                self._cond.wait(min(left, 0.5))
            return list(self.requests)

    def processed(self) -> dict[str, Received]:
        """What a receiver that dedupes by Idempotency-Key keeps: the first 2xx of each key."""
        out: dict[str, Received] = {}
        with self._cond:
            for r in self.requests:
                if 200 <= r.status < 300 and r.verified:
                    out.setdefault(r.key, r)
        return out

    def close(self) -> None:
        """Stop serving and cut short every answer still waiting."""
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
