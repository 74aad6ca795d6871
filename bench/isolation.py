"""Isolation: a healthy subscriber's latency while other subscribers hang or trickle.

The relay is running already (its URL and admin token given). One scenario creates a healthy
subscription and `bad` misbehaving ones on a server of this module's, all wanting every
webhook, sends webhooks at a steady rate (bench/latency.py: POST sent -> delivery received at
the healthy subscriber, one monotonic clock), then deletes what it created. The misbehaving
server, a process of its own so that its connections never delay the clock, either accepts
each connection and never answers (`hang`), or answers one byte a second (`trickle`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx

from bench.latency import measure
from bench.procs import free_port

BEHAVIOURS = ("hang", "trickle")


class MisbehavingServer:
    """Reads each request and then never answers, or answers a byte a second."""

    def __init__(self, behaviour: str, port: int) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour is one of {', '.join(BEHAVIOURS)}, not {behaviour!r}")
        self.behaviour = behaviour
        self.port = port
        self.tasks: set[asyncio.Task[None]] = set()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            if self.behaviour == "hang":
                while await reader.read(65536):
                    pass
            else:
                answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                await reader.read(65536)
                for byte in answer:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)
        writer.close()

    def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve_forever(self) -> None:
        server = await asyncio.start_server(self._track, "127.0.0.1", self.port, backlog=4096)
        async with server:
            await server.serve_forever()


@contextlib.asynccontextmanager
async def misbehaving(behaviour: str) -> AsyncIterator[MisbehavingServer]:
    """The misbehaving server in a child process, listening when this yields."""
    server = MisbehavingServer(behaviour, free_port())
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.isolation", behaviour, f"--port={server.port}"
    )
    try:
        async with asyncio.timeout(20):
            while True:
                with contextlib.suppress(OSError):
                    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                    writer.close()
                    break
                await asyncio.sleep(0.05)
        yield server
    finally:
        process.terminate()
        await process.wait()


async def _create(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await api.post("/v1/subscriptions", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/subscriptions: {response.status_code} {response.text}")
    subscription_id: str = response.json()["id"]
    return subscription_id


async def _attempts(api: httpx.AsyncClient, subscription_id: str) -> list[dict[str, Any]]:
    response = await api.get(f"/v1/subscriptions/{subscription_id}/attempts", params={"limit": 100})
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def scenario(
    api: httpx.AsyncClient,
    ingest_url: str,
    *,
    bad: int,
    behaviour: str = "hang",
    bad_max_concurrency: int | None = None,
    rate: float,
    duration: float,
    warmup: float,
    first_id: int,
) -> dict[str, Any]:
    """One run; the healthy subscriber's latencies, and what the misbehaving ones got."""
    healthy_port = free_port()
    created = [await _create(api, {"url": f"http://127.0.0.1:{healthy_port}/hook"})]
    async with misbehaving(behaviour) as server:
        concurrency = (
            {} if bad_max_concurrency is None else {"max_concurrency": bad_max_concurrency}
        )
        bad_ids = [
            await _create(api, {"url": server.url(f"bad{number}"), **concurrency})
            for number in range(bad)
        ]
        created.extend(bad_ids)
        try:
            result = await measure(
                ingest_url,
                healthy_port,
                rate=rate,
                duration=duration,
                warmup=warmup,
                first_id=first_id,
            )
            attempts = [await _attempts(api, subscription_id) for subscription_id in bad_ids]
        finally:
            for subscription_id in created:
                await api.delete(f"/v1/subscriptions/{subscription_id}")
        result["bad"] = bad
        result["behaviour"] = behaviour
        result["bad_attempts"] = [len(made) for made in attempts]
        result["bad_timeouts"] = [
            sum(attempt["error_class"] == "timeout" for attempt in made) for made in attempts
        ]
    return result


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description="A misbehaving subscriber, for isolation runs.")
    parser.add_argument("behaviour", choices=BEHAVIOURS)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(MisbehavingServer(args.behaviour, args.port).serve_forever())


if __name__ == "__main__":
    main()
