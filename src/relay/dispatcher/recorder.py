"""Writes the outcomes of successful attempts in batches.

At full speed a worker finishes hundreds of deliveries a second, nearly all of them successes,
and each one written alone costs a transaction of three statements. The recorder writes all the
successes that arrived while its previous write ran in one transaction instead: one multi-row
attempt insert, one guarded update of the deliveries, one breaker update for their
subscriptions. An idle recorder writes a lone success at once, so batching adds no wait.
Failures and retries keep their own transaction (see worker.py): they are rare and each
decides something about its subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.deliveries.repository import DeliveryRepository, SucceededDelivery
from relay.dispatcher.health import BreakerPolicy, SubscriptionHealth

# Rows written in one transaction at most; what arrives beyond waits for the next one.
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Success:
    delivery: SucceededDelivery
    subscription_id: str
    attempt_row: dict[str, Any]


class SuccessRecorder:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        policy: BreakerPolicy,
        *,
        worker: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.session_factory = session_factory
        self.policy = policy
        self.worker = worker
        self.clock = clock
        self.queue: list[tuple[Success, asyncio.Future[None]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def record(self, success: Success) -> None:
        """Returns once the success is committed; raises what the write raised."""
        done = asyncio.get_running_loop().create_future()
        self.queue.append((success, done))
        if self.writer is None:
            self.writer = asyncio.create_task(self._write_all(), name="relay-recorder")
        await done

    async def _write_all(self) -> None:
        # Keeps writing until the queue is empty; every waiter's future is settled.
        try:
            while self.queue:
                batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                try:
                    await self._write([success for success, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self.writer = None

    async def _write(self, batch: list[Success]) -> None:
        now = self.clock()
        async with self.session_factory() as session:
            deliveries = DeliveryRepository(session)
            await deliveries.add_attempts([success.attempt_row for success in batch])
            await deliveries.finish_succeeded(
                [success.delivery for success in batch], worker=self.worker, now=now
            )
            await SubscriptionHealth(session, self.policy).record_successes(
                {success.subscription_id for success in batch}, now=now
            )
            await session.commit()
