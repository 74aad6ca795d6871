"""Which addresses the relay may open connections to on a subscriber's behalf.

A subscriber URL is untrusted input that makes the relay connect from inside the network it
runs in; without this check anyone with the admin API (or control of a subscriber's DNS) could
reach the cloud metadata service, the database or any internal admin page. Only globally
reachable addresses are allowed, plus the networks an operator opens explicitly with
RELAY_ALLOWED_DESTINATION_NETWORKS. Addresses that carry an IPv4 address inside an IPv6 one
(IPv4-mapped, NAT64, 6to4) are judged by the IPv4 address they lead to.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.core.settings import Settings

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

# The IANA special-purpose registries' entries that are not globally reachable, plus multicast.
# Listed here rather than left to `is_global` alone, whose answer has changed between Python
# releases and which counts multicast as global.
_BLOCKED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ip_network(network), label)
    for network, label in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", "a private (RFC 1918) address"),
        ("100.64.0.0/10", "a carrier-grade NAT (RFC 6598) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address (cloud metadata services live here)"),
        ("172.16.0.0/12", "a private (RFC 1918) address"),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", "a documentation address"),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("192.168.0.0/16", "a private (RFC 1918) address"),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", "a documentation address"),
        ("203.0.113.0/24", "a documentation address"),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", "a reserved or broadcast address"),
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("::/96", "an IPv4-compatible (deprecated) address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo tunnel address"),
        ("2001::/23", "an IETF protocol assignment address"),
        ("2001:db8::/32", "a documentation address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "a segment routing (SRv6) address"),
        ("fc00::/7", "a unique local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local (deprecated) address"),
        ("ff00::/8", "a multicast address"),
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")
# Characters inet_aton (and so getaddrinfo) reads as an IPv4 number: 2130706433, 0x7f.1, 0177.1.
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")


class DestinationBlocked(Exception):
    """A destination the policy refuses; the message says which address and how to allow it."""


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, for the encodings that carry one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _category(address: IPAddress) -> tuple[str, IPNetwork] | None:
    """What kind of non-public address this is and the network it belongs to; None if public."""
    for network, label in _BLOCKED:
        if address.version == network.version and address in network:
            return label, network
    if not address.is_global:
        return "not a public address", ip_network(address)
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address a host names directly, read the way getaddrinfo reads it; None for a name.

    Brackets and one trailing dot are ignored, so `[::1]` and `127.0.0.1.` count as addresses.
    """
    bare = host.removeprefix("[").removesuffix("]")
    bare = bare.removesuffix(".") if not bare.endswith("..") else bare
    try:
        return ip_address(bare)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(bare) and not bare.startswith("."):
        try:
            return IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def canonical_literal(host: str) -> bool:
    """True when a host that is an address is written the one usual way (dotted decimal)."""
    address = literal_address(host)
    if address is None:
        return True
    return host.removeprefix("[").removesuffix("]") == str(address) or address.version == 6


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    https_only: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DestinationPolicy:
        return cls(
            allowed_networks=tuple(settings.allowed_destination_networks),
            https_only=settings.env == "production" and not settings.allow_http_destinations,
        )

    def _allowed(self, address: IPAddress) -> bool:
        return any(
            address.version == network.version and address in network
            for network in self.allowed_networks
        )

    def refusal(self, address: IPAddress) -> tuple[str, IPNetwork] | None:
        """Why the relay may not connect to `address` and which network would allow it; None
        when it may connect."""
        if self._allowed(address):
            return None
        inner = embedded_ipv4(address) if isinstance(address, IPv6Address) else None
        if inner is None:
            return _category(address)
        # The packets end up at the IPv4 address, so it alone decides.
        if self._allowed(inner):
            return None
        refused = _category(inner)
        if refused is None:
            return None
        return f"which leads to {inner}, {refused[0]}", refused[1]

    def check_address(self, host: str, address: IPAddress) -> None:
        refused = self.refusal(address)
        if refused is None:
            return
        reason, network = refused
        bare = host.removeprefix("[").removesuffix("]")
        named = str(address) if bare == str(address) else f"{host} ({address})"
        raise DestinationBlocked(
            f"destination {named} is {reason}; the relay only delivers to public addresses. "
            f"To allow it, add its network to RELAY_ALLOWED_DESTINATION_NETWORKS (e.g. {network})"
        )

    def check_scheme(self, scheme: str) -> None:
        if scheme not in ("http", "https"):
            raise DestinationBlocked(f"scheme {scheme}:// is not allowed; use https://")
        if scheme == "http" and self.https_only:
            raise DestinationBlocked(
                "in production only https:// destinations are allowed; use https:// or set "
                "RELAY_ALLOW_HTTP_DESTINATIONS=true"
            )


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`, through the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def checked_addresses(
    host: str, port: int, *, policy: DestinationPolicy, resolver: Resolver
) -> Sequence[IPAddress]:
    """Resolves `host` and returns its addresses, all of them allowed.

    Raises DestinationBlocked if any address is refused: a name that answers with one public
    and one internal address is treated as hostile, not filtered. Raises OSError when the name
    does not resolve.
    """
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        addresses = []
        for text in await resolver(host, port):
            address = ip_address(text)
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
    for address in addresses:
        policy.check_address(host, address)
    return addresses
