"""Clients that hold connections instead of using them: stalled bodies on admin routes, one
address opening hundreds of sockets, a relay at its connection cap. Against a real `relay serve`
process, or uvicorn in-process with the same protocol, on 127.0.0.0/8 (every 127.x address is
local on Linux, so "another client" is another loopback address)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.processes import RelayServer, relay_env
from tests.support.relay import create_routestripe_source, post_routestripe, visit_event
from tests.support.server import serving

STALLED = 1000
# RELAY_MAX_CONNECTIONS_PER_CLIENT's default.
PER_CLIENT = 100
STALLED_HEAD = (
    b"POST /v1/sources HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


async def connect(
    address: tuple[str, int], source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*address, local_addr=(source, 0))


async def read_until_closed(reader: asyncio.StreamReader, *, within: float) -> bytes | None:
    """What the server sent before closing the connection; None if it was still open after
    `within` seconds."""
    received = b""
    try:
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                received += chunk
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return received


def status_and_json(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, json.loads(body)


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()


def enough_open_files(needed: int) -> None:
    """The test holds `needed` sockets; `relay serve`, started after, inherits the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        # CI runs as root, which may raise the hard limit too; this test never silently skips.
        hard = needed
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        pytest.fail(f"needs {needed} open files and cannot raise the limit to that: {exc}")


async def test_1000_stalled_admin_bodies_from_one_address_leave_room_for_a_vendor(
    engine: Any, module_database_url: str, tmp_path: Path
) -> None:
    """`engine` empties the tables; the requests go through the test's own `relay serve`."""
    enough_open_files(4 * STALLED)
    body_timeout = 5.0
    relay = RelayServer(
        relay_env(
            module_database_url,
            tmp_path / "data",
            RELAY_REQUEST_BODY_TIMEOUT=str(body_timeout),
            # Long, so no stalled socket is freed by the head timeout while the rest connect:
            # which of them are refused then depends on the per-client cap alone.
            RELAY_REQUEST_HEAD_TIMEOUT="120",
        ),
        tmp_path / "relay.log",
        dispatcher=False,
    )
    closed_at: list[float] = []
    refused = asyncio.Event()

    async def watch(reader: asyncio.StreamReader) -> bytes | None:
        answer = await read_until_closed(reader, within=90)
        if answer is not None:
            closed_at.append(time.monotonic())
            if len(closed_at) == STALLED - PER_CLIENT:
                refused.set()
        return answer

    writers: list[asyncio.StreamWriter] = []
    watchers: list[asyncio.Task[bytes | None]] = []
    async with asyncio.timeout(180), relay.running():
        async with relay.admin() as admin:
            await create_routestripe_source(admin)
        vendor = httpx.AsyncClient(
            base_url=relay.base_url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        )
        try:
            # The vendor's first webhook warms the ingest path; the one measured comes after.
            assert (await post_routestripe(vendor, [visit_event()])).status_code == 200
            for _ in range(STALLED):
                reader, writer = await connect(("127.0.0.1", relay.port))
                writers.append(writer)
                watchers.append(asyncio.create_task(watch(reader)))
            # Until the server has seen every connection (those past the cap close at once);
            # on a relay without a per-client cap that never happens, and the test goes on.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(refused.wait(), 30)
            for writer in writers:
                with contextlib.suppress(ConnectionError):
                    writer.write(STALLED_HEAD)
            stalled_at = time.monotonic()

            response = await post_routestripe(vendor, [visit_event()])
            elapsed = time.monotonic() - stalled_at
            assert response.status_code == 200, response.text
            assert elapsed < 1.0, f"the vendor's webhook took {elapsed:.2f} s"

            answers = await asyncio.gather(*watchers)
        finally:
            close_all(writers)
            for watcher in watchers:
                watcher.cancel()
            await vendor.aclose()

    # Every stalled socket is closed by the body deadline: here long before it, as an admin
    # route answers 401 from the headers and connections past the per-client cap are closed as
    # they open. The margin is for a slow machine, not for the relay.
    assert [answer for answer in answers if answer is None] == []
    assert max(closed_at) - stalled_at < body_timeout + 10
    answered = [status_and_json(answer) for answer in answers if answer]
    # The first RELAY_MAX_CONNECTIONS_PER_CLIENT were admitted and refused for their missing
    # token; the other 900 were closed unanswered.
    assert len(answered) == PER_CLIENT
    for status, headers, body in answered:
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
        assert headers["connection"] == "close"
    log = relay.log.read_text()
    assert log.count('"client_connection_limit"') == 1
    assert "Traceback" not in log


@pytest.fixture
async def tight(
    settings: Settings, module_database_url: str
) -> AsyncIterator[tuple[Settings, tuple[str, int]]]:
    limited = settings.model_copy(
        update={
            "request_head_timeout": 60.0,
            "request_body_timeout": 2.0,
            "max_connections_per_client": 5,
            "client_connection_limits": {IPv4Network("127.0.0.3/32"): 8},
        }
    )
    async with serving(limited, module_database_url) as address:
        yield limited, address


async def test_authenticated_admin_body_that_stalls_gets_408_by_the_deadline(
    tight: tuple[Settings, tuple[str, int]],
) -> None:
    _, address = tight
    reader, writer = await connect(address)
    writer.write(
        b"POST /v1/sources HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\nContent-Length: 1000\r\n\r\n{"
    )
    await writer.drain()
    started = time.monotonic()
    answer = await read_until_closed(reader, within=30)
    elapsed = time.monotonic() - started
    writer.close()

    assert answer, "the connection stayed open with a stalled body"
    status, headers, body = status_and_json(answer)
    assert status == 408
    assert body["error"] == {"code": "request_timeout", "message": "body not received within 2 s"}
    assert headers["connection"] == "close"
    assert elapsed >= 1.5


async def test_admin_request_without_a_token_gets_401_before_its_body(
    settings: Settings, module_database_url: str
) -> None:
    patient = settings.model_copy(update={"request_body_timeout": 120.0})
    async with serving(patient, module_database_url) as address:
        reader, writer = await connect(address)
        writer.write(STALLED_HEAD)
        await writer.drain()
        # Far below the 120 s body deadline: the answer does not wait for the body.
        answer = await read_until_closed(reader, within=30)
        writer.close()

    assert answer, "no answer until the body arrives"
    status, headers, body = status_and_json(answer)
    assert status == 401
    assert "missing credentials" in body["error"]["message"]
    assert headers["www-authenticate"] == "Bearer"
    assert headers["connection"] == "close"


async def test_one_address_holds_at_most_its_connection_limit_and_others_still_connect(
    tight: tuple[Settings, tuple[str, int]],
) -> None:
    _, address = tight
    writers: list[asyncio.StreamWriter] = []
    try:
        held = [await connect(address) for _ in range(5)]
        writers += [writer for _, writer in held]
        over_reader, over_writer = await connect(address)
        writers.append(over_writer)
        # Closed as it opened, without reading a request or answering one.
        assert await read_until_closed(over_reader, within=15) == b""
        # The five held are still served, and so is another address.
        for reader, writer in held[:1]:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        async with httpx.AsyncClient(
            base_url=f"http://{address[0]}:{address[1]}",
            transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"),
        ) as other:
            assert (await other.get("/healthz")).status_code == 200

        # Once one closes, the address may open another.
        held[1][1].close()
        await held[1][1].wait_closed()
        reader, writer = await eventually_admitted(address)
        writers.append(writer)

        # 127.0.0.3 has a network override of 8.
        overridden = [await connect(address, "127.0.0.3") for _ in range(8)]
        writers += [writer for _, writer in overridden]
        for reader, writer in overridden:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        ninth_reader, ninth_writer = await connect(address, "127.0.0.3")
        writers.append(ninth_writer)
        assert await read_until_closed(ninth_reader, within=15) == b""
    finally:
        close_all(writers)


async def eventually_admitted(
    address: tuple[str, int],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from 127.0.0.1 that the server keeps (its freed slot is released when the
    server sees the close, a moment after the client's)."""
    async with asyncio.timeout(15):
        while True:
            reader, writer = await connect(address)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                if (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200"):
                    return reader, writer
            writer.close()
            await asyncio.sleep(0.05)


async def test_at_the_connection_cap_the_answer_is_a_json_503_with_retry_after(
    settings: Settings, module_database_url: str
) -> None:
    capped = settings.model_copy(update={"max_connections": 5, "request_head_timeout": 60.0})
    async with serving(capped, module_database_url) as address:
        writers: list[asyncio.StreamWriter] = []
        try:
            for _ in range(5):
                _, writer = await connect(address)
                writers.append(writer)
            reader, writer = await connect(address, "127.0.0.2")
            writers.append(writer)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: relay\r\n\r\n")
            answer = await read_until_closed(reader, within=15)
        finally:
            close_all(writers)

    assert answer
    status, headers, body = status_and_json(answer)
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == "5"
    assert body["error"]["code"] == "over_capacity"
    assert "RELAY_MAX_CONNECTIONS" in body["error"]["message"]
