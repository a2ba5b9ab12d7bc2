"""The address guard's classification of addresses."""

from __future__ import annotations

import ipaddress

import pytest

from consentfetch.net.guard import check_host, is_blocked


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.0.0.2", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1",
    "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1", "2001:db8::1",
    "64:ff9b::a00:1",
])
def test_blocked(address: str) -> None:
    assert is_blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34",
                                     "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public(address: str) -> None:
    assert not is_blocked(ipaddress.ip_address(address))


@pytest.mark.parametrize("host,blocked", [
    ("127.0.0.1", True), ("[::1]", True), ("10.1.2.3", True), ("8.8.8.8", False),
    ("example.com", False),  # names are judged after resolution, in the resolver
])
def test_check_host_literals(host: str, blocked: bool) -> None:
    assert (check_host(host) is not None) == blocked
