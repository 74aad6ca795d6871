"""`relay worker` as a real process: SIGKILL in the middle of a batch loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import ADMIN_TOKEN
from tests.support.relay import create_routestripe_source, post_routestripe, visit_event
from tests.support.subscriber import Answer, Subscriber, eventually

RELAY = str(Path(sys.executable).parent / "relay")


@pytest.fixture
def worker_env(module_database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_DATABASE_URL=module_database_url,
        RELAY_DATA_DIR=str(tmp_path / "data"),
        RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
        RELAY_ALLOWED_DESTINATION_NETWORKS="127.0.0.0/8",
        RELAY_LOG_FORMAT="json",
        RELAY_DISPATCHER_LEASE="PT5S",
        RELAY_DELIVERY_TIMEOUT="2",
        RELAY_DB_CONNECT_TIMEOUT="1",
        RELAY_DISPATCHER_POLL_INTERVAL="0.5",
    )
    return env


async def start_worker(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    handle = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            RELAY, "worker", env=env, stdout=handle, stderr=handle
        )
    finally:
        handle.close()


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    async with asyncio.timeout(10):
        await process.wait()


async def test_sigkill_mid_batch_then_a_new_worker_delivers_everything(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    worker_env: dict[str, str],
    session_factory: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/slow", then=Answer(200, delay=0.3))
    created = await client.post("/v1/subscriptions", json={"url": subscriber.url("/slow")})
    assert created.status_code == 201
    for _ in range(2):
        assert (
            await post_routestripe(client, [visit_event() for _ in range(50)])
        ).status_code == 200

    first = await start_worker(worker_env, tmp_path / "worker-1.log")
    try:
        await subscriber.wait_for(15, path="/slow", within=60)
        first.send_signal(signal.SIGKILL)
        await stop(first)
        async with session_factory() as session:
            leased = await session.scalar(
                text("SELECT count(*) FROM deliveries WHERE locked_by IS NOT NULL")
            )
        assert leased, "the kill should land with deliveries in flight"

        second = await start_worker(worker_env, tmp_path / "worker-2.log")
        try:
            await eventually(
                lambda: len({r.headers["webhook-id"] for r in subscriber.on("/slow")}) == 100,
                within=60,
            )
            await eventually(lambda: _all_succeeded(session_factory), within=20)
        finally:
            second.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                assert await second.wait() == 0
    finally:
        await stop(first)


async def _all_succeeded(session_factory: async_sessionmaker[AsyncSession]) -> bool:
    async with session_factory() as session:
        rows = (
            await session.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status"))
        ).all()
    return dict(rows) == {"succeeded": 100}  # type: ignore[arg-type]
