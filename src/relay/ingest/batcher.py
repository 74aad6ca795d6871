"""Group commit: the webhooks that arrive together are stored by one statement.

Each webhook's answer waits for the statement that stored it to commit, as before: a 200 still
means durable. What changes is the cost per webhook: one round trip, one plan and one commit
(one WAL flush) are shared by every webhook of the batch, and the Python work of executing a
statement is paid once per batch.

No webhook waits for a timer. A webhook that finds fewer than `max_in_flight` statements
running starts one at once (a lone webhook goes straight to the database); one that finds them
all busy waits in the queue, and the next statement to finish takes the whole queue with it.
So batches grow only under load, exactly as large as the database makes them. A statement takes
its batch when its task first runs, not when it is started: the webhooks read in the same turn
of the event loop go together. Taken when started, the first of 32 clients answered together
went alone, the second too, and the other 30 waited behind them: under figure 1's load the
median statement carried one webhook, and `relay serve` stored 14 % fewer webhooks a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from relay.core.errors import is_database_unavailable
from relay.ingest.repository import IngestRepository, StoredWebhook, WebhookToStore

# Statements running at once: enough to keep the database busy while a batch's results come
# back and the next one is sent, few enough that batches form under load.
MAX_IN_FLIGHT = 2
# A ceiling on one statement's size (its parameters grow with it); the queue rarely reaches it.
MAX_BATCH = 64

_Waiting = tuple[WebhookToStore, "asyncio.Future[StoredWebhook | None]"]


class GroupCommit:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        on_stored: Callable[[], None],
        max_in_flight: int = MAX_IN_FLIGHT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """`engine` must be in autocommit (the statement is its own transaction); `on_stored`
        runs after each statement that stored something has committed."""
        self.engine = engine
        self.on_stored = on_stored
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._running: set[asyncio.Task[None]] = set()

    async def store(self, webhook: WebhookToStore) -> StoredWebhook | None:
        """What was stored, after it committed; None if nothing was, the configuration having
        changed since the webhook's was read."""
        future: asyncio.Future[StoredWebhook | None] = asyncio.get_running_loop().create_future()
        self._queue.append((webhook, future))
        if len(self._running) < self.max_in_flight:
            self._start_next()
        # The statement goes on if the client leaves: what it stores is then simply not answered
        # (the vendor retries and dedupe finds it), as when a client leaves after the commit.
        return await asyncio.shield(future)

    def _start_next(self) -> None:
        task = asyncio.create_task(self._write_next(), name="relay-ingest-store")
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._queue and len(self._running) < self.max_in_flight:
            self._start_next()

    async def _write_next(self) -> None:
        batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        # Another statement started in the same turn may have taken them all.
        if batch:
            await self._write(batch)

    async def _write(self, batch: Sequence[_Waiting]) -> None:
        try:
            stored = await self._execute([webhook for webhook, _ in batch])
        except Exception as exc:
            if len(batch) == 1 or is_database_unavailable(exc):
                for _, future in batch:
                    future.set_exception(exc)
                return
            # Something in one webhook broke the statement: each alone, so only it fails.
            await asyncio.gather(*(self._write([waiting]) for waiting in batch))
            return
        for (_, future), result in zip(batch, stored, strict=True):
            future.set_result(result)
        if any(result is not None and result.deliveries for result in stored):
            self.on_stored()

    async def _execute(self, webhooks: list[WebhookToStore]) -> list[StoredWebhook | None]:
        async with self.engine.connect() as connection:
            return await IngestRepository(connection).store(webhooks)

    async def drain(self) -> None:
        """Waits until every queued webhook is stored (at shutdown)."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
