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

# Every entry of the IANA IPv4 and IPv6 Special-Purpose Address Registries (as of 2025), with
# the RFC that defines it, plus multicast and, for IPv6, the parts of the address space outside
# global unicast (2000::/3). Each is refused unless RELAY_ALLOWED_DESTINATION_NETWORKS opens it.
# `ipaddress.is_global` is not used: its answer has changed between Python releases, it counts
# multicast as global and it misses ::ffff:0:0:0/96. Where the registry marks an entry
# "globally reachable" it is refused all the same, for the reason given beside it.
#
# Three encodings are not in this table because they are judged by the IPv4 address they carry
# (see `embedded_ipv4`): IPv4-mapped ::ffff:0:0/96 (RFC 4291), the well-known NAT64 prefix
# 64:ff9b::/96 (RFC 6052) and 6to4 2002::/16 (RFC 3056): the packets end up at that address.
_ANYCAST = "an anycast service address (the nearest instance answers, maybe a local one)"
_SPECIAL_PURPOSE: tuple[tuple[str, str, str], ...] = (
    # IPv4 Special-Purpose Address Registry.
    ("0.0.0.0/8", "a 'this network' address", "RFC 791"),
    ("0.0.0.0/32", "an unspecified ('this host') address", "RFC 1122"),
    ("10.0.0.0/8", "a private-use address", "RFC 1918"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address", "RFC 6598"),
    ("127.0.0.0/8", "a loopback address", "RFC 1122"),
    ("169.254.0.0/16", "a link-local address (cloud metadata services live here)", "RFC 3927"),
    ("172.16.0.0/12", "a private-use address", "RFC 1918"),
    ("192.0.0.0/24", "an IETF protocol assignment address", "RFC 6890"),
    ("192.0.0.0/29", "an IPv4 service continuity address", "RFC 7335"),
    ("192.0.0.8/32", "the IPv4 dummy address", "RFC 7600"),
    # Globally reachable in the registry, but anycast to the nearest PCP or TURN server, which
    # is usually the relay's own router or firewall: no subscriber lives there.
    ("192.0.0.9/32", f"{_ANYCAST}, Port Control Protocol", "RFC 7723"),
    ("192.0.0.10/32", f"{_ANYCAST}, TURN", "RFC 8155"),
    ("192.0.0.170/31", "a NAT64/DNS64 discovery address", "RFC 8880"),
    ("192.0.2.0/24", "a documentation address", "RFC 5737"),
    # Globally reachable anycast DNS sinks and multicast relays: no webhook endpoint lives on
    # them, and an organisation may run its own instance inside its network.
    ("192.31.196.0/24", f"{_ANYCAST}, AS112 DNS", "RFC 7535"),
    ("192.52.193.0/24", f"{_ANYCAST}, AMT multicast relay", "RFC 7450"),
    ("192.88.99.0/24", "a deprecated 6to4 relay anycast address", "RFC 7526"),
    ("192.168.0.0/16", "a private-use address", "RFC 1918"),
    ("192.175.48.0/24", f"{_ANYCAST}, AS112 DNS", "RFC 7534"),
    ("198.18.0.0/15", "a benchmarking address", "RFC 2544"),
    ("198.51.100.0/24", "a documentation address", "RFC 5737"),
    ("203.0.113.0/24", "a documentation address", "RFC 5737"),
    ("240.0.0.0/4", "a reserved address", "RFC 1112"),
    ("255.255.255.255/32", "the limited broadcast address", "RFC 919"),
    # IPv4 multicast (not in the registry): HTTP runs over TCP, which has no multicast.
    ("224.0.0.0/4", "a multicast address", "RFC 5771"),
    # IPv6 Special-Purpose Address Registry.
    ("::/128", "an unspecified address", "RFC 4291"),
    ("::1/128", "a loopback address", "RFC 4291"),
    ("64:ff9b:1::/48", "a local-use NAT64 address", "RFC 8215"),
    ("100::/64", "a discard-only address", "RFC 6666"),
    ("100:0:0:1::/64", "a dummy IPv6 prefix address", "RFC 9780"),
    ("2001::/23", "an IETF protocol assignment address", "RFC 2928"),
    # A tunnel whose far end is encoded (obfuscated) in the address; where it leads cannot be
    # judged from the address alone.
    ("2001::/32", "a Teredo tunnel address", "RFC 4380"),
    ("2001:1::1/128", f"{_ANYCAST}, Port Control Protocol", "RFC 7723"),
    ("2001:1::2/128", f"{_ANYCAST}, TURN", "RFC 8155"),
    ("2001:1::3/128", f"{_ANYCAST}, DNS-SD service registration", "RFC 9665"),
    ("2001:2::/48", "a benchmarking address", "RFC 5180"),
    ("2001:3::/32", f"{_ANYCAST}, AMT multicast relay", "RFC 7450"),
    ("2001:4:112::/48", f"{_ANYCAST}, AS112 DNS", "RFC 7535"),
    # Globally reachable in the registry, but these are cryptographic identifiers, not
    # locators: nothing routes HTTP to them.
    ("2001:10::/28", "a deprecated ORCHID identifier", "RFC 4843"),
    ("2001:20::/28", "an ORCHIDv2 identifier, not a routable address", "RFC 7343"),
    ("2001:30::/28", "a drone remote ID entity tag, not a routable address", "RFC 9374"),
    ("2001:db8::/32", "a documentation address", "RFC 3849"),
    ("2620:4f:8000::/48", f"{_ANYCAST}, AS112 DNS", "RFC 7534"),
    ("3fff::/20", "a documentation address", "RFC 9637"),
    ("5f00::/16", "a segment routing (SRv6) address", "RFC 9602"),
    ("fc00::/7", "a unique local (private) address", "RFC 4193"),
    ("fe80::/10", "a link-local address", "RFC 4291"),
    # IPv6 Address Space Registry: everything outside global unicast 2000::/3 that is not
    # above. The first two carry an IPv4 address, but no IPv4 network opens them: neither is
    # routed to that address by any host today.
    ("::/96", "a deprecated IPv4-compatible address", "RFC 4291"),
    ("::ffff:0:0:0/96", "an IPv4-translated address", "RFC 2765"),
    ("::/8", "an address reserved by the IETF", "RFC 4291"),
    ("100::/8", "an address reserved by the IETF", "RFC 4291"),
    ("200::/7", "an address reserved by the IETF", "RFC 4048"),
    ("400::/6", "an address reserved by the IETF", "RFC 4291"),
    ("800::/5", "an address reserved by the IETF", "RFC 4291"),
    ("1000::/4", "an address reserved by the IETF", "RFC 4291"),
    ("4000::/3", "an address reserved by the IETF", "RFC 4291"),
    ("6000::/3", "an address reserved by the IETF", "RFC 4291"),
    ("8000::/3", "an address reserved by the IETF", "RFC 4291"),
    ("a000::/3", "an address reserved by the IETF", "RFC 4291"),
    ("c000::/3", "an address reserved by the IETF", "RFC 4291"),
    ("e000::/4", "an address reserved by the IETF", "RFC 4291"),
    ("f000::/5", "an address reserved by the IETF", "RFC 4291"),
    ("f800::/6", "an address reserved by the IETF", "RFC 4291"),
    ("fe00::/9", "an address reserved by the IETF", "RFC 4291"),
    ("fec0::/10", "a deprecated site-local address", "RFC 3879"),
    ("ff00::/8", "a multicast address", "RFC 4291"),
)
# Most specific first, so an address is named by the narrowest entry that holds it.
_REFUSED: tuple[tuple[IPNetwork, str], ...] = tuple(
    sorted(
        ((ip_network(network), f"{label} ({rfc})") for network, label, rfc in _SPECIAL_PURPOSE),
        key=lambda entry: -entry[0].prefixlen,
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")
# RFC 6761: these names are loopback, whatever a DNS server answers for them.
_LOOPBACK_NAME_ADDRESSES = (IPv4Address("127.0.0.1"), IPv6Address("::1"))
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
    for network, label in _REFUSED:
        if address.version == network.version and address in network:
            return label, network
    return None


def bare_host(host: str) -> str:
    """The host without brackets and without the one trailing dot that makes a name absolute:
    `localhost.` is `localhost`, `127.0.0.1.` is `127.0.0.1`."""
    bare = host.removeprefix("[").removesuffix("]")
    return bare.removesuffix(".") if not bare.endswith("..") else bare


def literal_address(host: str) -> IPAddress | None:
    """The address a host names directly, read the way getaddrinfo reads it; None for a name."""
    bare = bare_host(host)
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


def is_loopback_name(host: str) -> bool:
    """`localhost` and any name under it (RFC 6761), in any case, with or without the dot."""
    name = bare_host(host).lower()
    return name == "localhost" or name.endswith(".localhost")


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
    and one internal address is treated as hostile, not filtered. Names under `localhost` are
    not looked up (RFC 6761). Raises OSError when the name does not resolve.
    """
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    elif is_loopback_name(host):
        addresses = list(_LOOPBACK_NAME_ADDRESSES)
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
