from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.vendors.base import PayloadError
from tests.unit.vendors.fixtures import fixture_json, parse_fixture, parse_json


def batch(*events: dict[str, Any], count: Any = None) -> dict[str, Any]:
    return {
        "event": "batch",
        "id": "bth_1",
        "timestamp": "2026-03-10T10:00:00Z",
        "provider": "ROUTESTRIPE",
        "api_version": "v1",
        "event_count": len(events) if count is None else count,
        "data": {"events": list(events)},
    }


def visit_event(event_id: str = "evt_1", **visit: Any) -> dict[str, Any]:
    return {
        "entity": "visit",
        "event": "visit.status.changed",
        "id": event_id,
        "timestamp": "2026-03-10T10:00:00Z",
        "object": {"id": 1, "status": 3, **visit},
    }


def test_documented_visit_created() -> None:
    parsed = parse_fixture("routestripe", "visit_created")

    assert parsed.kind == "events"
    assert parsed.notes == []
    [event] = parsed.events
    assert event.type == "order.created"
    assert event.vendor_event_name == "visit.created"
    assert event.vendor_event_id == "evt_69834404dfe60"
    assert (event.subject_kind, event.subject_id, event.subject_external_id) == (
        "order",
        "172158",
        None,
    )
    assert event.occurred_at == datetime(2026, 2, 4, 16, 5, 8, tzinfo=UTC)
    assert event.dedupe_key == "evt_69834404dfe60"
    assert event.data == {
        "status": "unscheduled",
        "vendor_status": 1,
        "order": {"id": "172158", "title": "Visit 12"},
        "location": {"lat": 52.030187, "lng": 4.307636},
        "extra": {"plan_id": 3451, "type": "D", "start_time": "08:00", "end_time": "20:00"},
    }
    assert event.raw == fixture_json("routestripe", "visit_created")["data"]["events"][0]


def test_documented_photo_attachment_is_about_its_visit() -> None:
    [event] = parse_fixture("routestripe", "photo_created").events

    assert event.type == "proof.photo_added"
    assert (event.subject_kind, event.subject_id) == ("order", "172109")
    assert event.occurred_at == datetime(2026, 2, 4, 16, 4, 52, tzinfo=UTC)
    assert event.dedupe_key == "evt_698343f4f1f3c"
    assert event.data == {
        "order": {"id": "172109"},
        "proof": {
            "kind": "photo",
            "id": "305",
            "path": "attachments/7/0001/0001/72opJt6l8h8NwlpLj1ORNMPmIHIoHWBneO.jpg",
        },
    }


def test_documented_ping_makes_no_event() -> None:
    parsed = parse_fixture("routestripe", "ping")

    assert parsed.kind == "ping"
    assert parsed.events == []


def test_batch_is_split_into_one_event_per_entry() -> None:
    events = parse_fixture("routestripe", "batch_mixed").events
    document = fixture_json("routestripe", "batch_mixed")

    assert [(e.type, e.subject_id, e.dedupe_key) for e in events] == [
        ("order.scheduled", "172160", "evt_69aff1c3a0b10"),
        ("order.updated", "172160", "evt_69b00a7e51c22"),
        ("order.updated", "172160", "evt_69b0123f9d233"),
        ("order.completed", "172160", "evt_69b01b9e02f44"),
        ("proof.signature_added", "172160", "evt_69b01b9f7a355"),
        ("order.failed", "172161", "evt_69b02466c8e66"),
        ("order.updated", "172175", "evt_69b02b01e4f77"),
    ]
    assert [e.raw for e in events] == document["data"]["events"]
    assert events[3].occurred_at == datetime(2026, 3, 10, 10, 0, 30, tzinfo=UTC)


def test_note_changes_say_which_note() -> None:
    events = parse_fixture("routestripe", "batch_mixed").events

    assert events[1].data["change"] == "delivery_note"
    assert events[1].data["note"] == {"field": "delivery_note", "text": "Ring twice, side entrance"}
    assert events[2].data["change"] == "recipient_note"
    assert events[2].data["note"] == {
        "field": "recipient_note",
        "text": "Please leave with the neighbour at 54",
    }


def test_failed_visit_carries_the_documented_reason() -> None:
    failed = parse_fixture("routestripe", "batch_mixed").events[5]

    assert failed.data["status"] == "failed"
    assert failed.data["vendor_status"] == 5
    assert failed.data["failure"] == {"code": 2, "reason": "No answer to the call"}
    assert failed.data["route"] == {"id": "5120"}
    assert failed.data["stop"] == {
        "position": 8,
        "address": "Frederik Hendriklaan 120, 2582 BV Den Haag",
    }


def test_visit_without_route_position_or_coordinates_omits_them() -> None:
    unplanned = parse_fixture("routestripe", "batch_mixed").events[6]

    assert unplanned.data["status"] == "planning"
    assert "route" not in unplanned.data
    assert unplanned.data["stop"] == {"address": "Prins Hendrikplein 1, 2518 JA Den Haag"}
    assert "location" not in unplanned.data
    assert "recipient" not in unplanned.data


@pytest.mark.parametrize(
    ("status", "unified"),
    [(1, "order.updated"), (2, "order.updated"), (3, "order.scheduled"), (4, "order.completed"),
     (5, "order.failed"), ("4", "order.completed"), (9, "order.updated"), (None, "order.updated")],
)  # fmt: skip
def test_status_change_type_follows_the_new_status(status: Any, unified: str) -> None:
    [event] = parse_json("routestripe", batch(visit_event(status=status))).events

    assert event.type == unified


def test_signature_attachment() -> None:
    event = parse_fixture("routestripe", "batch_mixed").events[4]

    assert event.type == "proof.signature_added"
    assert event.subject_kind == "order"
    assert event.data["proof"]["kind"] == "signature"


@pytest.mark.parametrize(
    ("lat", "lng", "expected"),
    [("52.030187", "4.307636", {"lat": 52.030187, "lng": 4.307636}),
     (52.5, 4, {"lat": 52.5, "lng": 4.0}),
     ("", "4.3", None), ("52,03", "4.3", None), ("nan", "4.3", None), ("91", "4.3", None),
     ("52.0", None, None), ("1e999", "4.3", None)],
)  # fmt: skip
def test_coordinates_arrive_as_strings_and_are_dropped_when_unreadable(
    lat: Any, lng: Any, expected: dict[str, float] | None
) -> None:
    [event] = parse_json("routestripe", batch(visit_event(lat=lat, lng=lng))).events

    assert event.data.get("location") == expected


def test_event_count_must_match_the_entries() -> None:
    with pytest.raises(PayloadError, match=r"event_count is 3 but data\.events holds 2 events"):
        parse_json("routestripe", batch(visit_event("evt_1"), visit_event("evt_2"), count=3))


def test_event_count_must_be_a_number() -> None:
    with pytest.raises(PayloadError, match="event_count must be a whole number, got a string"):
        parse_json("routestripe", batch(visit_event(), count="one"))


def test_event_count_as_digits_is_accepted() -> None:
    assert len(parse_json("routestripe", batch(visit_event(), count="1")).events) == 1


def test_event_count_may_be_absent() -> None:
    document = batch(visit_event())
    del document["event_count"]

    assert len(parse_json("routestripe", document).events) == 1


def test_empty_batch_makes_no_event() -> None:
    parsed = parse_json("routestripe", batch())

    assert parsed.kind == "events"
    assert parsed.events == []


def test_batch_without_events_is_refused() -> None:
    document = batch()
    del document["data"]

    with pytest.raises(PayloadError, match=r"data\.events"):
        parse_json("routestripe", document)


def test_events_must_be_an_array() -> None:
    document = batch()
    document["data"]["events"] = {"0": visit_event()}

    with pytest.raises(
        PayloadError, match=r"data\.events must be an array of events, got an object"
    ):
        parse_json("routestripe", document)


def test_every_entry_must_be_an_object() -> None:
    with pytest.raises(PayloadError, match=r"data\.events\[1\] must be an object, got a string"):
        parse_json("routestripe", batch(visit_event(), "evt_2"))  # type: ignore[arg-type]


def test_an_event_outside_a_batch_is_kept() -> None:
    [event] = parse_json("routestripe", visit_event("evt_9", status=4)).events

    assert event.type == "order.completed"
    assert event.dedupe_key == "evt_9"


def test_unknown_event_is_kept_with_a_note() -> None:
    parsed = parse_fixture("routestripe", "unknown_event")

    [event] = parsed.events
    assert event.type == "routestripe.unknown"
    assert event.vendor_event_name == "visit.deleted"
    assert (event.subject_kind, event.subject_id) == ("order", "172190")
    assert event.dedupe_key == "evt_69b03c11a9ff1"
    assert parsed.notes == [
        "unknown routestripe event 'visit.deleted': stored as routestripe.unknown"
    ]


def test_one_note_per_unknown_name() -> None:
    unknown = {**visit_event("evt_1"), "event": "visit.archived"}
    parsed = parse_json("routestripe", batch(unknown, {**unknown, "id": "evt_2"}))

    assert [e.type for e in parsed.events] == ["routestripe.unknown"] * 2
    assert len(parsed.notes) == 1


def test_entry_without_id_falls_back_to_name_visit_and_time() -> None:
    entry = visit_event()
    del entry["id"]
    [event] = parse_json("routestripe", batch(entry)).events

    assert event.vendor_event_id is None
    assert event.dedupe_key == "visit.status.changed:1:2026-03-10T10:00:00.000Z"


def test_entry_without_id_or_time_is_deduplicated_by_its_content() -> None:
    entry = visit_event()
    del entry["id"], entry["timestamp"]
    first, second = parse_json(
        "routestripe", batch(entry, {**entry, "object": {"id": 2, "status": 3}})
    ).events

    assert first.dedupe_key.startswith("sha256:")
    assert first.dedupe_key != second.dedupe_key
    assert first.dedupe_key == parse_json("routestripe", batch(entry)).events[0].dedupe_key


def test_raw_keeps_ids_as_sent() -> None:
    [event] = parse_json("routestripe", batch(visit_event(id=172158))).events

    assert event.subject_id == "172158"
    assert json.dumps(event.raw["object"]["id"]) == "172158"
