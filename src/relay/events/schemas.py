from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class EventTypeOut(BaseModel):
    type: str
    description: str
    vendors: dict[str, list[str]]


class EventListItem(BaseModel):
    """An event as listed: the full envelope, as subscribers receive it."""

    model_config = {"extra": "allow"}

    id: str
    type: str
    timestamp: str
    received_at: str
    source: dict[str, Any]
    vendor_event: dict[str, Any]
    subject: dict[str, Any]
    data: dict[str, Any]
    raw: Any
