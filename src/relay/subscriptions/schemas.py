from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relay.outbox.states import Liveness


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://erp.example.com/hooks/relay",
                    "event_types": ["order.*", "route.completed"],
                    "vendors": ["routestripe"],
                }
            ]
        },
    )

    url: str = Field(description="Absolute http(s) URL without credentials.")
    event_types: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Exact types (order.completed), prefix wildcards (route.*) or * for all.",
    )
    vendors: list[str] | None = Field(None, description="Only events from these vendors.")
    source_ids: list[str] | None = Field(None, description="Only events from these sources.")
    filter: dict[str, Any] | None = Field(
        None,
        description="JSON filter on the event envelope: equality, $eq, $neq, $in, $exists, "
        "$and, $or, $not on dotted paths such as data.status.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers sent with every delivery."
    )
    description: str = Field("", max_length=2000)
    ordered: bool = Field(
        False,
        description="Deliver events of one subject (subject.kind + subject.id) strictly in "
        "timestamp order.",
    )
    max_concurrency: int = Field(10, ge=1, le=1000, description="Requests in flight at most.")
    rate_limit_per_second: float | None = Field(None, gt=0, le=10000)
    retry_schedule: list[float] | None = Field(
        None, description="Seconds to wait before each retry; the default schedule when null."
    )
    active: bool = True


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"event_types": ["order.*"], "active": False}]},
    )

    url: str | None = None
    event_types: list[str] | None = None
    vendors: list[str] | None = None
    source_ids: list[str] | None = None
    filter: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    description: str | None = Field(None, max_length=2000)
    ordered: bool | None = None
    max_concurrency: int | None = Field(None, ge=1, le=1000)
    rate_limit_per_second: float | None = Field(None, gt=0, le=10000)
    retry_schedule: list[float] | None = None
    active: bool | None = None


class SubscriptionOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    vendors: list[str] | None
    source_ids: list[str] | None
    filter: dict[str, Any] | None
    headers: dict[str, str]
    description: str
    ordered: bool
    max_concurrency: int
    rate_limit_per_second: float | None
    retry_schedule: list[float] | None
    active: bool = Field(description="False while paused.")
    state: str = Field(
        description="The circuit breaker's verdict: active, degraded (open) or disabled."
    )
    liveness: Liveness = Field(
        description="What the subscription does now, all columns taken together: active, "
        "paused, degraded (breaker open), disabled or deleted."
    )
    state_reason: str
    consecutive_failures: int
    failing_since: datetime | None
    secret: str = Field(description="Masked; shown whole only on create and rotation.")
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SecretOut(BaseModel):
    id: str
    secret: str
    previous_secret_expires_at: datetime | None


class TestDeliveryOut(BaseModel):
    succeeded: bool
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None
    event_id: str
