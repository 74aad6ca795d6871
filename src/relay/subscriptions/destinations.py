"""What a subscriber URL and its custom headers may be."""

from __future__ import annotations

import asyncio
import re
from ipaddress import IPv4Address
from urllib.parse import urlsplit, urlunsplit

import httpx

from relay.core.netguard import (
    DestinationBlocked,
    DestinationPolicy,
    Resolver,
    bare_host,
    checked_addresses,
    literal_address,
    system_resolver,
)

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Headers the relay sets itself; a subscription may not replace them, or signatures and
# framing could no longer be trusted.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "accept-encoding",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)


def normalised_url(url: str) -> str:
    """`url` with its host written the one usual way, else unchanged.

    An IPv4 address in another notation (2130706433, 0x7f.1, 0177.0.0.1, 127.1) becomes dotted
    decimal, read the way the resolver reads it, and a name loses the trailing dot that makes it
    absolute (example.com. is example.com). URL parsers and resolvers disagree on these
    notations (httpx refuses 0177.0.0.1, getaddrinfo reads it as 127.0.0.1), so none is stored:
    what is checked, stored, shown and connected to is the same host.
    """
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return url
    userinfo, at, hostport = netloc.rpartition("@")
    if hostport.startswith("["):
        return url
    host, colon, port = hostport.partition(":")
    address = literal_address(host)
    if isinstance(address, IPv4Address):
        written = str(address)
    elif address is None and host.endswith(".") and not host.endswith(".."):
        written = bare_host(host)
    else:
        return url
    if written == host:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{written}{colon}{port}"))


def validate_url(url: str) -> str:
    if len(url) > 2048:
        raise ValueError("url is longer than 2048 characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"url is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise ValueError("url must start with http:// or https://")
    if not parsed.host:
        raise ValueError("url must be absolute, with a host (e.g. https://example.com/hooks)")
    if parsed.userinfo:
        raise ValueError("url must not contain credentials; put them in the subscription's headers")
    if parsed.fragment:
        raise ValueError("url must not contain a #fragment")
    if "%" in parsed.host:
        raise ValueError(
            "url host must not contain '%' (percent-encoding or an IPv6 zone id); write the "
            "host name or address plainly"
        )
    return url


# A slow resolver must not hold the admin request; the check at send time still applies.
RESOLVE_TIMEOUT = 5.0


class DestinationChecker:
    """Checks a subscriber URL against the destination policy when it is created or changed.

    The host is resolved through the event loop and every address it gives must be allowed. A
    name that does not resolve (yet) is accepted: the same check runs again, authoritatively,
    each time a delivery connects, so this one only gives early feedback.
    """

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        resolver: Resolver = system_resolver,
        resolve_timeout: float = RESOLVE_TIMEOUT,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.resolve_timeout = resolve_timeout

    async def check(self, url: str) -> str:
        """Returns `url`, its host normalised (see `normalised_url`), if it may be delivered to;
        raises ValueError saying why not."""
        url = validate_url(normalised_url(url))
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            self.policy.check_scheme(parsed.scheme)
            async with asyncio.timeout(self.resolve_timeout):
                await checked_addresses(
                    parsed.host, port, policy=self.policy, resolver=self.resolver
                )
        except DestinationBlocked as exc:
            raise ValueError(str(exc)) from exc
        except (OSError, TimeoutError):
            # Unresolvable for now: accepted, the check at send time decides (see above).
            pass
        return url


def validate_headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > 50:
        raise ValueError("at most 50 custom headers")
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"header name '{name}' is not a valid HTTP header name")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith("x-relay-"):
            raise ValueError(f"header '{name}' is set by the relay and cannot be overridden")
        if any(char in value for char in "\r\n\0") or len(value) > 4096:
            raise ValueError(f"header '{name}' has a value with line breaks or over 4096 chars")
    return headers
