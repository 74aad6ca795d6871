"""Writes the outcomes of attempts in batches.

At full speed a worker finishes hundreds of deliveries a second, and each written alone costs
a transaction of several statements; fifty hanging subscribers timing out together would take
fifty pooled connections at once, the ones the claim, the other outcomes and the API need. The
recorder writes all the outcomes that arrived while its previous write ran in one transaction
instead: the deliveries finished in one statement per kind, one multi-row attempt insert, one
breaker update for the subscriptions that succeeded and one for those that failed. The usual
batch, every attempt a success on subscriptions with no breaker to close, is one statement
in all (transitions.finish_successes). An idle recorder writes a lone outcome at once, so
batching adds no wait.

A batch that fails is written again one outcome at a time, so one bad row (an event deleted
meanwhile, a deadlock) costs only its own outcome, not its neighbours'; unless the database
could not be reached, which fails the whole batch at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.errors import is_database_unavailable
from relay.core.logging import get_logger
from relay.db.retry import retrying_while_unavailable
from relay.outbox import transitions
from relay.outbox.health import BreakerPolicy, SubscriptionHealth
from relay.outbox.states import DeliveryStatus
from relay.outbox.transitions import AttemptOutcome

log = get_logger(__name__)

# Outcomes written in one transaction at most; what arrives beyond waits for the next one.
MAX_BATCH = 500

Waiting = tuple[AttemptOutcome, "asyncio.Future[DeliveryStatus]"]


class OutcomeRecorder:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        policy: BreakerPolicy,
        *,
        worker: str,
        clock: Callable[[], datetime],
        on_breaker_opened: Callable[[], None] = lambda: None,
    ) -> None:
        self.session_factory = session_factory
        self.on_breaker_opened = on_breaker_opened
        self.policy = policy
        self.worker = worker
        self.clock = clock
        self.queue: list[Waiting] = []
        self.batch: list[Waiting] = []
        self.writer: asyncio.Task[None] | None = None

    async def record(self, outcome: AttemptOutcome) -> DeliveryStatus:
        """Returns once the outcome is committed, with the status its delivery got; raises
        what its write raised: asyncpg's own errors from the statement of a batch of
        successes (transitions.finish_successes), SQLAlchemy's from the transaction."""
        done: asyncio.Future[DeliveryStatus] = asyncio.get_running_loop().create_future()
        self.queue.append((outcome, done))
        if self.writer is None:
            self._start_writer()
        return await done

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
            _fail([*self.batch, *self.queue], asyncio.CancelledError())
            self.batch, self.queue = [], []
        elif self.queue:
            # Queued after the writer's last look, before this callback ran.
            self._start_writer()

    async def _write_all(self) -> None:
        while self.queue:
            self.batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
            try:
                finished = await self._write([outcome for outcome, _ in self.batch])
            except Exception as exc:
                # One at a time isolates a bad row; a database out of reach fails every row
                # alike, and each would first sit through retries of its own.
                if len(self.batch) == 1 or is_database_unavailable(exc):
                    _fail(self.batch, exc)
                    continue
                log.warning(
                    "recorder_batch_failed", deliveries=len(self.batch), error=type(exc).__name__
                )
                for waiting in self.batch:
                    await self._write_alone(waiting)
                continue
            _settle(self.batch, finished)
        self.batch = []

    async def _write_alone(self, waiting: Waiting) -> None:
        try:
            finished = await self._write([waiting[0]])
        except Exception as exc:
            _fail([waiting], exc)
        else:
            _settle([waiting], finished)

    async def _write(self, batch: list[AttemptOutcome]) -> dict[str, DeliveryStatus]:
        async for attempt in retrying_while_unavailable():
            with attempt:
                now = self.clock()
                if all(outcome.succeeded for outcome in batch):
                    async with self.session_factory() as session:
                        alone = await transitions.finish_successes(
                            session, batch, worker=self.worker, now=now
                        )
                    if alone is not None:
                        return {key: value.status for key, value in alone.items()}
                async with self.session_factory() as session:
                    finished = await transitions.finish_attempts(
                        session, batch, worker=self.worker, now=now
                    )
                    await self._judge(session, batch, now=now)
                    await session.commit()
                    return {key: value.status for key, value in finished.items()}
        raise AssertionError("retrying_while_unavailable gives up by raising")

    async def _judge(
        self, session: AsyncSession, batch: list[AttemptOutcome], *, now: datetime
    ) -> None:
        """The breaker's verdict on the batch's subscriptions. One that answered 2xx in the
        batch counts as answering, whatever else it answered: it is reachable."""
        health = SubscriptionHealth(session, self.policy)
        answered = {outcome.subscription_id for outcome in batch if outcome.succeeded}
        gone: set[str] = set()
        failures: dict[str, tuple[int, str]] = {}
        for outcome in batch:
            subscription_id = outcome.subscription_id
            if outcome.succeeded or subscription_id in answered:
                continue
            if outcome.gone:
                gone.add(subscription_id)
            count, _ = failures.get(subscription_id, (0, ""))
            failures[subscription_id] = (count + 1, outcome.attempt["decision"])
        degraded = await health.record_failures(
            {key: value for key, value in failures.items() if key not in gone}, now=now
        )
        if degraded:
            self.on_breaker_opened()
        for subscription_id in sorted(gone):
            await health.disable(subscription_id, reason="subscriber answered 410 Gone", now=now)
        if answered:
            await health.record_successes(answered, now=now)


def _settle(waiting: list[Waiting], finished: dict[str, DeliveryStatus]) -> None:
    for outcome, done in waiting:
        if not done.done():
            done.set_result(finished[outcome.delivery_id])


def _fail(waiting: list[Waiting], error: BaseException) -> None:
    for _, done in waiting:
        if done.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(error)
