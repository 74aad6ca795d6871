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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y",
                    "url": "https://erp.example.com/hooks/relay",
                    "event_types": ["order.*", "route.completed"],
                    "vendors": ["routestripe"],
                    "source_ids": None,
                    "filter": None,
                    "headers": {"Authorization": "********9876"},
                    "description": "ERP order updates",
                    "ordered": False,
                    "max_concurrency": 10,
                    "rate_limit_per_second": None,
                    "retry_schedule": None,
                    "active": True,
                    "state": "active",
                    "liveness": "active",
                    "state_reason": "",
                    "consecutive_failures": 0,
                    "failing_since": None,
                    "secret": "********yZ0=",
                    "previous_secret_expires_at": None,
                    "created_at": "2026-03-10T05:52:40Z",
                    "updated_at": "2026-03-10T05:52:40Z",
                }
            ]
        }
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y",
                    "secret": "whsec_VqQ5EllPrUhPQYoCX7TaMfXCfnI1zjjApQTg3nG627g=",
                    "previous_secret_expires_at": "2026-03-11T08:00:00Z",
                }
            ]
        }
    )

    id: str
    secret: str
    previous_secret_expires_at: datetime | None


class TestDeliveryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "succeeded": False,
                    "status_code": 503,
                    "duration_ms": 41,
                    "response_excerpt": "upstream unavailable",
                    "error": None,
                    "event_id": "evt_01JQ2VC8D9E0F1G2H3J4K5M6N7",
                }
            ]
        }
    )

    succeeded: bool
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None
    event_id: str
