"""Request and answer bodies of replay, recovery and the jobs API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from relay.deliveries.schemas import DELIVERY_EXAMPLE, DeliveryOut


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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "evt_01JQ2VB3C4D5E6F7G8H9J0K1M2",
                    "delivery_ids": ["dlv_01JQ2W7R8S9T0V1W2X3Y4Z5A6B"],
                    "deliveries": [
                        {
                            **DELIVERY_EXAMPLE,
                            "id": "dlv_01JQ2W7R8S9T0V1W2X3Y4Z5A6B",
                            "status": "pending",
                            "attempt_count": 0,
                            "next_attempt_at": "2026-03-10T09:12:44.118Z",
                            "last_status_code": None,
                            "created_at": "2026-03-10T09:12:44.118Z",
                            "updated_at": "2026-03-10T09:12:44.118Z",
                            "completed_at": None,
                        }
                    ],
                }
            ]
        }
    )

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


_JOB_EXAMPLE: dict[str, Any] = {
    "id": "job_01JQ2WA1B2C3D4E5F6G7H8J9K0",
    "kind": "recover",
    "status": "succeeded",
    "params": {
        "subscription_id": "sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y",
        "since": "2026-03-10T06:00:00+00:00",
        "until": "2026-03-10T09:00:00+00:00",
        "status": "failed",
    },
    "done": 1480,
    "total": 1480,
    "result": {"requeued": 1480, "batches": 2},
    "error": None,
    "created_at": "2026-03-10T09:00:00.204Z",
    "started_at": "2026-03-10T09:00:00.731Z",
    "finished_at": "2026-03-10T09:00:03.090Z",
}


class JobOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_JOB_EXAMPLE,
                    "status": "queued",
                    "done": 0,
                    "total": None,
                    "result": {},
                    "started_at": None,
                    "finished_at": None,
                    "job_id": _JOB_EXAMPLE["id"],
                }
            ]
        }
    )

    job_id: str = Field(description="The same as id: poll GET /v1/jobs/{job_id} for progress.")
