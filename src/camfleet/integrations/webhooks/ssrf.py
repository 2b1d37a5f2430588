"""A hook's SSRF guard: resolve when sending, refuse what the policy refuses, connect to what was checked.

A name is resolved for each delivery (:class:`Target.addresses`), every address it resolves to
is judged by :mod:`camfleet.netpolicy` (one refused address refuses the name: a name that
resolves to the metadata service is not a receiver), and the request goes to the checked IP
itself (:meth:`Target.pinned_url`) with the original ``Host`` header and, for HTTPS, the
original name as SNI and as the name the certificate must carry. So a DNS answer that changes
between the check and the connection (DNS rebinding) reaches nothing unchecked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import httpx

from camfleet.netpolicy import classify, is_metadata_name, literal_address, refusal

__all__ = ["AddressRefused", "Resolver", "Target", "system_resolver"]

Resolver = Callable[[str, int], list[str]]
"""Resolves ``(host, port)`` to IP addresses (text), in the order to try them."""


class AddressRefused(ConnectionError):
    """The hook's host is, or resolves to, an address the policy refuses.

    A :class:`ConnectionError`: the pump keeps the messages and retries with back-off, so a
    DNS answer that is put right later loses nothing.
    """


def system_resolver(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host`` (each once, in its order).

    Raises:
        ConnectionError: the name does not resolve (DNS down or the name gone: retried).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectionError(f"cannot resolve the host: {exc}") from None
    out: list[str] = []
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in out:
            out.append(address)
    return out


class Target:
    """A hook's URL taken apart: where to resolve, what to send as ``Host`` and SNI, its credentials.

    ``url`` must be an absolute http(s) URL (the configuration checked it).
    """

    def __init__(self, url: str, *, allow_private: bool, allow_link_local: bool,
                 resolve: Resolver = system_resolver) -> None:
        parsed = httpx.URL(url)
        self.scheme = parsed.scheme
        self.host = parsed.raw_host.decode("ascii")  # IDNA-encoded: what DNS and SNI take
        self.port = parsed.port or (443 if self.scheme == "https" else 80)
        self.host_header = parsed.netloc.decode("ascii")  # no user info; the port only when given
        self.auth = (httpx.BasicAuth(parsed.username, parsed.password)
                     if parsed.username or parsed.password else None)
        self._url = parsed.copy_with(username=None, password=None)
        self._allow = {"allow_private": allow_private, "allow_link_local": allow_link_local}
        self._resolve = resolve

    def addresses(self) -> list[str]:
        """The host's addresses, each allowed by the policy, in the order to try them.

        Raises:
            AddressRefused: the host is a metadata name, or an address it resolves to is refused.
            ConnectionError: it does not resolve.
        """
        if is_metadata_name(self.host) and not self._allow["allow_link_local"]:
            raise AddressRefused(f"{self.host} is a cloud metadata service name")
        literal = literal_address(self.host)
        found = [str(literal)] if literal is not None else self._resolve(self.host, self.port)
        if not found:
            raise ConnectionError(f"{self.host} resolves to no address")
        for text in found:
            ip = ipaddress.ip_address(text)
            why = refusal(classify(ip), **self._allow)
            if why is not None:
                raise AddressRefused(f"{self.host} resolves to {ip}: {why}")
        return found

    def pinned_url(self, address: str) -> httpx.URL:
        """The URL with its host replaced by ``address`` (credentials removed)."""
        return self._url.copy_with(host=address)

    def extensions(self) -> dict[str, str]:
        """Request extensions for httpx: for HTTPS to a name, that name as SNI and certificate name."""
        if self.scheme == "https" and literal_address(self.host) is None:
            return {"sni_hostname": self.host}
        return {}
