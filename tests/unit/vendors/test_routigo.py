from __future__ import annotations

from datetime import UTC, datetime

import pytest

from relay.vendors.base import PayloadError
from tests.unit.vendors.fixtures import fixture_json, parse_fixture, parse_json

TOUR_ID = "b7e0c6d2-5a1f-4f0e-9c53-2d8e4a1b7f90"


@pytest.mark.parametrize(
    ("fixture", "unified", "kind", "subject_id", "key"),
    [("tour_planned", "route.planned", "route", TOUR_ID,
      f"TOUR_PLANNED:{TOUR_ID}:2026-03-09T16:12:05.000Z"),
     ("tour_assigned", "route.assigned", "route", TOUR_ID,
      f"TOUR_ASSIGNED:{TOUR_ID}:2026-03-10T05:48:19.000Z"),
     ("tour_started", "route.started", "route", TOUR_ID,
      f"TOUR_STARTED:{TOUR_ID}:2026-03-10T06:02:41.000Z"),
     ("tour_finished", "route.finished", "route", TOUR_ID,
      f"TOUR_FINISHED:{TOUR_ID}:2026-03-10T11:31:56.000Z"),
     ("stop_arrived", "stop.arrived", "stop", "stp-88102",
      "STOP_ARRIVED:stp-88102:2026-03-10T06:43:15.000Z"),
     ("stop_done", "stop.completed", "stop", "stp-88102",
      "STOP_DONE:stp-88102:2026-03-10T06:49:50.000Z"),
     ("shipment_done", "order.completed", "order", "shp-30045",
      "SHIPMENT_DONE:shp-30045:2026-03-10T06:49:50.000Z"),
     ("assignment_done", "order.completed", "order", "shp-30045",
      "ASSIGNMENT_DONE:shp-30045:2026-03-10T06:48:37.000Z"),
     ("assignment_not_delivered", "order.failed", "order", "shp-30051",
      "ASSIGNMENT_DONE:shp-30051:2026-03-10T07:05:12.000Z"),
     ("legacy_route_planned", "route.planned", "route", "48213",
      "ROUTE_PLANNED:48213:2026-03-09T17:30:12.000Z"),
     ("legacy_route_started", "route.started", "route", "48213",
      "ROUTE_STARTED:48213:2026-03-10T07:01:44.000Z")],
)  # fmt: skip
def test_fixtures(fixture: str, unified: str, kind: str, subject_id: str, key: str) -> None:
    parsed = parse_fixture("routigo", fixture)

    [event] = parsed.events
    assert parsed.notes == []
    assert event.type == unified
    assert (event.subject_kind, event.subject_id) == (kind, subject_id)
    assert event.dedupe_key == key
    assert event.vendor_event_id is None
    assert event.raw == fixture_json("routigo", fixture)


def test_tour_planned() -> None:
    [event] = parse_fixture("routigo", "tour_planned").events

    assert event.subject_external_id == "UTR-2026-03-10-03"
    assert event.occurred_at == datetime(2026, 3, 9, 16, 12, 5, tzinfo=UTC)
    assert event.data["route"] == {
        "id": TOUR_ID,
        "external_id": "UTR-2026-03-10-03",
        "name": "Utrecht Oost ochtend",
        "scheduled_start": "2026-03-10T06:00:00.000Z",
        "scheduled_end": "2026-03-10T11:45:00.000Z",
    }
    assert event.data["stops"][0] == {
        "id": "stp-88101",
        "position": 1,
        "address": "Biltstraat 112, 3572 BK Utrecht, NL",
        "eta": "2026-03-10T06:25:00.000Z",
    }
    assert len(event.data["stops"]) == 3


def test_tour_started_names_the_driver() -> None:
    [event] = parse_fixture("routigo", "tour_started").events

    assert event.data["driver"] == {
        "id": "drv-2291",
        "name": "Sanne de Vries",
        "phone": "+31612345678",
    }
    assert event.data["route"]["started_at"] == "2026-03-10T06:02:41.000Z"


def test_legacy_journey_legs_become_orders() -> None:
    [event] = parse_fixture("routigo", "legacy_route_planned").events

    assert event.data == {
        "route": {"id": "48213", "name": "Rit 48213"},
        "orders": [
            {
                "id": "100004521",
                "tracking_code": "3SRTG0004521",
                "stops": [{"position": 1, "eta": "2026-03-10T07:15:00.000Z"}],
            },
            {
                "id": "100004522",
                "tracking_code": "3SRTG0004522",
                "stops": [{"position": 2, "eta": "2026-03-10T07:32:00.000Z"}],
            },
        ],
    }


def test_stop_done_lists_its_assignments() -> None:
    [event] = parse_fixture("routigo", "stop_done").events

    assert event.data["status"] == "done"
    assert event.data["location"] == {"lat": 52.0894, "lng": 5.118}
    assert event.data["orders"] == [
        {"id": "shp-30045", "external_id": "ORD-2026-11873", "tracking_code": "3SRTG0011873",
         "status": "done", "vendor_status": "DELIVERED"},
        {"id": "shp-30046", "external_id": "RET-2026-00412", "tracking_code": "3SRTG0011874",
         "status": "done", "vendor_status": "PICKED_UP"},
    ]  # fmt: skip


def test_assignment_not_delivered() -> None:
    [event] = parse_fixture("routigo", "assignment_not_delivered").events

    assert event.data == {
        "status": "failed",
        "vendor_status": "NOT_DELIVERED",
        "order": {
            "id": "shp-30051",
            "external_id": "ORD-2026-11890",
            "tracking_code": "3SRTG0011890",
        },
        "stop": {
            "id": "stp-88103",
            "address": "Amsterdamsestraatweg 410, 3551 CT Utrecht, NL",
            "arrived_at": "2026-03-10T07:03:40.000Z",
        },
        "route": {"id": TOUR_ID},
        "location": {"lat": 52.1039, "lng": 5.095},
        "failure": {"reason": "Not at home"},
        "extra": {"assignment_id": "asg-551033", "assignment_type": "DELIVERY"},
    }


def test_trigger_from_the_query_parameter() -> None:
    parsed = parse_fixture(
        "routigo", "tour_unassigned_without_trigger", query={"event": "TOUR_UNASSIGNED"}
    )

    [event] = parsed.events
    assert parsed.notes == []
    assert (event.type, event.vendor_event_name) == ("route.unassigned", "TOUR_UNASSIGNED")
    assert event.dedupe_key == f"TOUR_UNASSIGNED:{TOUR_ID}:2026-03-10T05:51:02.000Z"


def test_trigger_from_the_header() -> None:
    [event] = parse_fixture(
        "routigo", "tour_unassigned_without_trigger", headers={"x-routigo-event": "TOUR_UNASSIGNED"}
    ).events

    assert event.type == "route.unassigned"


def test_trigger_in_the_body_wins_over_the_query() -> None:
    [event] = parse_fixture("routigo", "tour_started", query={"event": "TOUR_FINISHED"}).events

    assert event.type == "route.started"


def test_payload_type_in_event_type_is_not_taken_for_the_trigger() -> None:
    document = {"eventType": "TOUR", "tour": {"id": "t1"}}
    [event] = parse_json("routigo", document).events

    assert event.type == "routigo.unknown"
    assert (event.subject_kind, event.subject_id) == ("route", "t1")


def test_no_trigger_anywhere_is_kept_as_unknown() -> None:
    parsed = parse_fixture("routigo", "tour_unassigned_without_trigger")

    [event] = parsed.events
    assert (event.type, event.vendor_event_name) == ("routigo.unknown", "unknown")
    assert event.subject_id == TOUR_ID
    assert event.dedupe_key.startswith("sha256:")
    assert parsed.notes == ["unknown routigo event 'unknown': stored as routigo.unknown"]


def test_unknown_trigger_is_kept_with_a_note() -> None:
    parsed = parse_fixture("routigo", "unknown_event")

    [event] = parsed.events
    assert (event.type, event.vendor_event_name) == ("routigo.unknown", "TOUR_CANCELLED")
    assert parsed.notes == ["unknown routigo event 'TOUR_CANCELLED': stored as routigo.unknown"]


@pytest.mark.parametrize(
    "spelling", ["tour.started", "tourStarted", "Tour Started", "tour-started"]
)
def test_trigger_spelling_is_lenient(spelling: str) -> None:
    [event] = parse_json("routigo", {"event": spelling, "tour": {"id": "t1"}}).events

    assert event.type == "route.started"


@pytest.mark.parametrize(
    ("document", "kind", "subject_id"),
    [({"event": "STOP_DONE", "id": "s1"}, "stop", "s1"),
     ({"event": "ASSIGNMENT_DONE", "data": {"assignment": {"id": "a1"}}}, "order", "a1"),
     ({"event": "ASSIGNMENT_DONE", "assignment": {"id": "a1", "shipment": {"id": "s9"}}},
      "order", "s9"),
     ({"event": "TOUR_STARTED", "type": "SHIPMENT", "id": "x1"}, "order", "x1")],
)  # fmt: skip
def test_payload_type_is_recognised_leniently(
    document: dict[str, object], kind: str, subject_id: str
) -> None:
    [event] = parse_json("routigo", document).events

    assert (event.subject_kind, event.subject_id) == (kind, subject_id)


def test_array_body_is_refused() -> None:
    with pytest.raises(PayloadError, match="body must be a JSON object, got an array"):
        parse_json("routigo", [{"event": "TOUR_STARTED"}])
