"""Subscriber URLs checked at creation: every spelling of a non-public address is refused.

Name resolution is faked (no network): a table of names, and a record of what was looked up.
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from relay.core.netguard import _SPECIAL_PURPOSE, DestinationPolicy
from relay.subscriptions.destinations import DestinationChecker

BLOCKED_V4 = [
    IPv4Network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]
BLOCKED_V6 = [
    IPv6Network(network)
    for network in ("::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "2001::/32", "fec0::/10")
]


class FakeResolver:
    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = names or {}
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]


def check(url: str, resolver: FakeResolver | None = None, **policy: object) -> str | None:
    """The refusal message for `url`, or None when it is accepted."""
    checker = DestinationChecker(
        DestinationPolicy(**policy),  # type: ignore[arg-type]
        resolver=resolver or FakeResolver(),
    )
    try:
        asyncio.run(checker.check(url))
    except ValueError as exc:
        return str(exc)
    return None


@st.composite
def blocked_v4(draw: st.DrawFn) -> IPv4Address:
    network = draw(st.sampled_from(BLOCKED_V4))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return network[offset]


@st.composite
def blocked_v6(draw: st.DrawFn) -> IPv6Address:
    network = draw(st.sampled_from(BLOCKED_V6))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return network[offset]


def v4_spellings(address: IPv4Address) -> list[str]:
    """Every way of writing `address` in a URL host that some resolver reads as it."""
    a, b, c, d = address.packed
    number = int(address)
    return [
        str(address),
        f"{address}.",
        str(number),
        hex(number),
        f"0x{number:08X}",
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"{a:#x}.{b:#x}.{c:#x}.{d:#x}",
        f"{a}.{b}.{c * 256 + d}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"[::ffff:{address}]",
        f"[::ffff:{number >> 16:x}:{number & 0xFFFF:x}]",
        f"[64:ff9b::{address}]",
        f"[2002:{number >> 16:x}:{number & 0xFFFF:x}::1]",
    ]


@given(address=blocked_v4(), spelling=st.integers(0, 12), scheme=st.sampled_from(["http", "https"]))
def test_every_spelling_of_a_blocked_ipv4_address_is_refused(
    address: IPv4Address, spelling: int, scheme: str
) -> None:
    resolver = FakeResolver()
    host = v4_spellings(address)[spelling]
    message = check(f"{scheme}://{host}/hook", resolver)
    assert message is not None, host
    # Octal spellings httpx cannot parse are read as the resolver reads them, so refused as
    # the address they are, not as an invalid URL.
    assert str(address) in message
    # Literal addresses are judged as written, never looked up.
    assert resolver.asked == []


@given(address=blocked_v6())
def test_blocked_ipv6_addresses_are_refused(address: IPv6Address) -> None:
    message = check(f"https://[{address}]:8443/hook")
    assert message is not None
    assert str(address) in message


@given(
    address=st.one_of(blocked_v4(), blocked_v6()),
    public=st.sampled_from(["93.184.215.14", "2606:4700:4700::1111"]),
)
def test_a_name_with_any_blocked_address_is_refused(
    address: IPv4Address | IPv6Address, public: str
) -> None:
    resolver = FakeResolver({"hooks.example.com": [public, str(address)]})
    message = check("https://hooks.example.com/x", resolver)
    assert message is not None
    assert f"hooks.example.com ({address})" in message
    assert resolver.asked == ["hooks.example.com"]


@given(address=st.ip_addresses(v=4))
def test_public_ipv4_addresses_are_accepted_by_name_and_literally(address: IPv4Address) -> None:
    assume(address.is_global and not address.is_multicast)
    # Ranges Python calls global that the relay refuses on purpose (see netguard.py).
    assume(not any(address in ip_network(entry[0]) for entry in _SPECIAL_PURPOSE))
    assert check(f"https://{address}/hook") is None
    assert check(f"https://[::ffff:{address}]/hook") is None
    resolver = FakeResolver({"hooks.example.com": [str(address)]})
    assert check("https://hooks.example.com/hook", resolver) is None


@given(
    address=st.one_of(
        st.ip_addresses(v=6, network="2600::/12"), st.ip_addresses(v=6, network="2a00::/12")
    )
)
def test_public_ipv6_addresses_are_accepted(address: IPv6Address) -> None:
    assert check(f"https://[{address}]/hook") is None


@given(address=blocked_v4())
def test_allowed_networks_let_their_addresses_through(address: IPv4Address) -> None:
    allowed = (IPv4Network(f"{address}/32"),)
    assert check(f"http://{address}:8080/hook", allowed_networks=allowed) is None
    resolver = FakeResolver({"dev.local": [str(address)]})
    assert check("http://dev.local/hook", resolver, allowed_networks=allowed) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://2130706433/", "destination 127.0.0.1 is a loopback address"),
        ("http://0x7f.1/", "destination 127.0.0.1 is a loopback address"),
        ("http://0177.0.0.1/", "destination 127.0.0.1 is a loopback address"),
        ("http://0xA9FEA9FE/", "destination 169.254.169.254 is a link-local address"),
        ("http://localhost./", "localhost (127.0.0.1) is a loopback address"),
        ("http://api.localhost/", "api.localhost (127.0.0.1) is a loopback address"),
        ("http://good.com@127.0.0.1/", "credentials"),
        ("http://good.com%5C@127.0.0.1/", "credentials"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://%31%32%37.0.0.1/", "percent-encoding"),
        ("http://localhost/", "localhost (127.0.0.1) is a loopback address"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data", "169.254.169.254"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
    ],
)
def test_tricky_urls_are_refused_with_a_reason(url: str, fragment: str) -> None:
    message = check(url, FakeResolver({"localhost": ["127.0.0.1", "::1"]}))
    assert message is not None
    assert fragment in message


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("http://134744072/hook", "http://8.8.8.8/hook"),
        ("https://0x8.0x8.0x8.0x8:8443/x?y=1", "https://8.8.8.8:8443/x?y=1"),
        ("http://010.010.010.010/", "http://8.8.8.8/"),
        ("http://8.8.8.8./", "http://8.8.8.8/"),
        ("http://8.526344/", "http://8.8.8.8/"),
        ("https://hooks.example.com./in", "https://hooks.example.com/in"),
        ("https://hooks.example.com/in", "https://hooks.example.com/in"),
        ("https://[2606:4700:4700::1111]/", "https://[2606:4700:4700::1111]/"),
    ],
)
def test_a_public_host_in_another_notation_is_stored_the_usual_way(url: str, stored: str) -> None:
    checker = DestinationChecker(
        DestinationPolicy(), resolver=FakeResolver({"hooks.example.com": ["93.184.215.14"]})
    )
    assert asyncio.run(checker.check(url)) == stored


def test_a_name_that_does_not_resolve_yet_is_accepted_and_left_to_send_time() -> None:
    resolver = FakeResolver()
    assert check("https://not-yet.example.com/hook", resolver) is None
    assert resolver.asked == ["not-yet.example.com"]


def test_a_hanging_resolver_does_not_hold_the_request() -> None:
    async def never(host: str, port: int) -> list[str]:
        await asyncio.sleep(3600)
        return []

    checker = DestinationChecker(DestinationPolicy(), resolver=never, resolve_timeout=0.05)
    assert asyncio.run(checker.check("https://slow.example.com/")) == "https://slow.example.com/"


def test_production_refuses_http_unless_allowed() -> None:
    message = check("http://93.184.215.14/hook", https_only=True)
    assert message is not None
    assert "RELAY_ALLOW_HTTP_DESTINATIONS=true" in message
    assert check("https://93.184.215.14/hook", https_only=True) is None
    assert check("http://93.184.215.14/hook", https_only=False) is None
