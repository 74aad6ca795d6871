"""The example envelope docs/events.md shows for each unified type, built by the adapters from
the fixtures so that the documentation shows what subscribers really receive.

`python -m tests.unit.vendors.examples` prints the examples section of docs/events.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ulid import ULID

from relay.events.envelope import build_envelope, ping_envelope
from relay.events.taxonomy import EVENT_TYPES
from relay.vendors.base import NormalizedEvent
from tests.unit.vendors.fixtures import parse_fixture

SLUGS = {
    "routigo": "routigo-utrecht",
    "antsroute": "antsroute-paris",
    "bringg": "bringg-chicago",
    "routestripe": "routestripe-den-haag",
}
# When the payload says nothing about when it happened, the envelope's timestamp is this.
UNDATED_RECEIPT = datetime(2026, 3, 10, 14, 20, 5, 318000, tzinfo=UTC)
TRANSIT = timedelta(milliseconds=412)


@dataclass(frozen=True, slots=True)
class Example:
    vendor: str
    fixture: str
    index: int = 0
    query: dict[str, str] = field(default_factory=dict)


EXAMPLES: dict[str, Example] = {
    "route.planned": Example("routigo", "tour_planned"),
    "route.updated": Example("bringg", "route_plan_updated"),
    "route.optimized": Example("bringg", "optimization_applied_with_breaks"),
    "route.assigned": Example("routigo", "tour_assigned"),
    "route.unassigned": Example(
        "routigo", "tour_unassigned_without_trigger", query={"event": "TOUR_UNASSIGNED"}
    ),
    "route.started": Example("bringg", "run_started"),
    "route.finished": Example("routigo", "tour_finished"),
    "stop.arrived": Example("bringg", "way_point_arrived"),
    "stop.departed": Example("bringg", "way_point_left"),
    "stop.completed": Example("routigo", "stop_done"),
    "order.created": Example("routestripe", "visit_created"),
    "order.updated": Example("routestripe", "batch_mixed", 1),
    "order.confirmed": Example("antsroute", "delivery_confirmed"),
    "order.pending": Example("antsroute", "delivery_pending"),
    "order.scheduled": Example("routestripe", "batch_mixed", 0),
    "order.unscheduled": Example("antsroute", "delivery_moved_to_basket"),
    "order.assigned": Example("antsroute", "delivery_assigned"),
    "order.unassigned": Example("antsroute", "delivery_unassigned"),
    "order.rescheduled": Example("antsroute", "planning_date_changed"),
    "order.eta_changed": Example("bringg", "task_eta_updated"),
    "order.accepted": Example("bringg", "task_accepted"),
    "order.rejected": Example("bringg", "task_rejected"),
    "order.locked": Example("antsroute", "delivery_locked"),
    "order.late": Example("bringg", "task_late"),
    "order.loaded": Example("antsroute", "loading_done"),
    "order.loading_cancelled": Example("antsroute", "loading_cancelled"),
    "order.unloaded": Example("antsroute", "unloading_done"),
    "order.unloading_cancelled": Example("antsroute", "unloading_cancelled"),
    "order.completed": Example("bringg", "task_done"),
    "order.failed": Example("routestripe", "batch_mixed", 5),
    "order.cancelled": Example("bringg", "task_cancelled_without_webhook_type"),
    "order.deleted": Example("antsroute", "delivery_deleted"),
    "order.note_added": Example("bringg", "task_note_added"),
    "order.form_submitted": Example("bringg", "task_form_submitted"),
    "order.rated": Example("bringg", "task_rated"),
    "proof.photo_added": Example("routestripe", "photo_created"),
    "proof.signature_added": Example("antsroute", "customer_signature_added"),
    "driver.status_changed": Example("bringg", "driver_unavailable_status_changed"),
    "driver.shift_started": Example("bringg", "shift_started"),
    "driver.shift_ended": Example("bringg", "shift_ended"),
    "notification.sent": Example("antsroute", "notification_sent"),
    "routigo.unknown": Example("routigo", "unknown_event"),
    "antsroute.unknown": Example("antsroute", "unknown_event"),
    "bringg.unknown": Example("bringg", "unknown_event"),
    "routestripe.unknown": Example("routestripe", "unknown_event"),
}


def _stable_id(prefix: str, moment: datetime, seed: str) -> str:
    millis = int(moment.timestamp() * 1000).to_bytes(6, "big")
    return f"{prefix}_{ULID.from_bytes(millis + hashlib.sha256(seed.encode()).digest()[:10])}"


def example_event(unified_type: str) -> NormalizedEvent:
    example = EXAMPLES[unified_type]
    parsed = parse_fixture(example.vendor, example.fixture, query=example.query)
    return parsed.events[example.index]


def example_envelope(unified_type: str) -> dict[str, Any]:
    if unified_type == "relay.ping":
        return ping_envelope(
            event_id=_stable_id("evt", UNDATED_RECEIPT, unified_type),
            subscription_id=_stable_id("sub", datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "erp"),
            now=UNDATED_RECEIPT,
        )
    example = EXAMPLES[unified_type]
    event = example_event(unified_type)
    received_at = UNDATED_RECEIPT if event.occurred_at is None else event.occurred_at + TRANSIT
    return build_envelope(
        event_id=_stable_id("evt", received_at, unified_type),
        event=event,
        source_id=_stable_id("src", datetime(2026, 3, 2, 9, 0, tzinfo=UTC), example.vendor),
        source_slug=SLUGS[example.vendor],
        vendor=example.vendor,
        received_at=received_at,
    )


def _origin(unified_type: str) -> str:
    example = EXAMPLES.get(unified_type)
    if example is None:
        return "Sent by `POST /v1/subscriptions/{id}/test`."
    origin = f"From `tests/fixtures/vendors/{example.vendor}/{example.fixture}.json`"
    if example.index:
        origin += f", entry {example.index}"
    if example.query:
        query = "&".join(f"{name}={value}" for name, value in example.query.items())
        origin += f", received with `?{query}`"
    return origin + "."


def render_examples() -> str:
    sections = []
    for unified_type, description in EVENT_TYPES.items():
        envelope = json.dumps(example_envelope(unified_type), indent=2, ensure_ascii=False)
        sections.append(
            f"### {unified_type}\n\n{description} {_origin(unified_type)}\n\n"
            f"```json\n{envelope}\n```\n"
        )
    return "\n".join(sections)


if __name__ == "__main__":
    print(render_examples())
