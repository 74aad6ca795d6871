"""The HTTP transport deliveries go out through: every connection is checked and pinned.

The check happens where the socket is opened, not before the request: the name is resolved
once, every address it gives is checked, and the connection goes to one of those checked
addresses. A subscriber whose DNS answers a public address to a check and a private one to the
connection (DNS rebinding) therefore never gets the second lookup. TLS still verifies the
certificate against the URL's host name, because httpcore takes the server name from the URL,
not from the address connected to.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

import httpcore
import httpx
from httpcore._utils import is_socket_readable

from relay.core.netguard import DestinationPolicy, Resolver, checked_addresses, system_resolver

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves and checks the host, then connects to a checked address only."""

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await checked_addresses(
                host, port, policy=self.policy, resolver=self.resolver
            )
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return _PolledStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("deliveries never go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _PolledStream(httpcore.AsyncNetworkStream):
    """A connection's stream that answers httpcore's question "has the server closed this
    idle connection?", asked of every idle connection of a pool on every request, with one
    poll of its socket. Through anyio, each answer first built a table of all of the socket's
    attributes: a tenth of `relay serve`'s CPU at 100 deliveries/s."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self.inner = inner
        self.socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        # The TLS stream runs over the same socket, which httpcore polls for TLS too.
        return _PolledStream(await self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self.socket is not None:
            return is_socket_readable(self.socket)
        return self.inner.get_extra_info(info)


# Connections per shard of the pool: few enough that a scan of them all costs little.
SHARD_SIZE = 8


class _ShardStream:
    """A response body that gives its shard's slot back when it is closed."""

    def __init__(self, inner: AsyncIterable[bytes], release: Callable[[], None]) -> None:
        self.inner = inner
        self.release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            aclose = getattr(self.inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            if self.release is not None:
                self.release()
                self.release = None


class ShardedConnectionPool:
    """Several small httpcore pools in place of one large one.

    httpcore's pool walks all of its connections, asking each socket whether it is readable,
    on every request and on every response close, so one pool of 100 connections costs O(100)
    system calls per delivery (46 % of the worker's time in a profile). Small pools keep that
    walk short. Requests to one destination keep to the same shards (see `_shard_for`).
    """

    def __init__(self, make_pool: Callable[[int], httpcore.AsyncConnectionPool], size: int) -> None:
        self.sizes = [min(SHARD_SIZE, size - start) for start in range(0, size, SHARD_SIZE)]
        self.shards = [make_pool(shard_size) for shard_size in self.sizes]
        self.in_flight = [0] * len(self.shards)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        index = self._shard_for(request.url)
        self.in_flight[index] += 1

        def release() -> None:
            self.in_flight[index] -= 1

        try:
            response = await self.shards[index].handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, AsyncIterable)
        response.stream = _ShardStream(response.stream, release)
        return response

    def _shard_for(self, url: httpcore.URL) -> int:
        # A destination keeps to the same shards, so its idle connections are there to reuse:
        # its home shard first, the next ones while that is full, the least loaded when all are.
        count = len(self.shards)
        home = hash((url.scheme, url.host, url.port)) % count
        for step in range(count):
            index = (home + step) % count
            if self.in_flight[index] < self.sizes[index]:
                return index
        return min(range(count), key=lambda i: self.in_flight[i] / self.sizes[i])

    async def __aenter__(self) -> ShardedConnectionPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connection pool built on the guarded backend."""

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        limits: httpx.Limits,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(limits=limits, trust_env=False)
        self.policy = policy
        # httpx takes no network backend of its own, so the pool it just built is replaced by
        # pools configured the same way on top of the guarded backend.
        ssl_context = httpx.create_ssl_context(trust_env=False)
        backend = GuardedBackend(policy, resolver=resolver, inner=inner)
        total = limits.max_connections
        if total is None:
            raise ValueError("the delivery transport needs a connection cap (max_connections)")

        def make_pool(size: int) -> httpcore.AsyncConnectionPool:
            return httpcore.AsyncConnectionPool(
                ssl_context=ssl_context,
                max_connections=size,
                max_keepalive_connections=size,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=backend,
            )

        self._pool = ShardedConnectionPool(make_pool, total)  # type: ignore[assignment]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.policy.check_scheme(request.url.scheme)
        return await super().handle_async_request(request)
