"""Waking dispatchers once deliveries are due: in this process directly, in the others by a
NOTIFY sent beside the writes, never inside them.

A NOTIFY inside the statement that writes deliveries makes every committing writer queue on
PostgreSQL's single notify lock; at a few hundred webhooks a second that cost the ingest about
a third of its throughput (docs/benchmarks.md). The ingest instead calls `deliveries_due()`
once its statement has returned: dispatchers in this process are woken at once, and a NOTIFY
goes out on a pooled connection of its own, one at a time, every call made while one is on its
way folded into the next. Its payload names this process, whose own dispatchers need not wake
twice. A notification is only a hint: every dispatcher also polls.
"""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.core.logging import get_logger
from relay.db.driver import DriverStatement, fetch
from relay.outbox.transitions import NOTIFY_CHANNEL

log = get_logger(__name__)

# Sent up to once per ingest statement: by the driver itself (see db/driver.py).
_NOTIFY = DriverStatement.of(text("SELECT pg_notify(:channel, :origin)"))


class DeliveryWakeup:
    def __init__(self, engine: AsyncEngine) -> None:
        # An autocommit engine: the NOTIFY is delivered when its own statement commits.
        self.engine = engine
        self.origin = "process-" + secrets.token_hex(8)
        self._local: set[asyncio.Event] = set()
        self._sending: asyncio.Task[None] | None = None
        self._again = False

    def subscribe(self, wake: asyncio.Event) -> None:
        """`wake` is set whenever this process has made deliveries due."""
        self._local.add(wake)

    def unsubscribe(self, wake: asyncio.Event) -> None:
        self._local.discard(wake)

    def deliveries_due(self) -> None:
        for wake in self._local:
            wake.set()
        if self._sending is None:
            self._sending = asyncio.create_task(self._notify(), name="relay-wakeup")
        else:
            self._again = True

    async def _notify(self) -> None:
        try:
            again = True
            while again:
                self._again = False
                try:
                    async with self.engine.connect() as connection:
                        await fetch(
                            connection, _NOTIFY, {"channel": NOTIFY_CHANNEL, "origin": self.origin}
                        )
                except Exception as exc:
                    log.warning("wakeup_notify_failed", error=type(exc).__name__)
                    return
                again = self._again
        finally:
            self._sending = None

    async def aclose(self) -> None:
        """Waits for the NOTIFY on its way, so none is cut off by the engine closing."""
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)
