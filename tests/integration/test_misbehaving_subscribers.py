"""Subscribers that misbehave at the socket level, over real sockets on 127.0.0.1: one accepts
the connection and never answers, two trickle their answer a byte a second (before and after
the status line), one answers with a 100 MB body. Each is cut off by the attempt's overall
deadline or the response cap, and a well-behaved subscriber in the same run is served
meanwhile. (A subscriber that answers slowly at the HTTP level: test_delivery.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.dispatcher.sender import RESPONSE_BODY_LIMIT
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    running_dispatcher,
    visit_event,
)
from tests.support.subscriber import Subscriber, eventually

HUGE = 100 * 1024 * 1024
CHUNK = 64 * 1024
EVENTS = 10
STUCK = ("silent", "trickle-head", "trickle-body")


class RawSubscriber:
    """A TCP server that reads each request properly (h11) and then misbehaves by path."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.closed_by_relay: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.base_url = ""

    def url(self, behaviour: str) -> str:
        return f"{self.base_url}/{behaviour}"

    async def _request_path(self, reader: asyncio.StreamReader) -> tuple[h11.Connection, str]:
        connection = h11.Connection(h11.SERVER)
        path = ""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(CHUNK))
            elif isinstance(event, h11.Request):
                path = event.target.decode().strip("/")
            elif isinstance(event, h11.EndOfMessage):
                return connection, path

    async def _write(self, writer: asyncio.StreamWriter, behaviour: str, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.bytes_sent[behaviour] += len(data)

    async def _misbehave(
        self,
        connection: h11.Connection,
        behaviour: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if behaviour == "silent":
            # Read until the relay gives up and closes; never a byte back.
            while await reader.read(CHUNK):
                pass
            return
        length = HUGE if behaviour == "huge" else 1000
        head = connection.send(
            h11.Response(status_code=200, headers=[("content-length", str(length))])
        )
        assert head is not None
        if behaviour == "trickle-head":
            for byte in head:
                await self._write(writer, behaviour, bytes([byte]))
                await asyncio.sleep(1)
            return
        await self._write(writer, behaviour, head)
        if behaviour == "trickle-body":
            for _ in range(length):
                await self._write(writer, behaviour, b"x")
                await asyncio.sleep(1)
            return
        zeros = bytes(CHUNK)
        while self.bytes_sent[behaviour] < HUGE:
            await self._write(writer, behaviour, zeros)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        behaviour = "unknown"
        try:
            connection, behaviour = await self._request_path(reader)
            self.accepted[behaviour] += 1
            self.open[behaviour] += 1
            await self._misbehave(connection, behaviour, reader, writer)
            self.closed_by_relay[behaviour] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_relay[behaviour] += 1
        except asyncio.CancelledError:
            # Only the end of the test cancels a handler; the server is going away.
            if not self.stopping:
                raise
        finally:
            self.open[behaviour] -= 1
            writer.close()
            self.tasks.discard(task)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RawSubscriber]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.close()
            self.stopping = True
            for task in list(self.tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.gather(*self.tasks, return_exceptions=True)
                    await server.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[RawSubscriber]:
    async with RawSubscriber().running() as running:
        yield running


async def _subscribe(client: httpx.AsyncClient, url: str) -> str:
    # One attempt each: a retry would come long after the test is over.
    response = await client.post("/v1/subscriptions", json={"url": url, "retry_schedule": [3600]})
    assert response.status_code == 201, response.text
    subscription_id: str = response.json()["id"]
    return subscription_id


async def _attempts(client: httpx.AsyncClient, subscription_id: str) -> list[dict[str, Any]]:
    page = await client.get(
        "/v1/deliveries", params={"subscription_id": subscription_id, "limit": 100}
    )
    assert page.status_code == 200, page.text
    attempts: list[dict[str, Any]] = []
    for summary in page.json()["data"]:
        detail = await client.get(f"/v1/deliveries/{summary['id']}")
        attempts.extend(detail.json()["attempts"])
    return attempts


async def test_stuck_and_flooding_subscribers_are_cut_off_and_others_served_meanwhile(
    client: httpx.AsyncClient,
    raw: RawSubscriber,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    bad = {behaviour: await _subscribe(client, raw.url(behaviour)) for behaviour in STUCK}
    huge = await _subscribe(client, raw.url("huge"))
    await _subscribe(client, subscriber.url("/fast"))
    assert (
        await post_routestripe(client, [visit_event() for _ in range(EVENTS)])
    ).status_code == 200

    timeout = 20.0
    config = settings.model_copy(
        update={"delivery_timeout": timeout, "dispatcher_poll_interval": 0.5, "shutdown_grace": 1}
    )
    async with running_dispatcher(config, session_factory, module_database_url):
        await subscriber.wait_for(EVENTS, path="/fast", within=timeout)
        # The fast subscriber is done while every stuck connection is still open, unanswered.
        await eventually(lambda: all(raw.open[behaviour] >= 1 for behaviour in STUCK), within=5)
        for behaviour, subscription_id in bad.items():
            assert await _attempts(client, subscription_id) == [], behaviour

        async def all_recorded() -> bool:
            counts = [len(await _attempts(client, sid)) for sid in [*bad.values(), huge]]
            return counts == [EVENTS] * (len(bad) + 1)

        await eventually(all_recorded, within=timeout + 40)

    for behaviour, subscription_id in bad.items():
        attempts = await _attempts(client, subscription_id)
        assert {attempt["error_class"] for attempt in attempts} == {"timeout"}, behaviour
        # A status line that arrived without its whole body is not trusted as a success.
        assert {attempt["response_status"] for attempt in attempts} == {None}, behaviour
        assert raw.accepted[behaviour] >= EVENTS, behaviour
    # The relay closed every connection it gave up on (a trickler notices at its next byte).
    await eventually(lambda: all(raw.open[behaviour] == 0 for behaviour in STUCK), within=10)
    for behaviour in STUCK:
        assert raw.closed_by_relay[behaviour] == raw.accepted[behaviour], behaviour
    # Headers came byte by byte, and the attempt still ended at its deadline.
    assert 1 <= raw.bytes_sent["trickle-head"] < EVENTS * 40

    flooded = await _attempts(client, huge)
    assert {attempt["response_status"] for attempt in flooded} == {200}
    assert all(len(attempt["response_body"]) <= RESPONSE_BODY_LIMIT for attempt in flooded)
    await eventually(lambda: raw.open["huge"] == 0, within=10)
    # Every 100 MB answer was abandoned after the cap: the relay closed the connection long
    # before the subscriber could push the whole body through.
    assert raw.closed_by_relay["huge"] == raw.accepted["huge"]
    assert raw.bytes_sent["huge"] < raw.accepted["huge"] * HUGE // 4
