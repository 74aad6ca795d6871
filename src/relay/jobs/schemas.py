"""Request and answer bodies of replay, recovery and the jobs API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from relay.deliveries.schemas import DeliveryOut


def _utc(value: datetime) -> datetime:
    # A time without an offset is read as UTC, the zone every stored timestamp is in.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Instant = Annotated[datetime, AfterValidator(_utc)]


class EventReplayIn(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [{"subscription_ids": ["sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y"]}]
        },
    }

    subscription_ids: list[str] | None = Field(
        None,
        min_length=1,
        description="Replay to these subscriptions only; omitted: every subscription that "
        "matches the event now.",
    )


class EventReplayOut(BaseModel):
    event_id: str
    delivery_ids: list[str] = Field(description="The new deliveries, one per subscription.")
    deliveries: list[DeliveryOut]


class RecoverIn(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {"examples": [{"since": "2026-03-10T06:00:00Z", "status": "failed"}]},
    }

    since: Instant = Field(description="Deliveries created at or after this time (ISO 8601).")
    until: Instant | None = Field(None, description="... and before this time; omitted: now.")
    status: Literal["failed", "pending"] = Field(
        "failed",
        description="Which deliveries: `failed` ones go back in the queue; `pending` ones "
        "waiting for their next attempt are made due now.",
    )


class BulkReplayIn(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "since": "2026-03-10T06:00:00Z",
                    "type": "order.completed",
                    "source": "routestripe-nl",
                }
            ]
        },
    }

    since: Instant = Field(description="Events received at or after this time (ISO 8601).")
    until: Instant | None = Field(None, description="... and before this time; omitted: now.")
    type: str | None = Field(None, description="Unified event type, e.g. order.completed.")
    vendor: str | None = Field(None, description="routigo, antsroute, bringg or routestripe.")
    source: str | None = Field(None, description="Source id or slug.")
    subscription_ids: list[str] | None = Field(
        None,
        min_length=1,
        description="Replay to these subscriptions only; omitted: every subscription that "
        "matches each event now.",
    )


class JobOut(BaseModel):
    id: str
    kind: Literal["recover", "replay"]
    status: Literal["queued", "running", "succeeded", "failed"]
    params: dict[str, Any] = Field(description="What the job was asked to do.")
    done: int = Field(
        description="recover: deliveries re-queued so far; replay: events replayed so far."
    )
    total: int | None = Field(description="How many there are in all; null until the job starts.")
    result: dict[str, Any] = Field(
        description="Counters: recover {requeued, batches}; replay {events, deliveries, batches}."
    )
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobAccepted(JobOut):
    job_id: str = Field(description="The same as id: poll GET /v1/jobs/{job_id} for progress.")
