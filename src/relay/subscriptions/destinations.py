"""What a subscriber URL and its custom headers may be."""

from __future__ import annotations

import re

import httpx

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Headers the relay sets itself; a subscription may not replace them, or signatures and
# framing could no longer be trusted.
RESERVED_HEADERS = frozenset(
    {
        "host",
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
