"""The latency figures' vendor client, against real servers on loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import h11
import pytest
import uvicorn
from bench.http1 import Vendor
from bench.procs import free_port


class Recorder:
    """An ASGI subscriber that keeps every body and can ask for the connection's close."""

    def __init__(self, *, close: bool = False) -> None:
        self.bodies: list[bytes] = []
        self.close = close

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        self.bodies.append(b"".join(chunks))
        headers = [(b"connection", b"close")] if self.close else []
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": b"accepted"})


@contextlib.asynccontextmanager
async def serving(app: Recorder) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event to await
            await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


async def test_concurrent_posts_each_arrive_once_and_connections_are_reused() -> None:
    app = Recorder()
    async with serving(app) as port:
        vendor = Vendor("127.0.0.1", port, "/hooks", {"Authorization": "Bearer t"})
        try:
            async with asyncio.timeout(20):
                bodies = [f'{{"n": {number}}}'.encode() for number in range(64)]
                statuses = await asyncio.gather(*(vendor.post(body) for body in bodies))
                opened_for_burst = vendor.opened
                for body in bodies:
                    assert await vendor.post(body) == 202
        finally:
            vendor.close()
    assert statuses == [202] * 64
    assert sorted(app.bodies) == sorted(bodies * 2)
    assert opened_for_burst <= 64
    # The sequential posts found the burst's connections idle: none was opened for them.
    assert vendor.opened == opened_for_burst


async def test_a_connection_the_server_closes_is_not_reused() -> None:
    app = Recorder(close=True)
    async with serving(app) as port:
        vendor = Vendor("127.0.0.1", port, "/hooks", {})
        try:
            async with asyncio.timeout(20):
                statuses = [await vendor.post(b"{}") for _ in range(5)]
        finally:
            vendor.close()
    assert statuses == [202] * 5
    assert vendor.opened == 5
    assert len(app.bodies) == 5


async def test_a_response_cut_short_fails_its_post_and_the_next_one_reconnects() -> None:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        await reader.readuntil(b"\r\n\r\n")
        if served == 1:
            # Promises ten bytes, sends two, hangs up.
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    vendor = Vendor("127.0.0.1", port, "/hooks", {})
    try:
        async with asyncio.timeout(10):
            with pytest.raises((OSError, h11.ProtocolError)):
                await vendor.post(b"{}")
            assert await vendor.post(b"{}") == 200
    finally:
        vendor.close()
        server.close()
        await server.wait_closed()
    assert vendor.opened == 2
