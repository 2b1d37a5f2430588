"""The outbox sink of one webhook: POSTs each matching event message, signed, at least once.

The pump (:mod:`camfleet.events.pump`) gives it batches from the journal in order, in a thread
of its own. For each message that passes the hook's filters it POSTs one signed JSON body and
looks at the answer:

* 2xx: delivered;
* 5xx, 408, 429, a timeout, a refused or broken connection, a name that does not resolve, or
  one that resolves to an address the SSRF policy refuses: the receiver is out of reach. It
  raises :class:`ConnectionError` / :class:`TimeoutError`, so the pump keeps the batch and
  tries it again after ``backoff_s`` (doubling from ``retry_initial_s`` up to ``retry_max_s``);
* any other status (4xx, a 3xx: redirects are not followed): the receiver refuses this
  message. It raises :class:`WebhookRefused`, so the pump logs it, counts it as skipped and
  goes on with the next message.

Messages already delivered in this run are remembered (a bounded set of keys) so a batch that
is retried after one message failed does not send the ones before it again; after a crash or
a restart they may be sent again, with the same idempotency key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import httpx

from camfleet.config.webhooks import WebhookConfig
from camfleet.redact import mask_text
from camfleet.vocabulary import EventMessage, OutboxMessage

from .payload import Delivery, delivery, matches
from .signing import sign
from .ssrf import AddressRefused, Resolver, Target, system_resolver

log = logging.getLogger("camfleet.webhooks")

__all__ = ["RETRY_STATUSES", "WebhookRefused", "WebhookSink", "backoff_steps"]

RETRY_STATUSES = frozenset({408, 429})
"""Statuses below 500 that mean "later", not "never"."""

_REMEMBERED = 4096  # keys of this run's delivered (and refused) messages: more than a pump batch
_SNIPPET = 200  # characters of a refusing answer's body kept for the log
_READ_MAX = 64 * 1024  # of an answer's body: read so the connection is kept, never more (hostile receivers)


class WebhookRefused(ValueError):
    """The receiver answered a status that refuses this message (it is skipped, not retried)."""


def backoff_steps(initial_s: float, max_s: float) -> tuple[float, ...]:
    """Waits between retries, seconds: ``initial_s`` doubling up to ``max_s`` (the last repeats)."""
    steps = [initial_s]
    while steps[-1] < max_s:
        steps.append(min(steps[-1] * 2.0, max_s))
    return tuple(steps)


class WebhookSink:
    """Delivers the outbox's event messages to one hook; its cursor is ``webhook:<name>``.

    Args:
        hook: the hook's configuration.
        node: the sending node's name (in every body).
        resolve: the name resolver (the system's; tests give their own).
        verify: TLS verification as httpx takes it (True: the system's CA store).
    """

    from_tail = True  # a hook added to a node with history starts with what happens next

    def __init__(self, hook: WebhookConfig, *, node: str, resolve: Resolver = system_resolver,
                 verify: Any = True) -> None:
        self.hook = hook
        self.name = f"webhook:{hook.name}"
        self.node = node
        self.backoff_s = backoff_steps(hook.retry_initial_s, hook.retry_max_s)
        self._target = Target(hook.url, allow_private=hook.allow_private,
                              allow_link_local=hook.allow_link_local, resolve=resolve)
        # trust_env off: a proxy from the environment would resolve the name itself, past the guard
        self._client = httpx.Client(timeout=httpx.Timeout(hook.timeout_s), follow_redirects=False,
                                    trust_env=False, verify=verify)
        self._done: OrderedDict[str, str] = OrderedDict()  # key -> "" (delivered) or why it was refused
        self._lock = threading.Lock()
        self._closed = False
        self._stats: dict[str, Any] = {"delivered": 0, "failed": 0, "refused": 0, "blocked": 0,
                                       "filtered": 0, "last_status": 0, "last_latency_ms": 0.0,
                                       "last_success_at": 0.0, "last_failure_at": 0.0}

    # ------------------------------------------------------------------ OutboxSink

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        """POST each matching event message in order; returns once every one was answered 2xx.

        Raises:
            ConnectionError, TimeoutError: the receiver is out of reach (retry the batch later).
            WebhookRefused: the receiver refused a message (the pump skips that one).
        """
        for message in messages:
            if not isinstance(message, EventMessage):
                continue  # segments and activity spans are the store's business
            if not matches(self.hook, message):
                self._count("filtered")
                continue
            item = delivery(self.hook.name, self.node, message)
            remembered = self._done.get(item.key)
            if remembered == "":
                continue
            if remembered is not None:  # the pump splits a batch to find the refused message: once is enough
                raise WebhookRefused(remembered)
            self._send(item)

    def stats(self) -> dict[str, Any]:
        """Delivery counters of this run (they show in ``camfleet status`` and ``/metrics``).

        ``delivered``, ``failed`` (attempts that met an outage), ``refused`` (messages the
        receiver refused), ``blocked`` (attempts the SSRF guard stopped),
        ``filtered`` (messages the filters passed over), ``last_status`` (HTTP, 0: none yet),
        ``last_latency_ms``, ``last_success_at`` / ``last_failure_at`` (epoch seconds, 0: never).
        """
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        """Release the HTTP connections; a later :meth:`write` raises ConnectionError."""
        self._closed = True
        self._client.close()

    # ------------------------------------------------------------------ one delivery

    def _send(self, item: Delivery) -> None:
        if self._closed:
            raise ConnectionError(f"webhook {self.hook.name}: stopped")
        try:
            addresses = self._target.addresses()
        except AddressRefused as exc:
            self._failure("blocked")
            log.error("webhook %s: not sent: %s", self.hook.name, exc)
            raise
        except ConnectionError:
            self._failure("failed")
            raise
        timestamp = int(time.time())
        headers = {
            "Host": self._target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "camfleet-webhooks/1",
            "Accept-Encoding": "identity",  # the answer is read raw and bounded: no decompression bombs
            "Idempotency-Key": item.key,
            "X-Camfleet-Hook": self.hook.name,
            "X-Camfleet-Event": item.type,
            "X-Camfleet-Timestamp": str(timestamp),
            "X-Camfleet-Signature": sign(self.hook.secret, timestamp, item.body),
            **self.hook.headers,
        }
        started = time.monotonic()
        status, answer = self._post(addresses, headers, item.body)
        latency_ms = (time.monotonic() - started) * 1000.0
        with self._lock:
            self._stats.update(last_status=status, last_latency_ms=round(latency_ms, 1))
        if 200 <= status < 300:
            with self._lock:
                self._stats["delivered"] += 1
                self._stats["last_success_at"] = time.time()
            self._remember(item.key, "")
            return
        if status >= 500 or status in RETRY_STATUSES:
            self._failure("failed")
            raise ConnectionError(f"webhook {self.hook.name}: the receiver answered HTTP {status}")
        self._failure("refused")
        text = answer[:_SNIPPET * 4].decode("utf-8", "replace")[:_SNIPPET]
        snippet = mask_text(" ".join(text.split()))
        why = (f"webhook {self.hook.name}: the receiver refused {item.type} message {item.key} with HTTP "
               f"{status}" + (f": {snippet}" if snippet else ""))
        self._remember(item.key, why)
        raise WebhookRefused(why)

    def _post(self, addresses: list[str], headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """POST to the first address that takes the connection (nothing was sent to the others).

        Returns the status and the start of the answer's body (at most ``_READ_MAX`` bytes, read
        within ``timeout_s``: a receiver that sends more, or dribbles, is cut off).
        """
        error: Exception | None = None
        for address in addresses:
            try:
                with self._client.stream("POST", self._target.pinned_url(address), content=body,
                                         headers=headers, auth=self._target.auth or httpx.USE_CLIENT_DEFAULT,
                                         extensions=self._target.extensions()) as response:
                    deadline = time.monotonic() + self.hook.timeout_s
                    answer = b""
                    for chunk in response.iter_raw():
                        answer += chunk
                        if len(answer) >= _READ_MAX or time.monotonic() > deadline:
                            break
                    return response.status_code, answer
            except httpx.ConnectError as exc:
                error = exc
            except httpx.TimeoutException as exc:
                self._failure("failed")
                raise TimeoutError(f"webhook {self.hook.name}: no answer within {self.hook.timeout_s:g} s "
                                   f"({type(exc).__name__})") from None
            except Exception as exc:  # a broken connection, or the client closed under us: retried
                self._failure("failed")
                raise ConnectionError(f"webhook {self.hook.name}: {type(exc).__name__}: "
                                      f"{mask_text(str(exc))}") from None
        self._failure("failed")
        raise ConnectionError(f"webhook {self.hook.name}: cannot connect: {mask_text(str(error))}")

    def _failure(self, counter: str) -> None:
        with self._lock:
            self._stats[counter] += 1
            self._stats["last_failure_at"] = time.time()

    def _count(self, counter: str) -> None:
        with self._lock:
            self._stats[counter] += 1

    def _remember(self, key: str, refused: str) -> None:
        self._done[key] = refused
        while len(self._done) > _REMEMBERED:
            self._done.popitem(last=False)
