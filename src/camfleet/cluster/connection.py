"""Connecting to NATS: the URLs, credentials and TLS an agent or coordinator is given.

``--nats`` takes one URL or several, comma-separated (any servers of the
cluster; the client learns the others from them). Credentials come from a
``.creds`` file (``--nats-creds``) or the URL's user info; TLS from
``tls://`` URLs with an optional CA bundle (``--nats-ca``). Credentials never
appear in logs or errors: URLs are shown masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats.errors
from nats.aio.client import Client

from camfleet.redact import mask_text, mask_url

__all__ = ["NatsOptions", "connect", "parse_urls"]

log = logging.getLogger("camfleet.cluster")

_SCHEMES = ("nats", "tls", "ws", "wss")
_NO_ANSWER = "no answer"


def parse_urls(text: str) -> list[str]:
    """The URLs in ``text`` (comma-separated); raises ValueError naming the bad one."""
    urls = [part.strip() for part in text.split(",") if part.strip()]
    if not urls:
        raise ValueError("--nats: no URL given (e.g. nats://127.0.0.1:4222)")
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError(f"--nats: {mask_url(url)!r} is not a NATS URL "
                             f"(expected {'|'.join(_SCHEMES)}://HOST[:PORT])")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"--nats: {mask_url(url)!r}: bad port") from None
    return urls


@dataclass(frozen=True)
class NatsOptions:
    """Where and how to connect: ``urls``, an optional ``.creds`` file and CA bundle, a client name."""

    urls: tuple[str, ...]
    creds: Path | None = None
    ca_file: Path | None = None
    name: str = "camfleet"

    @property
    def shown(self) -> str:
        """The URLs with any credentials masked (for logs and messages)."""
        return ",".join(mask_url(url) for url in self.urls)


async def connect(options: NatsOptions, *, timeout_s: float = 10.0) -> Client:
    """A connected client that reconnects for ever; raises ConnectionError (masked) when none answers.

    ``timeout_s`` bounds the first connection (seconds); after that, reconnects
    are attempted every half second to any known server.
    A refusal that no retry mends (an untrusted certificate, wrong credentials)
    raises at once, saying which; with several URLs, once every one of them
    has refused (a server that refuses is dropped and the others are tried).
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    remaining = list(options.urls)
    reasons: list[str] = []
    while True:
        client, refused_url, reason = await _connect_once(options, remaining, deadline)
        if client is not None:
            if reasons:
                log.warning("nats: connected; refused by another server: %s", "; ".join(reasons))
            return client
        if reason == _NO_ANSWER:
            reason = f"no answer within {timeout_s:.0f} s"
        if refused_url is None or refused_url not in remaining:  # no answer, or not one URL's fault
            reasons.append(reason)
            break
        reasons.append(f"{mask_url(refused_url)}: {reason}" if len(options.urls) > 1 else reason)
        remaining.remove(refused_url)
        if not remaining:
            break
    raise ConnectionError(f"cannot connect to NATS at {options.shown}: {'; '.join(reasons)}")


async def _connect_once(options: NatsOptions, urls: list[str], deadline: float
                        ) -> tuple[Client | None, str | None, str]:
    """One client over ``urls`` until ``deadline`` (loop time).

    Returns (client, None, "") when connected, else (None, the URL that
    refused or None, why), why being :data:`_NO_ANSWER` at the deadline.

    A refusal ends the attempt at once: nats-py would not go on to the next
    server after a failed TLS handshake (its close of that connection waits
    for ever), and a refusal is no reason to wait anyway.
    """
    loop = asyncio.get_running_loop()
    refused: asyncio.Future[tuple[str | None, str]] = loop.create_future()
    client = Client()

    async def on_error(exc: Exception) -> None:
        log.debug("nats: %s", mask_text(str(exc)))
        reason = _refusal(exc)
        if reason is not None and not refused.done():
            refused.set_result((_url_of(client, urls), reason))

    async def on_disconnected() -> None:
        if not client.is_closed:  # a close of our own is no outage
            log.warning("nats: disconnected; reconnecting")

    async def on_reconnected() -> None:
        log.info("nats: reconnected to %s", mask_url(str(client.connected_url.geturl()))
                 if client.connected_url else "a server")

    timeout_s = max(0.1, deadline - loop.time())
    kwargs: dict[str, Any] = {
        "servers": list(urls),
        "name": options.name,
        "connect_timeout": min(2.0, timeout_s),
        "reconnect_time_wait": 0.5,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
        "error_cb": on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    if options.creds is not None:
        if not options.creds.is_file():
            raise ConnectionError(f"--nats-creds {options.creds}: no such file")
        kwargs["user_credentials"] = str(options.creds)
    if options.ca_file is not None or any(url.startswith(("tls://", "wss://")) for url in options.urls):
        context = ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)
        kwargs["tls"] = context
        _quiet_ssl_eof()
    attempt = asyncio.ensure_future(_first_connect(client, kwargs))
    waiters: set[asyncio.Future[Any]] = {attempt, refused}
    bad: str | None = None
    try:
        # the client retries every server until the deadline; a refusal that no retry mends ends it at once
        done, _ = await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if attempt in done:
            attempt.result()
            return client, None, ""
        if refused in done:
            bad, reason = refused.result()
        else:
            reason = _NO_ANSWER
    except (OSError, nats.errors.Error, ssl.SSLError) as exc:
        reason = _refusal(exc) or type(exc).__name__
    except asyncio.CancelledError:  # stopped while connecting: leave no client retrying behind
        attempt.cancel()
        await _quiet_close(client)
        raise
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await attempt
    await _quiet_close(client)
    return None, bad, reason


def _url_of(client: Client, urls: list[str]) -> str | None:
    """Which of ``urls`` the client was connecting to (None: not known)."""
    if len(urls) == 1:
        return urls[0]
    # nats-py keeps the server being connected to here; only a name, so read it defensively
    server = getattr(client, "_current_server", None)
    uri = getattr(server, "uri", None)
    if uri is None:
        return None
    for url in urls:
        parts = urlsplit(url)
        if (parts.hostname, parts.port or 4222) == (uri.hostname, uri.port or 4222):
            return url
    return None


def _drop_ssl_eof_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("returning true from eof_received() has no effect")


def _quiet_ssl_eof() -> None:
    """Keep asyncio's "eof_received() has no effect when using ssl" out of the logs.

    nats-py's protocol asks to keep a half-closed connection open, which TLS
    cannot; asyncio warns at every TLS disconnect (a clean stop included),
    which reads like a fault and is none.
    """
    asyncio_log = logging.getLogger("asyncio")
    if _drop_ssl_eof_warning not in asyncio_log.filters:
        asyncio_log.addFilter(_drop_ssl_eof_warning)


def _refusal(exc: BaseException) -> str | None:
    """What a first connection's error means to the user when retrying cannot help (None: it may)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the server's TLS certificate is not trusted ({mask_text(str(exc.verify_message))}); "
                "pass --nats-ca with the CA that signed it")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({mask_text(exc.reason or str(exc))})"
    text = str(exc).lower()
    if isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in text:
        return "authorization refused (check the user and password in the URL, or --nats-creds)"
    if "tls required" in text or "secure connection" in text:
        return "the server requires TLS (use a tls:// URL)"
    return None


async def _first_connect(client: Client, kwargs: dict[str, Any]) -> None:
    await client.connect(**kwargs)


async def _quiet_close(client: Client) -> None:
    try:
        await client.close()
    except Exception as exc:  # closing a half-connected client; nothing more to do
        log.debug("nats: close after a failed connect: %r", exc)

