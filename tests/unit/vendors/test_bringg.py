from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.vendors.base import PayloadError
from tests.unit.vendors.fixtures import (
    fixture_bytes,
    fixture_json,
    parse_body,
    parse_fixture,
    parse_json,
)


def canonical_hash(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_documented_run_started() -> None:
    parsed = parse_fixture("bringg", "run_started")

    [event] = parsed.events
    assert parsed.notes == []
    assert event.type == "route.started"
    assert event.vendor_event_name == "run_started"
    assert event.vendor_event_id is None
    assert (event.subject_kind, event.subject_id, event.subject_external_id) == (
        "route",
        "343433934",
        "343433934",
    )
    assert event.occurred_at == datetime(2024, 2, 5, 11, 0, 30, 336000, tzinfo=UTC)
    assert event.dedupe_key == "run_started:343433934:2024-02-05T11:00:30.336Z"
    assert event.data == {
        "route": {
            "id": "343433934",
            "external_id": "343433934",
            "scheduled_end": "2024-02-05T19:00:00.000Z",
            "started_at": "2024-02-05T11:00:30.336Z",
        },
        "driver": {
            "id": "343343",
            "external_id": "34834839",
            "name": "Zachary Smith",
            "phone": "+1234123445698",
        },
        "orders": [
            {
                "id": "4545484542",
                "external_id": "4545421",
                "title": "Order for James 4545421",
                "status": "accepted",
                "vendor_status": 6,
                "stops": [
                    {
                        "external_id": "5454115",
                        "position": 1,
                        "address": "1 Main St. Smalltown New York 11111",
                        "eta": "2024-02-05T11:30:00.017Z",
                        "scheduled_at": "2024-02-05T11:23:19.017Z",
                    }
                ],
            }
        ],
        "location": {"lat": 40.758896, "lng": -73.98513},
        "extra": {"merchant_id": 1, "team_id": 394839432, "start_method": 1},
    }
    assert event.raw == fixture_json("bringg", "run_started")


def test_documented_optimization_applied() -> None:
    [event] = parse_fixture("bringg", "optimization_applied").events

    assert event.type == "route.optimized"
    assert (event.subject_kind, event.subject_id) == ("plan", None)
    assert event.occurred_at is None
    assert event.dedupe_key == canonical_hash(fixture_json("bringg", "optimization_applied"))
    [route] = event.data["routes"]
    assert route["id"] == "6751234"
    assert route["driver"] == {"id": "17537", "external_id": "user_602", "name": "Test User"}
    assert [order["id"] for order in route["orders"]] == [str(40940001 + n) for n in range(9)]
    assert route["orders"][2]["status"] == "accepted"
    assert event.data["unassigned_orders"] == [
        {
            "id": "12345678",
            "external_id": "101",
            "title": "Order for testing",
            "status": "created",
            "vendor_status": 0,
            "failure": {"code": 5, "reason": "cannot be visited within time window"},
            "stops": [{"id": "545123", "position": 2, "address": "456 Elm Street, Sometown"}],
        }
    ]
    assert event.data["extra"] == {
        "merchant_id": 101,
        "team_id": 1168,
        "origin": "scheduled_route_optimization",
    }


def test_documented_optimization_with_breaks_corrected_to_valid_json() -> None:
    [event] = parse_fixture("bringg", "optimization_applied_with_breaks").events

    assert event.type == "route.optimized"
    [route] = event.data["routes"]
    assert route["scheduled_start"] == "2023-01-01T12:25:00.000Z"
    assert route["driver"]["phone"] == "+15555555555"
    assert [stop["id"] for stop in event.data["unassigned_orders"][0]["stops"]] == ["9876", "9877"]


def test_the_docs_trailing_comma_is_refused_as_sent() -> None:
    as_documented = fixture_bytes("bringg", "run_started").replace(
        b'"merchant_id": 1', b'"merchant_id": 1,'
    )

    with pytest.raises(PayloadError, match="body is not valid JSON"):
        parse_body("bringg", as_documented)


def test_documented_driver_event() -> None:
    [event] = parse_fixture("bringg", "driver_unavailable_status_changed").events

    assert event.type == "driver.status_changed"
    assert (event.subject_kind, event.subject_id, event.subject_external_id) == (
        "driver",
        "3287186",
        "3287186",
    )
    assert event.occurred_at is None
    assert event.dedupe_key == canonical_hash(
        fixture_json("bringg", "driver_unavailable_status_changed")
    )
    assert event.data == {
        "status": "offline",
        "vendor_status": "offline",
        "driver": {
            "id": "3287186",
            "external_id": "3287186",
            "name": "Timothee Chalamet",
            "phone": "+15555551234",
            "available": True,
        },
        "extra": {"merchant_id": 1, "sub": "Assigned"},
    }


def test_task_done() -> None:
    [event] = parse_fixture("bringg", "task_done").events

    assert event.type == "order.completed"
    assert (event.subject_kind, event.subject_id, event.subject_external_id) == (
        "order",
        "88412207",
        "100-77821",
    )
    assert event.occurred_at == datetime(2026, 3, 10, 14, 2, 31, tzinfo=UTC)
    assert event.dedupe_key == "task_done:88412207:2026-03-10T14:02:31.000Z"
    assert event.data["status"] == "done"
    assert event.data["vendor_status"] == 4
    assert event.data["route"] == {"id": "9120054"}
    assert event.data["driver"]["name"] == "Maria Gonzalez"
    assert event.data["order"]["stops"][1] == {
        "id": "71200882",
        "position": 2,
        "address": "1550 N Milwaukee Ave, Chicago, IL 60622",
        "eta": "2026-03-10T13:52:00.000Z",
        "scheduled_at": "2026-03-10T14:00:00.000Z",
        "arrived_at": "2026-03-10T13:55:02.000Z",
        "departed_at": "2026-03-10T14:02:31.000Z",
    }


def test_flat_way_point_arrived() -> None:
    [event] = parse_fixture("bringg", "way_point_arrived").events

    assert event.type == "stop.arrived"
    assert (event.subject_kind, event.subject_id) == ("stop", "71200882")
    assert event.occurred_at == datetime(2026, 3, 10, 13, 55, 2, tzinfo=UTC)
    assert event.dedupe_key == "way_point_arrived:71200882:2026-03-10T13:55:02.000Z"
    assert event.data == {
        "stop": {
            "id": "71200882",
            "position": 2,
            "address": "1550 N Milwaukee Ave, Chicago, IL 60622",
            "eta": "2026-03-10T13:52:00.000Z",
            "scheduled_at": "2026-03-10T14:00:00.000Z",
            "arrived_at": "2026-03-10T13:55:02.000Z",
        },
        "order": {"id": "88412207"},
        "location": {"lat": 41.9094, "lng": -87.6775},
        "recipient": {"name": "Lena Fischer", "phone": "+13125550199"},
        "extra": {"merchant_id": 30117},
    }


def test_nested_way_point_left() -> None:
    [event] = parse_fixture("bringg", "way_point_left").events

    assert event.type == "stop.departed"
    assert (event.subject_kind, event.subject_id) == ("stop", "71200881")
    assert event.dedupe_key == "way_point_left:71200881:2026-03-10T13:11:40.000Z"
    assert event.data["order"] == {
        "id": "88412207",
        "external_id": "100-77821",
        "title": "Order 100-77821",
    }
    assert event.data["driver"] == {
        "id": "58113",
        "external_id": "DRV-0442",
        "name": "Maria Gonzalez",
    }
    assert event.data["recipient"] == {"name": "Fulton Market Warehouse"}


def test_flat_task_with_a_text_status() -> None:
    [event] = parse_fixture("bringg", "task_assigned_to_dp").events

    assert event.type == "order.assigned"
    assert event.subject_id == "88412310"
    assert event.data["status"] == "assigned"
    assert event.data["vendor_status"] == "Assigned to Delivery Provider"
    assert event.data["extra"] == {
        "merchant_id": 30117,
        "fleet_id": 2899,
        "fleet_name": "Windy City Couriers",
    }


def test_flat_task_created() -> None:
    [event] = parse_fixture("bringg", "task_created").events

    assert event.type == "order.created"
    assert event.subject_id == "88412455"
    assert event.dedupe_key == "task_created:88412455:2026-03-10T09:41:27.512Z"


def test_flat_task_without_webhook_type_is_classified_by_status() -> None:
    parsed = parse_fixture("bringg", "task_cancelled_without_webhook_type")

    [event] = parsed.events
    assert parsed.notes == []
    assert event.type == "order.cancelled"
    assert event.vendor_event_name == "task"
    assert (event.subject_kind, event.subject_id) == ("order", "88412310")
    assert event.data["status"] == "cancelled"


@pytest.mark.parametrize(
    ("status", "unified"),
    [(7, "order.cancelled"), ("cancelled", "order.cancelled"), (4, "order.completed"),
     ("Done", "order.completed"), (1, "order.updated"), (None, "order.updated")],
)  # fmt: skip
def test_flat_task_status(status: Any, unified: str) -> None:
    [event] = parse_json("bringg", {"id": 5, "title": "Order", "status": status}).events

    assert event.type == unified


@pytest.mark.parametrize(
    ("fixture", "unified", "kind", "subject_id"),
    [("task_accepted", "order.accepted", "order", "88412207"),
     ("task_rejected", "order.rejected", "order", "88412207"),
     ("task_eta_updated", "order.eta_changed", "order", "88412207"),
     ("task_late", "order.late", "order", "88412207"),
     ("task_note_added", "order.note_added", "order", "88412207"),
     ("task_form_submitted", "order.form_submitted", "order", "88412207"),
     ("task_rated", "order.rated", "order", "88412207"),
     ("route_plan_updated", "route.updated", "route", "9120054"),
     ("shift_started", "driver.shift_started", "driver", "58113"),
     ("shift_ended", "driver.shift_ended", "driver", "58113")],
)  # fmt: skip
def test_constructed_fixtures(fixture: str, unified: str, kind: str, subject_id: str) -> None:
    [event] = parse_fixture("bringg", fixture).events

    assert event.type == unified
    assert (event.subject_kind, event.subject_id) == (kind, subject_id)


def test_task_accepted_is_dated_by_its_accept_time() -> None:
    [event] = parse_fixture("bringg", "task_accepted").events

    assert event.occurred_at == datetime(2026, 3, 10, 12, 47, 9, tzinfo=UTC)
    assert event.dedupe_key == "task_accepted:88412207:2026-03-10T12:47:09.000Z"


def test_eta_update_is_not_dated_by_updated_at() -> None:
    [event] = parse_fixture("bringg", "task_eta_updated").events

    assert event.occurred_at is None
    assert event.dedupe_key == canonical_hash(fixture_json("bringg", "task_eta_updated"))


def test_run_ended_uses_the_end_position() -> None:
    document = {
        "run": {"id": 7, "ended_at": "2026-03-10T18:00:00Z", "end_lat": 41.9, "end_lng": -87.6,
                "start_lat": 40.0, "start_lng": -70.0},
        "webhook_type": "run_ended",
    }  # fmt: skip
    [event] = parse_json("bringg", document).events

    assert event.type == "route.finished"
    assert event.data["location"] == {"lat": 41.9, "lng": -87.6}
    assert event.dedupe_key == "run_ended:7:2026-03-10T18:00:00.000Z"


def test_flat_way_point_without_webhook_type_is_not_taken_for_a_task() -> None:
    document = {"id": 71200882, "task_id": 88412207, "external_id": "wp-2", "position": 2}
    [event] = parse_json("bringg", document).events

    assert (event.type, event.vendor_event_name) == ("bringg.unknown", "unknown")
    assert (event.subject_kind, event.subject_id) == ("stop", "71200882")


def test_unknown_webhook_type_is_kept_with_a_note() -> None:
    parsed = parse_fixture("bringg", "unknown_event")

    [event] = parsed.events
    assert event.type == "bringg.unknown"
    assert event.vendor_event_name == "task_inventory_rejected"
    assert (event.subject_kind, event.subject_id) == ("order", "88412207")
    assert parsed.notes == [
        "unknown bringg event 'task_inventory_rejected': stored as bringg.unknown"
    ]


def test_unrecognisable_body_is_kept_as_unknown() -> None:
    parsed = parse_json("bringg", {"merchant_id": 1, "something": "else"})

    [event] = parsed.events
    assert event.type == "bringg.unknown"
    assert event.vendor_event_name == "unknown"
    assert (event.subject_kind, event.subject_id) == ("unknown", None)
    assert event.data == {"extra": {"merchant_id": 1}}
    assert parsed.notes == ["unknown bringg event 'unknown': stored as bringg.unknown"]


def test_webhook_type_spelling_is_lenient() -> None:
    [event] = parse_json("bringg", {"webhook_type": "Task-Done", "task": {"id": 1}}).events

    assert event.type == "order.completed"
    assert event.vendor_event_name == "Task-Done"


@pytest.mark.parametrize("body", [[1, 2], "task_done", 4, None])
def test_body_must_be_an_object(body: Any) -> None:
    with pytest.raises(PayloadError, match="body must be a JSON object"):
        parse_json("bringg", body)
