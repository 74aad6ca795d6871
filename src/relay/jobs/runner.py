"""Runs recover and replay jobs in every dispatcher process, one job at a time per process.

A job is claimed with a lease. Each batch is its own short transaction that also stores the
job's keyset cursor and renews the lease, so a job whose process died is taken over by another
runner once the lease runs out and goes on from its last committed batch. Before each batch
the runner waits while the deliveries the job feeds are already backed up (more than
RELAY_JOB_MAX_BACKLOG due and unsent), so live deliveries never queue behind a whole recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.errors import is_database_unavailable
from relay.core.logging import get_logger
from relay.core.settings import Settings
from relay.deliveries.repository import DeliveryRepository
from relay.jobs.models import Job, JobStatus
from relay.jobs.repository import JobRepository
from relay.jobs.service import JobBatches, JobFailed, Progress, backlog_subscription

log = get_logger(__name__)

BACKLOG_CHECK_INTERVAL = 0.5


class LeaseLost(Exception):
    """Another runner took the job over (this one stalled past its lease)."""


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        worker: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.worker = worker
        self.clock = clock

    async def run(self) -> None:
        """Claims and runs jobs until cancelled."""
        while True:
            try:
                job = await self._claim()
            except Exception as exc:
                self._log_error("job_claim_failed", exc)
                job = None
            if job is None:
                await asyncio.sleep(self.settings.job_poll_interval)
                continue
            await self.run_job(job)

    async def run_next(self) -> Job | None:
        """Claims one job and runs it to its end; None when none was waiting."""
        job = await self._claim()
        if job is not None:
            await self.run_job(job)
        return job

    async def _claim(self) -> Job | None:
        async with self.session_factory() as session:
            job = await JobRepository(session).claim(
                worker=self.worker, lease=self.settings.job_lease
            )
            await session.commit()
        return job

    async def run_job(self, job: Job) -> None:
        bound = log.bind(job_id=job.id, kind=job.kind, worker=self.worker)
        bound.info("job_started", run=job.runs, resumed_at=job.cursor)
        progress = Progress.of(job)
        try:
            if progress.total is None:
                async with self.session_factory() as session:
                    progress.total = await JobBatches(session, job).count(now=self.clock())
                    await self._save(session, job, progress)
            complete = False
            while not complete:
                await self._wait_for_room(job, progress)
                async with self.session_factory() as session:
                    complete = await JobBatches(session, job).run_batch(
                        progress, limit=self.settings.job_batch_size, now=self.clock()
                    )
                    await self._save(session, job, progress)
                bound.debug("job_batch", done=progress.done, total=progress.total)
            await self._finish(job, JobStatus.SUCCEEDED, None)
            bound.info("job_succeeded", done=progress.done, total=progress.total)
        except asyncio.CancelledError:
            # Shutting down: hand the job back so another process resumes it at once.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(job))
            raise
        except LeaseLost:
            bound.warning("job_lease_lost")
        except JobFailed as exc:
            await self._finish(job, JobStatus.FAILED, str(exc))
            bound.warning("job_failed", error=str(exc))
        except Exception as exc:
            if is_database_unavailable(exc):
                # The lease runs out and a runner resumes the job from its last batch.
                bound.warning("job_interrupted_database_unavailable", error=type(exc).__name__)
                return
            bound.exception("job_crashed")
            with contextlib.suppress(Exception):
                await self._finish(job, JobStatus.FAILED, f"internal error ({type(exc).__name__})")

    async def _save(self, session: AsyncSession, job: Job, progress: Progress) -> None:
        stored = await JobRepository(session).progress(
            job.id,
            worker=self.worker,
            lease=self.settings.job_lease,
            cursor=progress.cursor,
            done=progress.done,
            total=progress.total,
            result=progress.result,
        )
        if not stored:
            await session.rollback()
            raise LeaseLost(job.id)
        await session.commit()

    async def _wait_for_room(self, job: Job, progress: Progress) -> None:
        cap = self.settings.job_max_backlog
        while True:
            async with self.session_factory() as session:
                backlog = await DeliveryRepository(session).due_backlog(
                    subscription_id=backlog_subscription(job), cap=cap
                )
                if backlog < cap:
                    return
                # Waiting is progress too: keep the lease while the dispatchers catch up.
                await self._save(session, job, progress)
            await asyncio.sleep(BACKLOG_CHECK_INTERVAL)

    async def _finish(self, job: Job, status: str, error: str | None) -> None:
        async with self.session_factory() as session:
            await JobRepository(session).finish(
                job.id, worker=self.worker, status=status, error=error
            )
            await session.commit()

    async def _release(self, job: Job) -> None:
        async with self.session_factory() as session:
            await JobRepository(session).release(job.id, worker=self.worker)
            await session.commit()

    def _log_error(self, event: str, exc: Exception) -> None:
        if is_database_unavailable(exc):
            log.warning(event, error=type(exc).__name__)
        else:
            log.exception(event)
