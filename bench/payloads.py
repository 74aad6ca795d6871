"""The webhook bodies the load generators send, shared by every process of a run so the relay
and its floors see the same bytes."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
BRINGG_FIXTURE = ROOT / "tests" / "fixtures" / "vendors" / "bringg" / "run_started.json"
# A number that appears nowhere else in the body, replaced by a distinct run id per request so
# the relay's dedupe never short-circuits an ingest.
RUN_ID_SLOT = "987654321987"
BRINGG_TOKEN = "bench-bringg-token-0123456789abcdef"  # noqa: S105 - the run's own database only
ROUTESTRIPE_SECRET = "bench-routestripe-secret-0123456789"  # noqa: S105
ROUTESTRIPE_BATCH = 50


def bringg_template() -> str:
    """The Bringg `run_started` fixture as the vendor sends it (indented, ~1 KB)."""
    body = orjson.loads(BRINGG_FIXTURE.read_bytes())
    body["run"]["id"] = int(RUN_ID_SLOT)
    text = orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
    assert text.count(RUN_ID_SLOT) == 1
    return text


def bringg_body(template: str, run_id: int) -> bytes:
    return template.replace(RUN_ID_SLOT, str(run_id)).encode()


def routestripe_body(first_visit: int) -> bytes:
    """A RouteStripe batch of 50 `visit.created` events with fresh visit ids."""
    events: list[dict[str, Any]] = []
    for visit in range(first_visit, first_visit + ROUTESTRIPE_BATCH):
        stamp = "2026-02-04T16:05:08Z"
        events.append(
            {
                "entity": "visit",
                "event": "visit.created",
                "id": f"evt_{visit}",
                "timestamp": stamp,
                "object": {
                    "id": visit,
                    "external_id": None,
                    "route_id": 0,
                    "name": f"Visit {visit}",
                    "lat": "52.030187",
                    "lng": "4.307636",
                    "status": 1,
                    "updated_at": stamp,
                    "created_at": stamp,
                },
            }
        )
    return orjson.dumps(
        {
            "event": "batch",
            "id": f"bth_{first_visit}",
            "timestamp": "2026-02-04T16:05:08Z",
            "provider": "ROUTESTRIPE",
            "api_version": "v1",
            "event_count": len(events),
            "data": {"events": events},
        }
    )


def routestripe_signature(body: bytes) -> str:
    return hmac.new(ROUTESTRIPE_SECRET.encode(), body, hashlib.sha256).hexdigest()
