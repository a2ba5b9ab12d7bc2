"""The address guard: no requests to loopback, private or otherwise non-public hosts.

The check sits inside the DNS resolver that aiohttp's connector uses, so the
addresses we check are exactly the addresses aiohttp connects to: there is no
gap between check and connect for DNS rebinding to slip through. Literal IP
hosts never reach a resolver, so :func:`check_host` checks them up front.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddressError(OSError):
    """Every address a host resolves to is one we refuse to connect to."""


def is_blocked(address: IPAddress) -> bool:
    """True for any address that is not a public unicast internet address.

    Loopback, RFC 1918 private, carrier-grade NAT, link-local (including the
    cloud metadata address 169.254.169.254), unique-local, multicast,
    reserved and unspecified addresses are refused; IPv4-mapped and 6to4-style
    IPv6 forms are judged by the IPv4 address they carry.
    """
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return is_blocked(mapped)
        if address.teredo is not None:
            return True
    return (not address.is_global or address.is_multicast or address.is_reserved
            or address.is_unspecified or address.is_loopback or address.is_link_local)


def literal_address(host: str) -> IPAddress | None:
    """The IP address a URL host spells literally (``[::1]`` too), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_host(host: str) -> str | None:
    """Evidence text if ``host`` is a literal blocked address, else None."""
    address = literal_address(host)
    if address is not None and is_blocked(address):
        return f"{host} is a non-public address ({_kind(address)})"
    return None


def _kind(address: IPAddress) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{name}", False):
            return name.replace("_", "-")
    return "not globally routable"


class GuardedResolver(AbstractResolver):
    """A resolver that drops blocked addresses and fails if none is left."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if not is_blocked(ipaddress.ip_address(r["host"]))]
        if not allowed:
            shown = ", ".join(sorted({r["host"] for r in results}))
            raise BlockedAddressError(f"{host} resolves only to non-public addresses ({shown})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def resolver_for(allow_private_networks: bool, inner: Any = None) -> AbstractResolver:
    """The resolver a session should use under the given policy."""
    base = inner or DefaultResolver()
    return base if allow_private_networks else GuardedResolver(base)
