"""The guarded transport: resolve once, check every address, connect only to a checked one.

The network is replaced by httpcore's mock backend wrapped to record where the relay tried to
connect; name resolution is a fake that can answer differently each time (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from ipaddress import IPv4Network

import httpcore
import httpx
import pytest

from relay.core.netguard import DestinationPolicy
from relay.dispatcher.sender import (
    IDLE_CONNECTION_EXPIRY,
    RESPONSE_BODY_LIMIT,
    AttemptResult,
    DeliveryClient,
    OutgoingDelivery,
    create_client,
    send,
)
from relay.dispatcher.transport import GuardedTransport, ShardedConnectionPool, SocketOption
from tests.support.subscriber import eventually

OK = [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\n", b"ok"]


class RecordingStream(httpcore.AsyncMockStream):
    def __init__(self, buffer: list[bytes], backend: RecordingBackend) -> None:
        super().__init__(buffer)
        self.backend = backend

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.backend.written += buffer

    async def start_tls(
        self,
        ssl_context: object,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        self.backend.tls_server_names.append(server_hostname)
        return self


class RecordingBackend(httpcore.AsyncMockBackend):
    def __init__(self, buffer: list[bytes], *, refuse: Sequence[str] = ()) -> None:
        super().__init__(buffer)
        self.refuse = set(refuse)
        self.connected: list[tuple[str, int]] = []
        self.tls_server_names: list[str | None] = []
        self.written = b""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        if host in self.refuse:
            raise httpcore.ConnectError(f"connection to {host} refused")
        return RecordingStream(list(self._buffer), self)


class ScriptedResolver:
    """Answers each lookup with the next list of addresses; the last one repeats."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if not self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def delivery(url: str) -> OutgoingDelivery:
    return OutgoingDelivery(
        url=url,
        body=b'{"type":"relay.ping"}',
        event_id="evt_1",
        event_type="relay.ping",
        delivery_id="dlv_1",
        attempt_number=1,
        secrets=["whsec_" + "A" * 32],
        custom_headers={},
    )


async def attempt(
    url: str,
    resolver: ScriptedResolver,
    backend: RecordingBackend,
    policy: DestinationPolicy | None = None,
) -> AttemptResult:
    transport = GuardedTransport(
        policy or DestinationPolicy(),
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=0),
        resolver=resolver,
        inner=backend,
    )
    async with contextlib.aclosing(DeliveryClient(transport)) as client:
        return await send(client, delivery(url), attempt_timeout=5.0)


async def test_a_public_name_connects_to_the_checked_address_with_tls_for_the_name() -> None:
    resolver = ScriptedResolver(["93.184.215.14"])
    backend = RecordingBackend(OK)
    result = await attempt("https://hooks.example.com/in", resolver, backend)
    assert result.status_code == 200, result.error_message
    assert resolver.asked == ["hooks.example.com"]
    assert backend.connected == [("93.184.215.14", 443)]
    # The certificate is checked against the name, and the request names it too.
    assert backend.tls_server_names == ["hooks.example.com"]
    assert b"\r\nHost: hooks.example.com\r\n" in backend.written


async def test_dns_rebinding_to_a_private_address_is_blocked_without_connecting() -> None:
    # Public at the first lookup (as when the subscription was created), private after.
    resolver = ScriptedResolver(["93.184.215.14"], ["169.254.169.254"])
    backend = RecordingBackend(OK)
    first = await attempt("http://rebind.example.com/", resolver, backend)
    assert first.status_code == 200
    second = await attempt("http://rebind.example.com/", resolver, backend)
    assert second.status_code is None
    assert second.error_class == "destination_blocked"
    assert second.error_message is not None
    assert "rebind.example.com (169.254.169.254) is a link-local address" in second.error_message
    assert backend.connected == [("93.184.215.14", 80)]


async def test_one_private_address_among_public_ones_blocks_the_name() -> None:
    resolver = ScriptedResolver(["93.184.215.14", "2606:4700::1", "10.0.0.7"])
    backend = RecordingBackend(OK)
    result = await attempt("https://mixed.example.com/", resolver, backend)
    assert result.error_class == "destination_blocked"
    assert result.error_message is not None
    assert "10.0.0.7" in result.error_message
    assert backend.connected == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[::1]/",
        "http://0/",
    ],
)
async def test_literal_addresses_are_checked_at_send_time_too(url: str) -> None:
    resolver = ScriptedResolver(["93.184.215.14"])
    backend = RecordingBackend(OK)
    result = await attempt(url, resolver, backend)
    assert result.error_class == "destination_blocked", result.error_message
    assert backend.connected == []
    assert resolver.asked == []


async def test_an_allowed_network_is_connected_to() -> None:
    policy = DestinationPolicy(allowed_networks=(IPv4Network("127.0.0.0/8"),))
    backend = RecordingBackend(OK)
    result = await attempt("http://2130706433:9000/", ScriptedResolver(), backend, policy)
    assert result.status_code == 200
    assert backend.connected == [("127.0.0.1", 9000)]


async def test_the_next_checked_address_is_tried_when_one_refuses() -> None:
    resolver = ScriptedResolver(["93.184.215.14", "93.184.215.15"])
    backend = RecordingBackend(OK, refuse=["93.184.215.14"])
    result = await attempt("http://two.example.com/", resolver, backend)
    assert result.status_code == 200
    assert backend.connected == [("93.184.215.14", 80), ("93.184.215.15", 80)]


async def test_a_name_that_does_not_resolve_is_a_connection_error() -> None:
    backend = RecordingBackend(OK)
    result = await attempt("https://gone.example.com/", ScriptedResolver(), backend)
    assert result.error_class == "ConnectError"
    assert result.error_message is not None
    assert "cannot resolve gone.example.com" in result.error_message
    assert backend.connected == []


async def test_plain_http_is_blocked_in_production() -> None:
    backend = RecordingBackend(OK)
    result = await attempt(
        "http://hooks.example.com/",
        ScriptedResolver(["93.184.215.14"]),
        backend,
        DestinationPolicy(https_only=True),
    )
    assert result.error_class == "destination_blocked"
    assert result.error_message is not None
    assert "RELAY_ALLOW_HTTP_DESTINATIONS" in result.error_message
    assert backend.connected == []


async def test_a_redirect_is_the_answer_not_followed() -> None:
    redirect = [
        b"HTTP/1.1 302 Found\r\n",
        b"Location: http://169.254.169.254/latest/meta-data\r\nContent-Length: 0\r\n\r\n",
    ]
    backend = RecordingBackend(redirect)
    result = await attempt(
        "http://hooks.example.com/", ScriptedResolver(["93.184.215.14"]), backend
    )
    assert result.status_code == 302
    assert backend.connected == [("93.184.215.14", 80)]


async def test_a_compressed_answer_is_neither_asked_for_nor_decompressed() -> None:
    # 20 MB of zeros in about 20 KB: decompressing one network read would allocate megabytes.
    bomb = gzip.compress(bytes(20 * 1024 * 1024))
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"
    chunks = [bomb[start : start + 4096] for start in range(0, len(bomb), 4096)]
    backend = RecordingBackend([head.encode(), *chunks])
    result = await attempt(
        "http://hooks.example.com/", ScriptedResolver(["93.184.215.14"]), backend
    )
    assert result.status_code == 200
    assert b"\r\naccept-encoding: identity\r\n" in backend.written.lower()
    assert result.response_body is not None
    assert len(result.response_body) <= RESPONSE_BODY_LIMIT
    # The excerpt is the compressed bytes as they came (gzip's magic first), not zeros.
    assert result.response_body.startswith("\x1f")


Answering = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def local_subscriber(answer: Answering) -> AsyncIterator[tuple[DeliveryClient, str]]:
    """A raw subscriber on a loopback socket, and the relay's own delivery client allowed to
    reach it: what goes over the wire is real, byte for byte."""
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    policy = DestinationPolicy(allowed_networks=(IPv4Network("127.0.0.0/8"),))
    client = create_client(max_connections=2, policy=policy)
    try:
        yield client, f"http://127.0.0.1:{port}"
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_proxy_settings_in_the_environment_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # If the client obeyed these, every request would go to a port nothing listens on.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{unused.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async with local_subscriber(answer) as (client, base_url):
        result = await send(client, delivery(f"{base_url}/in"), attempt_timeout=5.0)
    assert result.status_code == 204, result.error_message


async def test_a_cookie_one_subscriber_sets_is_never_sent_with_a_later_delivery() -> None:
    # Two subscriptions on one host (two tenants of one platform, say) must not see each
    # other's cookies, nor one see its own again: every delivery goes out alike.
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: tenant=first; Path=/\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    async with local_subscriber(answer) as (client, base_url):
        for path in ("/first", "/second", "/first"):
            url = f"{base_url}{path}"
            result = await send(client, delivery(url), attempt_timeout=5.0)
            assert result.status_code == 200, result.error_message
    assert len(requests) == 3
    assert not any(b"\r\ncookie:" in request.lower() for request in requests), requests


async def test_an_idle_connection_the_subscriber_closed_is_not_reused() -> None:
    # The subscriber answers as if keeping the connection, then closes it while it is idle:
    # the next delivery must notice (the socket reads as closed) and open a new connection,
    # not write into the closed one and fail with a ReadError.
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    async with local_subscriber(answer) as (client, base_url):
        results = []
        for _ in range(3):
            url = f"{base_url}/in"
            results.append(await send(client, delivery(url), attempt_timeout=5.0))
            await asyncio.sleep(0.3)
    assert [result.status_code for result in results] == [200, 200, 200], [
        result.error_message for result in results
    ]
    assert connections == 3


class GatedBackend(RecordingBackend):
    """Answers only once `gate` opens, so requests pile up in flight."""

    def __init__(self, buffer: list[bytes], gate: asyncio.Event) -> None:
        super().__init__(buffer)
        self.gate = gate
        self.gate_waiters: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.gate_waiters.append(host)
        await self.gate.wait()
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


async def test_the_pool_is_split_into_small_shards_that_share_the_load_and_the_cap() -> None:
    gate = asyncio.Event()
    # Each mock connection answers once, so it says so: the waiting requests get new ones.
    answer_once = [b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\nConnection: close\r\n\r\n", b"ok"]
    backend = GatedBackend(answer_once, gate)
    transport = GuardedTransport(
        DestinationPolicy(),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=0),
        resolver=ScriptedResolver(["93.184.215.14"]),
        inner=backend,
    )
    pool = transport._pool
    assert isinstance(pool, ShardedConnectionPool)
    assert [len(shard.connections) for shard in pool.shards] == [0, 0, 0]
    assert sum(shard._max_connections for shard in pool.shards) == 20
    async with contextlib.aclosing(DeliveryClient(transport)) as client:
        sends = [
            asyncio.create_task(
                send(client, delivery("http://hooks.example.com/in"), attempt_timeout=5.0)
            )
            for _ in range(30)
        ]
        await eventually(
            lambda: sum(pool.in_flight) == 30 and len(backend.gate_waiters) == 20, within=10
        )
        # Every shard opens all the connections it may, no more: 20 in all, 10 requests wait.
        assert [len(shard.connections) for shard in pool.shards] == [8, 8, 4]
        assert sum(pool.in_flight) == 30
        gate.set()
        results = await asyncio.gather(*sends)
    assert [result.status_code for result in results] == [200] * 30
    assert pool.in_flight == [0, 0, 0]


async def test_a_connection_idle_past_the_expiry_is_not_reused() -> None:
    # The subscriber keeps each connection open for 5 s of idleness, as uvicorn does; the
    # client must not write a request on one that old, the moment the server may close it.
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, TimeoutError):
            while True:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
                length = int(
                    next(
                        line.split(b":")[1]
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    )
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    assert IDLE_CONNECTION_EXPIRY < 5.0
    async with local_subscriber(answer) as (client, base_url):
        first = await send(client, delivery(f"{base_url}/a"), attempt_timeout=5.0)
        again = await send(client, delivery(f"{base_url}/b"), attempt_timeout=5.0)
        assert connections == 1
        await asyncio.sleep(IDLE_CONNECTION_EXPIRY + 0.4)
        late = await send(client, delivery(f"{base_url}/c"), attempt_timeout=5.0)
    assert [first.status_code, again.status_code, late.status_code] == [200, 200, 200]
    assert connections == 2
