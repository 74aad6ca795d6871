"""One webhook per vendor as the vendor would send it, for testing a source end to end.

Each is a new order (so an `order.*` subscription receives it) with ids and times of its own:
a second test is a second event, never a duplicate of the first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(unique: str) -> int:
    # Some vendors number their entities; a number of its own for each test as well.
    return int.from_bytes(unique.encode()) % 1_000_000_000


def _routestripe(unique: str, now: datetime) -> dict[str, Any]:
    return {
        "event": "batch",
        "id": f"bth_{unique}",
        "timestamp": _iso(now),
        "provider": "ROUTESTRIPE",
        "api_version": "v1",
        "event_count": 1,
        "data": {
            "events": [
                {
                    "entity": "visit",
                    "event": "visit.created",
                    "id": f"evt_{unique}",
                    "timestamp": _iso(now),
                    "object": {
                        "id": _number(unique),
                        "external_id": f"test-{unique}",
                        "route_id": 0,
                        "name": "Test visit",
                        "lat": "52.0302",
                        "lng": "4.3076",
                        "status": 1,
                        "updated_at": _iso(now),
                        "created_at": _iso(now),
                    },
                }
            ]
        },
    }


def _bringg(unique: str, now: datetime) -> dict[str, Any]:
    return {
        "id": _number(unique),
        "title": f"Test order {unique}",
        "external_id": f"test-{unique}",
        "status": 0,
        "created_at": _iso(now),
        "updated_at": _iso(now),
        "task_type_id": 5,
        "merchant_id": 1,
        "webhook_type": "task_created",
        "way_points": [
            {
                "id": _number(unique) + 1,
                "position": 1,
                "address": "Test address",
                "scheduled_at": None,
            }
        ],
    }


def _antsroute(unique: str, now: datetime) -> dict[str, Any]:
    return {
        "event": "delivery_created",
        "timestamp": _iso(now),
        "order": {
            "id": f"test-{unique}",
            "reference": f"TEST-{unique}",
            "status": "created",
            "type": "delivery",
            "date": now.date().isoformat(),
        },
    }


def _routigo(unique: str, now: datetime) -> dict[str, Any]:
    return {
        "routigoEvent": "SHIPMENT_DONE",
        "routigoEventType": "SHIPMENT",
        "timestamp": _iso(now),
        "shipment": {
            "id": f"test-{unique}",
            "reference": f"TEST-{unique}",
            "status": "DELIVERED",
        },
    }


SAMPLES: dict[str, Callable[[str, datetime], dict[str, Any]]] = {
    "routestripe": _routestripe,
    "bringg": _bringg,
    "antsroute": _antsroute,
    "routigo": _routigo,
}


def sample_webhook(vendor: str, *, unique: str, now: datetime) -> dict[str, Any]:
    """`unique` goes into every id the relay dedupes on; `now` is the event's time."""
    return SAMPLES[vendor](unique, now)
