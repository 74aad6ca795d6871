from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "dlv_01JQ2VB3C4D5E6F7G8H9J0K1M3",
    "event_id": "evt_01JQ2VB3C4D5E6F7G8H9J0K1M2",
    "subscription_id": "sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y",
    "status": "succeeded",
    "attempt_count": 2,
    "next_attempt_at": None,
    "last_status_code": 200,
    "last_error": None,
    "created_at": "2026-03-10T05:51:02.412Z",
    "updated_at": "2026-03-10T05:51:07.530Z",
    "completed_at": "2026-03-10T05:51:07.530Z",
}
_ATTEMPT_EXAMPLE: dict[str, Any] = {
    "id": "att_01JQ2VB8F1G2H3J4K5M6N7P8Q9",
    "delivery_id": "dlv_01JQ2VB3C4D5E6F7G8H9J0K1M3",
    "subscription_id": "sub_01JQ2V9N4P5Q6R7S8T9V0W1X2Y",
    "attempt_number": 2,
    "started_at": "2026-03-10T05:51:07.512Z",
    "duration_ms": 18,
    "request_url": "https://erp.example.com/hooks/relay",
    "request_headers": {
        "content-type": "application/json",
        "webhook-id": "evt_01JQ2VB3C4D5E6F7G8H9J0K1M2",
        "webhook-timestamp": "1773121867",
        "webhook-signature": "v1,HcvItZVKXEtnJcxjecJ+JDJcQFv97/RdceL2FwF0Zpg=",
        "x-relay-attempt": "2",
        "x-relay-event-type": "order.created",
        "x-relay-delivery-id": "dlv_01JQ2VB3C4D5E6F7G8H9J0K1M3",
        "authorization": "[redacted]",
    },
    "response_status": 200,
    "response_headers": {"content-type": "text/plain", "content-length": "2"},
    "response_body": "ok",
    "error_class": None,
    "error_message": None,
    "outcome": "succeeded",
    "decision": "succeeded (200)",
}
_FAILED_ATTEMPT_EXAMPLE: dict[str, Any] = {
    **_ATTEMPT_EXAMPLE,
    "id": "att_01JQ2VB3D5E6F7G8H9J0K1M2N3",
    "attempt_number": 1,
    "started_at": "2026-03-10T05:51:02.530Z",
    "duration_ms": 10001,
    "request_headers": {**_ATTEMPT_EXAMPLE["request_headers"], "x-relay-attempt": "1"},
    "response_status": None,
    "response_headers": None,
    "response_body": None,
    "error_class": "timeout",
    "error_message": "no complete answer within 10 s",
    "outcome": "pending",
    "decision": "retry at 2026-03-10T05:51:07Z (attempt 2 of 10): no complete answer within 10 s",
}


class DeliveryOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [DELIVERY_EXAMPLE]})

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
    model_config = ConfigDict(json_schema_extra={"examples": [_ATTEMPT_EXAMPLE]})

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**DELIVERY_EXAMPLE, "attempts": [_FAILED_ATTEMPT_EXAMPLE, _ATTEMPT_EXAMPLE]}
            ]
        }
    )

    attempts: list[AttemptOut] = Field(description="Every attempt, oldest first.")
