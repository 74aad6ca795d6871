"""Writes the outcomes of successful attempts in batches.

At full speed a worker finishes hundreds of deliveries a second, nearly all of them successes,
and each one written alone costs a transaction of three statements. The recorder writes all the
successes that arrived while its previous write ran in one transaction instead: one multi-row
attempt insert, one guarded update of the deliveries, one breaker update for their
subscriptions. An idle recorder writes a lone success at once, so batching adds no wait.
Failures and retries keep their own transaction (see worker.py): they are rare and each
decides something about its subscription.

A batch that fails is written again one success at a time, so one bad row (an event deleted
meanwhile, a deadlock) costs only its own outcome, not its neighbours'; unless the database
could not be reached, which fails the whole batch at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.errors import is_database_unavailable
from relay.core.logging import get_logger
from relay.db.retry import retrying_while_unavailable
from relay.deliveries.repository import DeliveryRepository, SucceededDelivery
from relay.dispatcher.health import BreakerPolicy, SubscriptionHealth

log = get_logger(__name__)

# Rows written in one transaction at most; what arrives beyond waits for the next one.
MAX_BATCH = 500


# A successful attempt's row of delivery_attempts: it names its delivery, its subscription, the
# attempt number and the answer's status, all the recorder needs.
AttemptRow = dict[str, Any]

Waiting = tuple[AttemptRow, "asyncio.Future[None]"]


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
        self.queue: list[Waiting] = []
        self.batch: list[Waiting] = []
        self.writer: asyncio.Task[None] | None = None

    async def record(self, attempt_row: AttemptRow) -> None:
        """Returns once the success is committed; raises what its write raised."""
        done = asyncio.get_running_loop().create_future()
        self.queue.append((attempt_row, done))
        if self.writer is None:
            self._start_writer()
        await done

    def _start_writer(self) -> None:
        self.writer = asyncio.create_task(self._write_all(), name="relay-recorder")
        self.writer.add_done_callback(self._writer_ended)

    def _writer_ended(self, writer: asyncio.Task[None]) -> None:
        if self.writer is not writer:
            return
        self.writer = None
        if writer.cancelled():
            # The loop is closing (even before the writer began): no caller may wait for a
            # write that never comes.
            _settle([*self.batch, *self.queue], asyncio.CancelledError())
            self.batch, self.queue = [], []
        elif self.queue:
            # Queued after the writer's last look, before this callback ran.
            self._start_writer()

    async def _write_all(self) -> None:
        while self.queue:
            self.batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            try:
                await self._write([row for row, _ in self.batch])
            except Exception as exc:
                # One at a time isolates a bad row; a database out of reach fails every row
                # alike, and each would first sit through retries of its own.
                if len(self.batch) == 1 or is_database_unavailable(exc):
                    _settle(self.batch, exc)
                    continue
                log.warning(
                    "recorder_batch_failed", deliveries=len(self.batch), error=type(exc).__name__
                )
                for waiting in self.batch:
                    await self._write_alone(waiting)
                continue
            _settle(self.batch, None)
        self.batch = []

    async def _write_alone(self, waiting: Waiting) -> None:
        try:
            await self._write([waiting[0]])
        except Exception as exc:
            _settle([waiting], exc)
        else:
            _settle([waiting], None)

    async def _write(self, batch: list[AttemptRow]) -> None:
        finished = [
            SucceededDelivery(
                id=row["delivery_id"],
                attempts=row["attempt_number"],
                status_code=row["response_status"],
            )
            for row in batch
        ]
        async for attempt in retrying_while_unavailable():
            with attempt:
                now = self.clock()
                async with self.session_factory() as session:
                    deliveries = DeliveryRepository(session)
                    await deliveries.add_attempts(batch)
                    await deliveries.finish_succeeded(finished, worker=self.worker, now=now)
                    await SubscriptionHealth(session, self.policy).record_successes(
                        {row["subscription_id"] for row in batch}, now=now
                    )
                    await session.commit()


def _settle(waiting: list[Waiting], error: BaseException | None) -> None:
    for _, done in waiting:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(error)
