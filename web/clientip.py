"""The client's IP address: the direct peer's, or from ``X-Forwarded-For`` behind a trusted proxy.

Only a peer in ``server.trusted_proxies`` (IP addresses or CIDR networks) is
believed about ``X-Forwarded-For``. The standard algorithm (MDN "X-Forwarded-For",
"Selecting an IP address"): read the header's addresses from the right, each hop
having appended the address it received from, skip those of trusted proxies, and
take the first one that is not: what a client writes itself stays to the left and
is never read. When every address is a trusted proxy the left-most one is the
client. A header that cannot be read where it is walked (not an address, an empty
item, a port) is ignored and the peer is the client: never an error.

:func:`client_ip` is the one place the server asks for a client's address (per-IP
rate limit, sessions, the multi-IP check).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import hdrs, web

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address

_CACHE_KEY = web.RequestKey("connectsw.client_ip", str)


def _address(text: str) -> Address | None:
    """The address in ``text`` (IPv4-mapped IPv6 as IPv4), or None if it is not one."""
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The client's address as text (``""`` when the peer has none, e.g. a Unix socket).

    ``peer`` is the connection's remote address; ``forwarded_for`` the values of
    every ``X-Forwarded-For`` line in order (they read as one comma-separated list);
    ``trusted`` the networks of trusted proxies. Never raises.
    """
    if not peer:
        return ""
    address = _address(peer)
    if address is None:
        return peer
    if not trusted or not forwarded_for or not _trusted(address, trusted):
        return str(address)
    items = ",".join(forwarded_for).split(",")
    hop = address
    for item in reversed(items):
        read = _address(item)
        if read is None:
            return str(address)  # unreadable where it matters: the peer is the client
        hop = read
        if not _trusted(hop, trusted):
            return str(hop)
    return str(hop)  # every hop is a trusted proxy: the farthest one


def client_ip(request: web.Request) -> str:
    """The request's client address (computed once per request; see the module)."""
    cached: str | None = request.get(_CACHE_KEY)
    if cached is None:
        from connectsw.web.app import SETTINGS

        trusted = request.app[SETTINGS].server.trusted_proxies
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        cached = request[_CACHE_KEY] = client_address(request.remote, forwarded, trusted)
    return cached
