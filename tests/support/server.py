"""The relay served by a real uvicorn server on 127.0.0.1, as `relay serve` runs it, for tests
that need real sockets: hostile clients, schemathesis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn

from relay.app import create_app
from relay.core.serving import guarded_protocol
from relay.core.settings import Settings


@contextlib.asynccontextmanager
async def serving(settings: Settings, database_url: str) -> AsyncIterator[tuple[str, int]]:
    """The relay behind uvicorn with the protocol and limits `relay serve` uses."""
    app = create_app(settings, database_url=database_url)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        http=guarded_protocol(settings),
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(15):
        while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event to await
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield "127.0.0.1", port
    finally:
        # A graceful exit, so the app's lifespan shutdown runs and disposes of its engine.
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
