"""How `relay serve` meets its clients, on every route: the limits that keep a slow or greedy
client from holding the relay hostage.

- The HTTP/1.1 protocol (uvicorn's, subclassed): the request head must arrive within
  `RELAY_REQUEST_HEAD_TIMEOUT` and stay within the header limits; one client address holds at
  most `RELAY_MAX_CONNECTIONS_PER_CLIENT` connections (or its network's override); past
  `RELAY_MAX_CONNECTIONS` in all, a request gets the relay's JSON 503 with `Retry-After`.
- `BodyDeadlineMiddleware`: the whole body must arrive within `RELAY_REQUEST_BODY_TIMEOUT` of
  the first read, else 408; an answer given before the body was read closes the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from relay.core.errors import error_response
from relay.core.logging import get_logger
from relay.core.settings import Settings

log = get_logger(__name__)

# A full relay sheds load for a moment; vendors retry sooner than their own schedule would.
OVER_CAPACITY_RETRY_AFTER_SECONDS = 5
# IPv6 hosts get a /64 each: counting single addresses would let one host take them all.
IPV6_CLIENT_PREFIX = 64

_HEAD_END = b"\r\n\r\n"
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
)

Network = IPv4Network | IPv6Network

# Set in the request state when the HTTP parser refused the body (a malformed chunked encoding)
# and answered 400 itself; the app then reads a disconnect.
MALFORMED_BODY = "malformed_body"


def client_key(host: str) -> str | None:
    """What one client's connections are counted under: its address, or its IPv6 /64."""
    try:
        address = ip_address(host)
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


@dataclass(slots=True)
class ConnectionBook:
    """Open connections per client, shared by the connections of one server."""

    per_client: int
    overrides: list[tuple[Network, int]]
    open: dict[str, int] = field(default_factory=dict)
    refusing: set[str] = field(default_factory=set)
    at_capacity: bool = False

    @classmethod
    def of(cls, per_client: int, overrides: Iterable[tuple[Network, int]]) -> ConnectionBook:
        # Most specific network first, so a /32 inside a /24 gets its own limit.
        ordered = sorted(overrides, key=lambda item: item[0].prefixlen, reverse=True)
        return cls(per_client=per_client, overrides=ordered)

    def limit_for(self, host: str) -> int:
        address = ip_address(host)
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network, limit in self.overrides:
            if address.version == network.version and address in network:
                return limit
        return self.per_client

    def admit(self, host: str) -> str | None:
        """Counts a new connection from `host`; its key, or None when it is over its limit
        (or has no address to count, as on a Unix socket: then it is not counted)."""
        key = client_key(host)
        if key is None:
            return None
        held = self.open.get(key, 0)
        limit = self.limit_for(host)
        if held >= limit:
            if key not in self.refusing:
                # Once per episode, not once per refused connection: a flood stays one line.
                self.refusing.add(key)
                log.warning("client_connection_limit", client=key, limit=limit)
            raise _OverClientLimit
        self.open[key] = held + 1
        return key

    def release(self, key: str) -> None:
        held = self.open.pop(key, 1) - 1
        if held > 0:
            self.open[key] = held
        else:
            self.refusing.discard(key)


class _OverClientLimit(Exception):
    pass


class BodyTimeout(HTTPException):
    """Raised from `receive` when the body's deadline passes. An HTTPException, so FastAPI's own
    body reading lets it through to the error handlers (anything else becomes its 400)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408, f"body not received within {seconds:g} s", headers={"Connection": "close"}
        )


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class BodyDeadlineMiddleware:
    """Every route's body deadline. The clock starts at the app's first read of the body, so a
    route that answers without reading it (a 401, a 429) costs the client nothing; such an
    answer closes the connection, which would otherwise wait for the rest of that body."""

    def __init__(self, app: ASGIApp, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        body_done = not _declares_body(scope)

        async def timed_receive() -> Message:
            nonlocal deadline, body_done
            if body_done:
                # After the body, a read waits for the disconnect (streaming answers): no clock.
                return await receive()
            if deadline is None:
                deadline = loop.time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.timeout) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_done:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, timed_receive, closing_send)


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(
        503,
        "over_capacity",
        "the relay is at its connection limit (RELAY_MAX_CONNECTIONS); retry later",
        headers={
            "Retry-After": str(OVER_CAPACITY_RETRY_AFTER_SECONDS),
            "Connection": "close",
        },
    )
    await response(scope, receive, send)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, plus the limits it lacks.

    uvicorn bounds neither how long a client may take to send its headers (a slow-loris client
    holds a connection forever by sending a byte now and then) nor how many headers it sends
    or how large they are. Here the line and headers must arrive within `head_timeout`, and are
    refused with 431 past `max_header_count` headers or `max_header_bytes` bytes, before the
    parser buffers them.

    A connection over its client's limit is closed as it opens, before a byte is read: answering
    it would mean waiting for a head the greedy client controls. uvicorn's own cap
    (`limit_concurrency`) answers in plain text; this one answers with the relay's JSON error.
    """

    head_timeout: float = 10.0
    max_header_count: int = 100
    max_header_bytes: int = 32 * 1024
    max_connections: int = 1000
    book: ConnectionBook

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._client_key: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client is not None:
            try:
                self._client_key = self.book.admit(self.client[0])
            except _OverClientLimit:
                transport.close()
                return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self._client_key is not None:
            self.book.release(self._client_key)
            self._client_key = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            end = data.find(_HEAD_END)
            self._head_bytes += len(data) if end < 0 else end
            if self._head_bytes > self.max_header_bytes:
                self._refuse(f"request headers are larger than {self.max_header_bytes} bytes")
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        # The idle wait before a keep-alive request is uvicorn's keep-alive timeout; from the
        # first byte of the request on, the head must arrive within the head timeout.
        if self._head_timer is None:
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count <= self.max_header_count:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        if self._header_count > self.max_header_count:
            self._refuse(f"more than {self.max_header_count} request headers")
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # The parser refused the request. Mid-body the app is already reading it, and would see
        # only a disconnect: the request state tells it why.
        if not self._in_head and self.cycle is not None and not self.cycle.response_complete:
            self.cycle.scope.setdefault("state", {})[MALFORMED_BODY] = True
        super().send_400_response(msg)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        # The connections include this one: at the cap exactly, it is still served.
        if len(self.connections) > self.max_connections:
            if not self.book.at_capacity:
                self.book.at_capacity = True
                log.warning("connection_limit_reached", limit=self.max_connections)
            app = _over_capacity
        else:
            self.book.at_capacity = False
        super()._start_asgi_task(cycle, app)

    def _refuse(self, reason: str) -> None:
        self._disarm_head_timer()
        if self.transport.is_closing():
            return
        body = reason.encode()
        self.transport.write(
            _TOO_LARGE + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(settings: Settings) -> type[GuardedHttpProtocol]:
    """A protocol class for `uvicorn.run(http=...)` carrying the settings' limits, with a
    connection book of its own: one per server."""
    return type(
        "RelayHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "head_timeout": settings.request_head_timeout,
            "max_header_count": settings.max_header_count,
            "max_header_bytes": settings.max_header_bytes,
            "max_connections": settings.max_connections,
            "book": ConnectionBook.of(
                settings.max_connections_per_client, settings.client_connection_limits.items()
            ),
        },
    )
