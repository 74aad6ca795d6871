"""The background work of a relay process, in three pieces that run side by side: the
dispatcher's sending loop, the recover and replay job runner, and the retention purge. `relay
serve` runs them beside the API unless told not to; `relay worker` runs them alone."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.dispatcher.worker import Dispatcher
from relay.jobs.runner import JobRunner
from relay.outbox.wakeup import DeliveryWakeup
from relay.retention.service import Purger


class BackgroundWork:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        database_url: str,
        *,
        name: str | None = None,
        wakeup: DeliveryWakeup | None = None,
    ) -> None:
        self.dispatcher = Dispatcher(
            settings, session_factory, database_url, name=name, wakeup=wakeup
        )
        self.jobs = JobRunner(settings, session_factory, worker=self.dispatcher.name)
        self.purger = Purger(settings, session_factory)

    def stop(self) -> None:
        self.dispatcher.stop()

    async def run(self) -> None:
        """Runs until `stop()`; the dispatcher drains its requests in flight before returning."""
        beside = [
            asyncio.create_task(self.jobs.run(), name="relay-jobs"),
            asyncio.create_task(self.purger.run_periodically(), name="relay-retention"),
        ]
        try:
            await self.dispatcher.run()
        finally:
            for task in beside:
                task.cancel()
            await asyncio.gather(*beside, return_exceptions=True)
