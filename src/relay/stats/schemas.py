"""The JSON shape of GET /v1/stats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relay.outbox.states import Liveness

_HOUR_EXAMPLE: dict[str, Any] = {
    "received": 1234,
    "delivered": 1200,
    "failed": 4,
    "pending": 30,
    "latency_p50_ms": 12.4,
    "latency_p99_ms": 1412.0,
}
_DAY_EXAMPLE: dict[str, Any] = {
    "received": 28410,
    "delivered": 28302,
    "failed": 78,
    "pending": 30,
    "latency_p50_ms": 13.1,
    "latency_p99_ms": 396904.1,
}
_OVERALL_EXAMPLE: dict[str, Any] = {
    "pending_now": 30,
    "last_hour": _HOUR_EXAMPLE,
    "last_day": _DAY_EXAMPLE,
}
_SUBSCRIPTION_EXAMPLE: dict[str, Any] = {
    **_OVERALL_EXAMPLE,
    "subscription_id": "sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y",
    "url": "https://erp.example.com/hooks/relay",
    "state": "active",
    "active": True,
    "deleted": False,
    "liveness": "active",
}


class WindowStats(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_HOUR_EXAMPLE]})

    received: int = Field(
        description="Overall: events received in the window. Per subscription: deliveries "
        "created for it in the window (events routed to it)."
    )
    delivered: int = Field(description="Of the window's deliveries, how many succeeded.")
    failed: int = Field(description="Of the window's deliveries, how many failed for good.")
    pending: int = Field(description="Of the window's deliveries, how many are still pending.")
    latency_p50_ms: float | None = Field(
        description="Median time from a delivery's creation (the event's arrival; for a "
        "replay, the replay) to its success being recorded, over the window's succeeded "
        "deliveries; null when none succeeded."
    )
    latency_p99_ms: float | None = Field(description="99th percentile of the same.")


class OverallStats(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_OVERALL_EXAMPLE]})

    pending_now: int = Field(description="Deliveries pending right now, whatever their age.")
    last_hour: WindowStats
    last_day: WindowStats


class SubscriptionStats(OverallStats):
    model_config = ConfigDict(json_schema_extra={"examples": [_SUBSCRIPTION_EXAMPLE]})

    subscription_id: str
    url: str
    state: str = Field(description="active, degraded (circuit breaker open) or disabled.")
    active: bool
    deleted: bool
    liveness: Liveness = Field(
        description="What the subscription does now: active, paused, degraded, disabled or deleted."
    )


class StatsOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-03-10T09:15:00Z",
                    "overall": _OVERALL_EXAMPLE,
                    "subscriptions": [_SUBSCRIPTION_EXAMPLE],
                }
            ]
        }
    )

    generated_at: datetime
    overall: OverallStats
    subscriptions: list[SubscriptionStats] = Field(
        description="Every subscription not deleted, and deleted ones with deliveries in the "
        "last day."
    )
