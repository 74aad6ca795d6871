"""The JSON shape of GET /v1/stats."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from relay.outbox.states import Liveness


class WindowStats(BaseModel):
    received: int = Field(
        description="Overall: events received in the window. Per subscription: deliveries "
        "created for it in the window (events routed to it)."
    )
    delivered: int = Field(description="Of the window's deliveries, how many succeeded.")
    failed: int = Field(description="Of the window's deliveries, how many failed for good.")
    pending: int = Field(description="Of the window's deliveries, how many are still pending.")
    latency_p50_ms: float | None = Field(
        description="Median time from the event's arrival to the subscriber's first 2xx, over "
        "the window's succeeded deliveries; null when none succeeded."
    )
    latency_p99_ms: float | None = Field(description="99th percentile of the same.")


class OverallStats(BaseModel):
    pending_now: int = Field(description="Deliveries pending right now, whatever their age.")
    last_hour: WindowStats
    last_day: WindowStats


class SubscriptionStats(OverallStats):
    subscription_id: str
    url: str
    state: str = Field(description="active, degraded (circuit breaker open) or disabled.")
    active: bool
    deleted: bool
    liveness: Liveness = Field(
        description="What the subscription does now: active, paused, degraded, disabled or deleted."
    )


class StatsOut(BaseModel):
    generated_at: datetime
    overall: OverallStats
    subscriptions: list[SubscriptionStats] = Field(
        description="Every subscription not deleted, and deleted ones with deliveries in the "
        "last day."
    )
