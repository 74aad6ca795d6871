from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    subscription_id: str
    status: str = Field(description="pending, succeeded or failed.")
    attempt_count: int = Field(description="Attempts made so far.")
    next_attempt_at: datetime | None = Field(description="When a pending delivery goes next.")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class AttemptOut(BaseModel):
    id: str
    delivery_id: str
    subscription_id: str
    attempt_number: int
    started_at: datetime
    duration_ms: int
    request_url: str
    request_headers: dict[str, Any]
    response_status: int | None
    response_headers: dict[str, Any] | None
    response_body: str | None
    error_class: str | None
    error_message: str | None
    outcome: str
    decision: str


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptOut] = Field(description="Every attempt, oldest first.")
