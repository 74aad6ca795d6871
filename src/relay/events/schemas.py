from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

# The event every example in the API describes: a RouteStripe visit, received by the source
# routestripe-nl and delivered to one subscription.
EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt_01JQ2VB3C4D5E6F7G8H9J0K1M2",
    "type": "order.created",
    "version": "2026-11-01",
    "timestamp": "2026-03-10T05:51:02.000Z",
    "received_at": "2026-03-10T05:51:02.412Z",
    "source": {
        "id": "src_01JQ2V5M7K8T9W3X4Y5Z6A7B8C",
        "slug": "routestripe-nl",
        "vendor": "routestripe",
    },
    "vendor_event": {"name": "visit.created", "id": "evt_698343f4f1f3c"},
    "subject": {"kind": "order", "id": "172158", "external_id": None},
    "data": {
        "status": "unscheduled",
        "vendor_status": 1,
        "order": {"id": "172158", "title": "Visit 12"},
        "location": {"lat": 52.030187, "lng": 4.307636},
    },
    "raw": {
        "entity": "visit",
        "event": "visit.created",
        "id": "evt_698343f4f1f3c",
        "timestamp": "2026-03-10T05:51:02Z",
        "object": {
            "id": 172158,
            "external_id": None,
            "route_id": 0,
            "name": "Visit 12",
            "lat": "52.030187",
            "lng": "4.307636",
            "status": 1,
        },
    },
}


class EventTypeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "order.created",
                    "description": "An order (delivery, visit, task) was created.",
                    "vendors": {
                        "antsroute": ["delivery_created"],
                        "bringg": ["task_created"],
                        "routestripe": ["visit.created"],
                    },
                }
            ]
        }
    )

    type: str
    description: str
    vendors: dict[str, list[str]]


class EventListItem(BaseModel):
    """An event as listed: the full envelope, as subscribers receive it."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EVENT_EXAMPLE]})

    id: str
    type: str
    timestamp: str
    received_at: str
    source: dict[str, Any]
    vendor_event: dict[str, Any]
    subject: dict[str, Any]
    data: dict[str, Any]
    raw: Any
