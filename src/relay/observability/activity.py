"""GET /v1/activity: what happened since a moment, oldest first; the feed `relay tail` follows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from relay.apikeys.auth import require_admin
from relay.db.session import DbSession
from relay.observability.repository import ActivityFilter, ActivityRepository

router = APIRouter(prefix="/v1", tags=["observability"], dependencies=[Depends(require_admin)])

MAX_ITEMS = 500


class ActivityEvent(BaseModel):
    id: str
    type: str
    source_id: str
    source: str = Field(description="The source's slug.")
    vendor: str
    subject_kind: str
    subject_id: str | None
    received_at: datetime


class ActivityAttempt(BaseModel):
    id: str
    delivery_id: str
    event_id: str
    event_type: str
    source: str = Field(description="The slug of the event's source.")
    subscription_id: str
    attempt_number: int
    outcome: str = Field(description="succeeded, pending (will retry) or failed (gave up).")
    response_status: int | None
    error_class: str | None
    started_at: datetime
    duration_ms: int


class Activity(BaseModel):
    server_time: datetime = Field(description="Pass it (minus a few seconds) as the next since.")
    events: list[ActivityEvent] = Field(description="Events received since, oldest first.")
    attempts: list[ActivityAttempt] = Field(description="Attempts started since, oldest first.")


@router.get("/activity", response_model=Activity, summary="Events and attempts since a moment")
async def activity(
    session: DbSession,
    since: Annotated[datetime, Query(description="Received / started at or after (ISO 8601).")],
    type: Annotated[str | None, Query(description="Only this event type.")] = None,
    source: Annotated[str | None, Query(description="Only this source (id or slug).")] = None,
    subscription_id: Annotated[
        str | None, Query(description="Only events sent to this subscription, and its attempts.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS, description="Items per list.")] = 200,
) -> Activity:
    server_time = datetime.now(UTC)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    query = ActivityFilter(since=since, type=type, source=source, subscription_id=subscription_id)
    repository = ActivityRepository(session)
    events = await repository.events(query, limit=limit)
    attempts = await repository.attempts(query, limit=limit)
    return Activity(
        server_time=server_time,
        events=[ActivityEvent(**row) for row in events],
        attempts=[ActivityAttempt(**row) for row in attempts],
    )
