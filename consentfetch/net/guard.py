"""The address guard: no requests to loopback, private or otherwise non-public hosts.

The check sits inside the DNS resolver that aiohttp's connector uses, so the
addresses we check are exactly the addresses aiohttp connects to: there is no
gap between check and connect for DNS rebinding to slip through. Literal IP
hosts never reach a resolver, so :func:`check_host` checks them up front.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver, ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def parse_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    """``--allow-network`` values as networks; ValueError names a bad one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ValueError(f"not an IP network: {cidr!r}") from exc
    return tuple(networks)


def is_refused(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> bool:
    """Blocked, and not inside a network the user explicitly allowed."""
    return is_blocked(address) and not any(address in net for net in allowed
                                           if net.version == address.version)


def check_host(host: str, allowed: Sequence[str] = ()) -> str | None:
    """Evidence text if ``host`` is a literal address we refuse, else None."""
    address = literal_address(host)
    if address is not None and is_refused(address, parse_networks(allowed)):
        return f"{host} is a non-public address ({_kind(address)})"
    return None


def _kind(address: IPAddress) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{name}", False):
            return name.replace("_", "-")
    return "not globally routable"


class GuardedResolver(AbstractResolver):
    """A resolver that drops refused addresses and fails if none is left."""

    def __init__(self, inner: AbstractResolver | None = None,
                 allowed: Sequence[IPNetwork] = ()) -> None:
        self._inner = inner or DefaultResolver()
        self._allowed = tuple(allowed)

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results
                   if not is_refused(ipaddress.ip_address(r["host"]), self._allowed)]
        if not allowed:
            shown = ", ".join(sorted({r["host"] for r in results}))
            raise BlockedAddressError(f"{host} resolves only to non-public addresses ({shown})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


RESOLVERS = ("threaded", "async")


def _base_resolver(kind: str) -> AbstractResolver:
    if kind == "async":
        # aiohttp's AsyncResolver needs aiodns (pip install 'consentfetch[dns]').
        from aiohttp.resolver import AsyncResolver
        return AsyncResolver()
    return ThreadedResolver()


def resolver_for(allow_private_networks: bool, allowed_networks: Sequence[str] = (),
                 kind: str = "threaded") -> AbstractResolver:
    """The resolver a session should use under the given policy."""
    base = _base_resolver(kind)
    if allow_private_networks:
        return base
    return GuardedResolver(base, parse_networks(allowed_networks))
