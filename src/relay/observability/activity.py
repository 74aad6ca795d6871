"""GET /v1/activity: what happened since a moment, oldest first; the feed `relay tail` follows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from relay.apikeys.auth import require_admin
from relay.db.session import DbSession
from relay.observability.repository import ActivityFilter, ActivityRepository

router = APIRouter(prefix="/v1", tags=["observability"], dependencies=[Depends(require_admin)])

MAX_ITEMS = 500


_EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt_01JQ2VB3C4D5E6F7G8H9J0K1M2",
    "type": "order.created",
    "source_id": "src_01JQ2V5M7K8T9W3X4Y5Z6A7B8C",
    "source": "routestripe-nl",
    "vendor": "routestripe",
    "subject_kind": "order",
    "subject_id": "172158",
    "received_at": "2026-03-10T05:51:02.412Z",
}
_ATTEMPT_EXAMPLE: dict[str, Any] = {
    "id": "att_01JQ2VB8F1G2H3J4K5M6N7P8Q9",
    "delivery_id": "dlv_01JQ2VB3C4D5E6F7G8H9J0K1M3",
    "event_id": "evt_01JQ2VB3C4D5E6F7G8H9J0K1M2",
    "event_type": "order.created",
    "source": "routestripe-nl",
    "subscription_id": "sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y",
    "attempt_number": 1,
    "outcome": "succeeded",
    "response_status": 200,
    "error_class": None,
    "started_at": "2026-03-10T05:51:02.530Z",
    "duration_ms": 18,
}


class ActivityEvent(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_EXAMPLE]})

    id: str
    type: str
    source_id: str
    source: str = Field(description="The source's slug.")
    vendor: str
    subject_kind: str
    subject_id: str | None
    received_at: datetime


class ActivityAttempt(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ATTEMPT_EXAMPLE]})

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "server_time": "2026-03-10T05:51:03.001Z",
                    "events": [_EVENT_EXAMPLE],
                    "attempts": [_ATTEMPT_EXAMPLE],
                }
            ]
        }
    )

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
