"""Which network addresses the node may send to on a user's behalf (the SSRF policy): a leaf module.

A webhook URL comes from the configuration, and its name is resolved when a message is sent,
so whoever controls the configuration or the DNS could point the node at something only the
node can reach. :func:`classify` sorts an IP address into an :class:`AddressKind`;
:func:`refusal` says whether a kind is refused under a policy. The fixed part of the policy:

* the cloud metadata services (:data:`METADATA_ADDRESSES`, :data:`METADATA_NAMES`) and
  link-local addresses (``169.254.0.0/16``, ``fe80::/10``) are refused unless
  ``allow_link_local`` (instance credentials live there);
* private networks and loopback are allowed unless ``allow_private`` is false: self-hosted
  receivers (Home Assistant, Node-RED, n8n) are on the LAN or the same host;
* unspecified (``0.0.0.0``, ``::``), multicast and reserved addresses are never a receiver.

IPv4 addresses embedded in IPv6 ones (``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
``64:ff9b::/96``) are judged as the IPv4 address they reach.
"""

from __future__ import annotations

import enum
import ipaddress
import socket

__all__ = ["METADATA_ADDRESSES", "METADATA_NAMES", "AddressKind", "IPAddress", "classify",
           "is_metadata_name", "literal_address", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack instance metadata
    "169.254.170.2",    # AWS ECS task metadata and credentials
    "fd00:ec2::254",    # AWS instance metadata over IPv6
    "100.100.100.200",  # Alibaba Cloud instance metadata
    "168.63.129.16",    # Azure WireServer (a public address, reachable only from inside Azure)
))
"""Cloud instance metadata services: they hand out the machine's credentials."""

METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog",  # GCP
    "instance-data", "instance-data.ec2.internal",  # AWS
})
"""Host names of metadata services (refused as names, whatever they resolve to)."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: a private network in practice


class AddressKind(enum.Enum):
    """What an address reaches."""

    PUBLIC = "public"
    PRIVATE = "private"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    METADATA = "cloud metadata"
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    RESERVED = "reserved"


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def classify(ip: IPAddress) -> AddressKind:
    """The kind of ``ip`` (an IPv4 address embedded in an IPv6 one is judged as itself)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        inner = _embedded_v4(ip)
        if inner is not None:
            return classify(inner)
    if ip in METADATA_ADDRESSES:
        return AddressKind.METADATA
    if ip.is_unspecified:
        return AddressKind.UNSPECIFIED
    if ip.is_loopback:
        return AddressKind.LOOPBACK
    if ip.is_link_local:
        return AddressKind.LINK_LOCAL
    if ip.is_multicast:
        return AddressKind.MULTICAST
    if ip.is_reserved:  # before is_private, whose list holds 240.0.0.0/4 too
        return AddressKind.RESERVED
    if ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED):
        return AddressKind.PRIVATE
    return AddressKind.PUBLIC


def refusal(kind: AddressKind, *, allow_private: bool, allow_link_local: bool) -> str | None:
    """Why an address of ``kind`` is refused under the policy, or None when it is allowed."""
    if kind in (AddressKind.UNSPECIFIED, AddressKind.MULTICAST, AddressKind.RESERVED):
        return f"a {kind.value} address is not a receiver"
    if kind in (AddressKind.LINK_LOCAL, AddressKind.METADATA) and not allow_link_local:
        return f"a {kind.value} address is refused (set allow_link_local: true to allow it)"
    if kind in (AddressKind.PRIVATE, AddressKind.LOOPBACK) and not allow_private:
        return f"a {kind.value} address is refused (allow_private is false)"
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is written as one, else None (a name, resolved later).

    Accepts the forms the system resolver takes without asking DNS, so ``2852039166`` or
    ``0xa9.0xfe.0xa9.0xfe`` are seen to be ``169.254.169.254``.
    """
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def is_metadata_name(host: str) -> bool:
    """Whether ``host`` names a metadata service (case and a trailing dot ignored)."""
    return host.lower().rstrip(".") in METADATA_NAMES
