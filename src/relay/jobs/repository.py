"""All SQL about jobs: creating, listing, the runner's claim and lease, and the batch reads
of the replay job (the recover job's batch is a delivery update, in deliveries/repository.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, true, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from relay.events.models import Event
from relay.jobs.models import Job, JobStatus


@dataclass(frozen=True, slots=True)
class EventWindow:
    """Which events a replay job covers: received in [since, until), optionally narrowed."""

    since: datetime
    until: datetime | None = None
    type: str | None = None
    vendor: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    envelope: str
    received_at: datetime


def _event_conditions(window: EventWindow) -> list[ColumnElement[bool]]:
    conditions = [Event.received_at >= window.since]
    if window.until is not None:
        conditions.append(Event.received_at < window.until)
    if window.type is not None:
        conditions.append(Event.type == window.type)
    if window.vendor is not None:
        conditions.append(Event.vendor == window.vendor)
    if window.source is not None:
        conditions.append(Event.source_id == window.source)
    return conditions


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, job: Job) -> None:
        self.session.add(job)
        await self.session.flush()

    async def get(self, job_id: str) -> Job | None:
        return await self.session.get(Job, job_id)

    async def list(
        self, *, kind: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Sequence[Job]:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if cursor is not None:
            query = query.where(Job.id < cursor)
        if kind is not None:
            query = query.where(Job.kind == kind)
        if status is not None:
            query = query.where(Job.status == status)
        return (await self.session.execute(query)).scalars().all()

    async def claim(self, *, worker: str, lease: timedelta) -> Job | None:
        """Takes the oldest queued job, or a running one whose worker let its lease run out,
        in one statement; concurrent runners skip the row instead of waiting for it."""
        candidate = (
            select(Job.id)
            .where(
                Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
                (Job.status == JobStatus.QUEUED) | (Job.locked_until <= func.now()),
            )
            .order_by(Job.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        until = func.now() + lease
        statement = (
            update(Job)
            .where(Job.id == candidate)
            .values(
                status=JobStatus.RUNNING,
                locked_by=worker,
                locked_until=until,
                started_at=func.coalesce(Job.started_at, func.now()),
                updated_at=func.now(),
                runs=Job.runs + 1,
            )
            .returning(Job)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def progress(
        self,
        job_id: str,
        *,
        worker: str,
        lease: timedelta,
        cursor: dict[str, Any] | None,
        done: int,
        total: int | None,
        result: dict[str, Any],
    ) -> bool:
        """Stores a batch's progress and renews the lease; False when the job is no longer
        this worker's (its lease ran out and another worker took it over)."""
        outcome = await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.locked_by == worker, Job.status == JobStatus.RUNNING)
            .values(
                cursor=cursor,
                done=done,
                total=total,
                result=result,
                locked_until=func.now() + lease,
                updated_at=func.now(),
            )
        )
        return bool(outcome.rowcount)  # type: ignore[attr-defined]

    async def finish(self, job_id: str, *, worker: str, status: str, error: str | None) -> bool:
        outcome = await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.locked_by == worker, Job.status == JobStatus.RUNNING)
            .values(
                status=status,
                error=error,
                locked_by=None,
                locked_until=None,
                finished_at=func.now(),
                updated_at=func.now(),
            )
        )
        return bool(outcome.rowcount)  # type: ignore[attr-defined]

    async def release(self, job_id: str, *, worker: str) -> None:
        """Gives a running job back at once (graceful shutdown): any worker may resume it."""
        await self.session.execute(
            update(Job)
            .where(Job.id == job_id, Job.locked_by == worker, Job.status == JobStatus.RUNNING)
            .values(locked_by=None, locked_until=func.now(), updated_at=func.now())
        )

    async def count_events(self, window: EventWindow) -> int:
        query = select(func.count()).select_from(Event).where(*_event_conditions(window))
        return int((await self.session.execute(query)).scalar_one())

    async def next_events(
        self, window: EventWindow, *, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[EventRow]:
        """The next events of the window in (received_at, id) order.

        FOR KEY SHARE keeps the retention purge from deleting them under the new deliveries;
        an event the purge already holds is skipped, it is going away.
        """
        position = (
            tuple_(Event.received_at, Event.id) > tuple_(*after) if after is not None else true()
        )
        query = (
            select(Event.id, Event.envelope, Event.received_at)
            .where(and_(*_event_conditions(window)), position)
            .order_by(Event.received_at, Event.id)
            .limit(limit)
            .with_for_update(read=True, key_share=True, skip_locked=True)
        )
        rows = (await self.session.execute(query)).all()
        return [
            EventRow(id=row.id, envelope=row.envelope, received_at=row.received_at) for row in rows
        ]
