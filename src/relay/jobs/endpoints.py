"""Replay and recovery endpoints, and the jobs API that shows their progress."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Body, Depends, Query, Response

from relay.apikeys.auth import require_admin
from relay.core.pagination import DEFAULT_LIMIT, CursorQuery, LimitQuery, Page, checked_cursor
from relay.db.session import DbSession
from relay.deliveries.endpoints import delivery_out
from relay.jobs.models import Job
from relay.jobs.schemas import (
    BulkReplayIn,
    EventReplayIn,
    EventReplayOut,
    JobAccepted,
    JobOut,
    RecoverIn,
)
from relay.jobs.service import JobService
from relay.openapi import CONFLICT
from relay.sources.repository import SourceRepository
from relay.sources.service import SourceService

router = APIRouter(
    prefix="/v1", tags=["replay and recovery"], dependencies=[Depends(require_admin)]
)


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job, from_attributes=True)


def _accepted(job: Job, response: Response) -> JobAccepted:
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobAccepted(**job_out(job).model_dump(), job_id=job.id)


@router.post("/events/replay", status_code=202, response_model=JobAccepted)
async def replay_events(
    payload: BulkReplayIn, session: DbSession, response: Response
) -> JobAccepted:
    """Re-delivers every event received in the window (and matching the filter) to the
    subscriptions that want it now, in the background."""
    source = await SourceService(SourceRepository(session)).resolve_filter("source", payload.source)
    payload = payload.model_copy(update={"source": source})
    job = await JobService(session).start_replay(payload, now=datetime.now(UTC))
    await session.commit()
    return _accepted(job, response)


@router.post("/events/{event_id}/replay", status_code=201, response_model=EventReplayOut)
async def replay_event(
    event_id: str, session: DbSession, payload: EventReplayIn | None = Body(None)
) -> EventReplayOut:
    """New deliveries of one event, at once, to every (or each named) subscription that
    matches it now."""
    deliveries = await JobService(session).replay_event(
        event_id, payload.subscription_ids if payload else None, now=datetime.now(UTC)
    )
    await session.commit()
    return EventReplayOut(
        event_id=event_id,
        delivery_ids=[delivery.id for delivery in deliveries],
        deliveries=[delivery_out(delivery) for delivery in deliveries],
    )


@router.post(
    "/subscriptions/{subscription_id}/recover",
    status_code=202,
    response_model=JobAccepted,
    responses=CONFLICT,
)
async def recover_subscription(
    subscription_id: str, payload: RecoverIn, session: DbSession, response: Response
) -> JobAccepted:
    """Re-queues every failed delivery of the subscription created in the window, in the
    background."""
    job = await JobService(session).start_recover(subscription_id, payload, now=datetime.now(UTC))
    await session.commit()
    return _accepted(job, response)


@router.get("/jobs", response_model=Page[JobOut])
async def list_jobs(
    session: DbSession,
    kind: str | None = Query(None, pattern="^(recover|replay)$", description="recover or replay."),
    status: str | None = Query(
        None,
        pattern="^(queued|running|succeeded|failed)$",
        description="queued, running, succeeded or failed.",
    ),
    limit: LimitQuery = DEFAULT_LIMIT,
    cursor: CursorQuery = None,
) -> Page[JobOut]:
    jobs = await JobService(session).list(
        kind=kind, status=status, limit=limit, cursor=checked_cursor(cursor)
    )
    return Page[JobOut](
        data=[job_out(job) for job in jobs],
        next_cursor=jobs[-1].id if len(jobs) == limit else None,
    )


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: str, session: DbSession) -> JobOut:
    return job_out(await JobService(session).get(job_id))
