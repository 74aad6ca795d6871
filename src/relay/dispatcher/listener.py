"""LISTEN on a dedicated connection so a delivery leaves milliseconds after its ingest commits.

A notification is only a hint to claim now; the dispatcher polls as well, so a lost
notification or a dead connection delays work by one poll interval at most.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from relay.core.logging import get_logger
from relay.outbox.transitions import NOTIFY_CHANNEL

log = get_logger(__name__)


def asyncpg_connect_args(database_url: str) -> dict[str, Any]:
    url = make_url(database_url)
    args: dict[str, Any] = {
        "user": url.username,
        "password": url.password,
        "database": url.database,
        "host": url.query.get("host") or url.host,
        "port": url.port,
    }
    return {key: value for key, value in args.items() if value is not None}


class NotificationListener:
    def __init__(self, database_url: str, wake: asyncio.Event) -> None:
        self.connect_args = asyncpg_connect_args(database_url)
        self.wake = wake
        self.connected = asyncio.Event()

    def _on_notify(self, *_args: object) -> None:
        self.wake.set()

    async def _listen_once(self) -> None:
        connection = await asyncpg.connect(**self.connect_args, timeout=10)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self.connected.set()
            # Whatever arrived while we were not listening is picked up by claiming now.
            self.wake.set()
            log.info("listener_connected", channel=NOTIFY_CHANNEL)
            await lost.wait()
        finally:
            self.connected.clear()
            if not connection.is_closed():
                await connection.close(timeout=2)
        raise ConnectionError("notification connection lost")

    async def run(self) -> None:
        """Listens until cancelled, reconnecting with backoff whenever the connection drops."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((OSError, asyncpg.PostgresError, ConnectionError)),
            wait=wait_exponential(multiplier=0.2, max=10),
            before_sleep=lambda state: log.warning(
                "listener_reconnecting",
                attempt=state.attempt_number,
                error=type(state.outcome.exception()).__name__ if state.outcome else None,
            ),
        ):
            with attempt:
                await self._listen_once()
