"""The retention purge: what is old enough to go, removed in small batches.

Events (with their deliveries and attempts), inbound request logs and dedupe keys each have a
window (RELAY_RETENTION_DAYS, RELAY_DEDUPE_RETENTION_DAYS); attempts' response bodies may be
cleared sooner (RELAY_ATTEMPT_BODY_RETENTION_DAYS). Each batch is its own short transaction,
so the purge never holds locks for long nor stalls ingest or dispatch. An event with a pending
delivery is never deleted. Dedupe keys are kept apart from events and purged on their own
window, so a vendor's late retry of a purged event is still recognised as a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.errors import is_database_unavailable
from relay.core.logging import get_logger
from relay.core.settings import Settings
from relay.retention.repository import RetentionRepository

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    events: datetime
    dedupe_keys: datetime
    attempt_bodies: datetime

    @classmethod
    def of(cls, settings: Settings, now: datetime) -> Cutoffs:
        days = settings.retention_days
        return cls(
            events=now - timedelta(days=days),
            dedupe_keys=now - timedelta(days=settings.dedupe_retention_days or days),
            attempt_bodies=now - timedelta(days=settings.attempt_body_retention_days or days),
        )


@dataclass(slots=True)
class PurgeReport:
    """Rows removed per table (events count with their deliveries and attempts), and how
    many statements it took."""

    removed: dict[str, int] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)


Batch = Callable[[RetentionRepository], Awaitable[int]]


class Purger:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        batch_size: int | None = None,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.batch_size = batch_size or settings.retention_batch_size

    async def preview(self, *, now: datetime) -> dict[str, int]:
        """What a purge now would remove, per table; removes nothing."""
        cutoffs = Cutoffs.of(self.settings, now)
        async with self.session_factory() as session:
            return await RetentionRepository(session).preview(
                before=cutoffs.events,
                dedupe_before=cutoffs.dedupe_keys,
                bodies_before=cutoffs.attempt_bodies,
            )

    async def purge(self, *, now: datetime) -> PurgeReport:
        cutoffs = Cutoffs.of(self.settings, now)
        limit = self.batch_size
        report = PurgeReport()
        await self._drain(
            report,
            "events",
            lambda repo: repo.delete_events(before=cutoffs.events, limit=limit),
        )
        if cutoffs.attempt_bodies > cutoffs.events:
            await self._drain(
                report,
                "attempt_bodies",
                lambda repo: repo.clear_attempt_bodies(before=cutoffs.attempt_bodies, limit=limit),
            )
        await self._drain(
            report,
            "inbound_requests",
            lambda repo: repo.delete_inbound_requests(before=cutoffs.events, limit=limit),
        )
        await self._drain(
            report,
            "dedupe_keys",
            lambda repo: repo.delete_dedupe_keys(before=cutoffs.dedupe_keys, limit=limit),
        )
        return report

    async def _drain(self, report: PurgeReport, table: str, batch: Batch) -> None:
        """Runs `batch` in its own transaction until one comes back short."""
        removed = statements = 0
        while True:
            async with self.session_factory() as session:
                count = await batch(RetentionRepository(session))
                await session.commit()
            removed += count
            statements += 1
            if count < self.batch_size:
                break
            # Lets the dispatcher and request handlers of this process run between batches.
            await asyncio.sleep(0)
        report.removed[table] = removed
        report.statements[table] = statements

    async def run_periodically(self) -> None:
        """Purges now, then every RELAY_RETENTION_INTERVAL, until cancelled."""
        while True:
            try:
                report = await self.purge(now=datetime.now(UTC))
                if any(report.removed.values()):
                    log.info("retention_purged", **report.removed)
            except Exception as exc:
                if is_database_unavailable(exc):
                    log.warning("retention_skipped_database_unavailable", error=type(exc).__name__)
                else:
                    log.exception("retention_failed")
            await asyncio.sleep(self.settings.retention_interval.total_seconds())
