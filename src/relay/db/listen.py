"""LISTEN on one channel, on a dedicated connection that reconnects when it drops.

A notification is only ever a hint (claim now, reload now): whoever listens also has another
way to find out, so a notification lost while the connection was down costs a delay, never
correctness. `on_connected` runs each time the connection is (re)established, since whatever
was notified while it was down was missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from relay.core.logging import get_logger

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


class ChannelListener:
    def __init__(
        self,
        database_url: str,
        channel: str,
        *,
        on_notify: Callable[[str], None],
        on_connected: Callable[[], None],
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.connect_args = asyncpg_connect_args(database_url)
        self.channel = channel
        self.on_notify = on_notify
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.connected = asyncio.Event()

    def _received(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_notify(payload)

    async def _listen_once(self) -> None:
        connection = await asyncpg.connect(**self.connect_args, timeout=10)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(self.channel, self._received)
            self.connected.set()
            self.on_connected()
            log.info("listener_connected", channel=self.channel)
            await lost.wait()
        finally:
            if self.connected.is_set():
                self.connected.clear()
                self.on_lost()
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
                channel=self.channel,
                attempt=state.attempt_number,
                error=type(state.outcome.exception()).__name__ if state.outcome else None,
            ),
        ):
            with attempt:
                await self._listen_once()
