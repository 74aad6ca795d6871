"""The destination policy: which addresses the relay may connect to for a subscriber."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from relay.core.netguard import (
    _SPECIAL_PURPOSE,
    DestinationBlocked,
    DestinationPolicy,
    embedded_ipv4,
    is_loopback_name,
    literal_address,
)
from relay.core.settings import Settings

DEFAULT = DestinationPolicy()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.1.2.3", "private-use address (RFC 1918)"),
        ("172.31.255.255", "private-use address (RFC 1918)"),
        ("192.168.0.1", "private-use address (RFC 1918)"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.1", "documentation"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "unique local"),
        ("fd12:3456:789a::1", "unique local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("::ffff:127.0.0.1", "which leads to 127.0.0.1, a loopback"),
        ("::ffff:a9fe:a9fe", "which leads to 169.254.169.254, a link-local"),
        ("64:ff9b::10.0.0.1", "which leads to 10.0.0.1, a private"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:7f00:1::1", "which leads to 127.0.0.1, a loopback"),
        ("2002:a9fe:a9fe::1", "which leads to 169.254.169.254"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("2001:db8::1", "documentation"),
        ("100::1", "discard-only"),
        ("::ffff:0:7f00:1", "IPv4-translated address (RFC 2765)"),
        ("::ffff:0:8.8.8.8", "IPv4-translated address (RFC 2765)"),
        ("200::1", "reserved by the IETF (RFC 4048)"),
        ("e000::1", "reserved by the IETF"),
        ("100:0:0:1::1", "dummy IPv6 prefix"),
        ("2001:20::1", "ORCHIDv2"),
        ("2001:1::1", "anycast"),
        ("2620:4f:8000::1", "AS112"),
        ("3fff::1", "documentation address (RFC 9637)"),
        ("5f00::1", "SRv6"),
        ("192.0.0.9", "Port Control Protocol"),
        ("192.31.196.1", "AS112"),
    ],
)
def test_non_public_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    refused = DEFAULT.refusal(ip_address(address))
    assert refused is not None
    assert reason in refused[0]
    with pytest.raises(DestinationBlocked, match="RELAY_ALLOWED_DESTINATION_NETWORKS"):
        DEFAULT.check_address(address, ip_address(address))


@pytest.mark.parametrize(("network", "label", "rfc"), _SPECIAL_PURPOSE)
def test_every_registry_entry_is_refused_at_both_ends_naming_its_rfc(
    network: str, label: str, rfc: str
) -> None:
    entry = ip_network(network)
    for address in (entry[0], entry[-1]):
        refused = DEFAULT.refusal(address)
        assert refused is not None, address
        assert refused[1].subnet_of(entry) or entry.subnet_of(refused[1])  # type: ignore[arg-type]
        assert refused[0].endswith(")")


@given(address=st.ip_addresses())
def test_every_address_python_calls_not_global_is_refused(
    address: IPv4Address | IPv6Address,
) -> None:
    # The check against `ipaddress`: the relay refuses at least what it calls non-global, but
    # encodings judged by the IPv4 address they carry.
    assume(not address.is_global)
    assume(not isinstance(address, IPv6Address) or embedded_ipv4(address) is None)
    assert DEFAULT.refusal(address) is not None


@given(address=st.ip_addresses(v=6))
def test_ipv6_outside_global_unicast_is_refused_unless_it_carries_ipv4(
    address: IPv6Address,
) -> None:
    assume(address not in IPv6Network("2000::/3") and embedded_ipv4(address) is None)
    assert DEFAULT.refusal(address) is not None


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "2606:4700:4700::1111",
        "2a00:1450:4001:81c::200e",
        # Encodings of a public IPv4 address go where that address goes.
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert DEFAULT.refusal(ip_address(address)) is None
    DEFAULT.check_address(address, ip_address(address))


def test_allowed_networks_open_exactly_their_range() -> None:
    policy = DestinationPolicy(allowed_networks=(IPv4Network("127.0.0.0/8"),))
    assert policy.refusal(ip_address("127.0.0.1")) is None
    assert policy.refusal(ip_address("127.9.9.9")) is None
    assert policy.refusal(ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ip_address("10.0.0.1")) is not None
    assert policy.refusal(ip_address("::1")) is not None
    assert policy.refusal(ip_address("169.254.169.254")) is not None


def test_the_message_names_the_host_the_address_and_the_network_to_allow() -> None:
    with pytest.raises(DestinationBlocked) as caught:
        DEFAULT.check_address("hooks.internal", ip_address("192.168.4.2"))
    message = str(caught.value)
    assert "hooks.internal (192.168.4.2)" in message
    assert "private-use address (RFC 1918)" in message
    assert "RELAY_ALLOWED_DESTINATION_NETWORKS (e.g. 192.168.0.0/16)" in message


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("example.com", None),
        ("cafe.be", None),
        ("deadbeef", None),
        ("1.2.3.4.5", None),
        ("127.0.0.1..", None),
    ],
)
def test_literal_addresses_are_read_the_way_the_resolver_reads_them(
    host: str, expected: str | None
) -> None:
    address = literal_address(host)
    assert (None if address is None else str(address)) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost.", True),
        ("LocalHost.", True),
        ("api.localhost", True),
        ("api.localhost.", True),
        ("notlocalhost", False),
        ("localhost.example.com", False),
    ],
)
def test_localhost_names_are_loopback_with_or_without_the_dot(host: str, loopback: bool) -> None:
    assert is_loopback_name(host) is loopback


def test_production_allows_only_https_unless_http_is_allowed() -> None:
    production = DestinationPolicy.from_settings(
        Settings(env="production", _env_file=None)  # type: ignore[call-arg]
    )
    production.check_scheme("https")
    with pytest.raises(DestinationBlocked, match="RELAY_ALLOW_HTTP_DESTINATIONS=true"):
        production.check_scheme("http")
    relaxed = DestinationPolicy.from_settings(
        Settings(env="production", allow_http_destinations=True, _env_file=None)  # type: ignore[call-arg]
    )
    relaxed.check_scheme("http")
    development = DestinationPolicy.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    development.check_scheme("http")
    for policy in (production, relaxed, development):
        with pytest.raises(DestinationBlocked, match="not allowed"):
            policy.check_scheme("ftp")
