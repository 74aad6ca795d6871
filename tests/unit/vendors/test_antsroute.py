from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.vendors.antsroute import EVENTS, VENDOR_EVENTS, canonical_name
from relay.vendors.base import PayloadError
from tests.unit.vendors.fixtures import fixture_json, parse_fixture, parse_json

ORDER_ID = "65f0c2a1e4b0a21d9c3f5a17"


def camel(label: str) -> str:
    words = re.findall(r"[A-Za-z]+", label)
    return words[0].lower() + "".join(word.capitalize() for word in words[1:])


@pytest.mark.parametrize(("name", "label", "unified"), [(n, lab, u) for n, lab, u, _ in EVENTS])
def test_every_documented_label_is_understood_in_every_spelling(
    name: str, label: str, unified: str
) -> None:
    spellings = {label, label.upper(), label.lower(), camel(label), name, name.upper()}
    for spelling in spellings:
        [event] = parse_json("antsroute", {"event": spelling, "order": {"id": "1"}}).events

        assert event.type == unified, spelling
        assert event.vendor_event_name == spelling


@pytest.mark.parametrize(
    ("spelling", "unified"),
    [("Delivery cancelled", "order.cancelled"), ("delivery_canceled", "order.cancelled"),
     ("order_cancelled", "order.cancelled"),
     ("DELIVERY_SET_TO_UNASSIGNED_STATE", "order.unassigned"),
     ("Delivery moved forward or delayed or assigned to another route", "order.rescheduled"),
     ("Delivery assigned to a route in progress", "order.assigned"),
     ("Delivery scheduled from the basket", "order.scheduled"),
     ("Delivery moved to the basket", "order.unscheduled"),
     ("Proof of delivery (photo) added", "proof.photo_added"),
     ("customerSignatureAdded", "proof.signature_added"), ("Route ended", "route.finished"),
     ("notification.sent", "notification.sent"),
     ("Unloading cancelled", "order.unloading_cancelled")],
)  # fmt: skip
def test_spellings(spelling: str, unified: str) -> None:
    assert VENDOR_EVENTS[canonical_name(spelling)] == unified


@pytest.mark.parametrize("key", ["event", "eventType", "event_type", "type", "webhookEvent",
                                 "trigger", "action"])  # fmt: skip
def test_name_is_found_under_every_likely_key(key: str) -> None:
    [event] = parse_json("antsroute", {key: "Delivery done", "order": {"id": "1"}}).events

    assert event.type == "order.completed"


def test_delivery_done_with_all_order_information() -> None:
    [event] = parse_fixture("antsroute", "delivery_done").events

    assert event.type == "order.completed"
    assert event.vendor_event_name == "delivery_done"
    assert event.vendor_event_id is None
    assert (event.subject_kind, event.subject_id, event.subject_external_id) == (
        "order",
        ORDER_ID,
        "CMD-2026-00871",
    )
    assert event.occurred_at == datetime(2026, 3, 10, 10, 14, 22, 481000, tzinfo=UTC)
    assert event.dedupe_key == f"delivery_done:{ORDER_ID}:2026-03-10T10:14:22.481Z"
    assert event.data == {
        "status": "done",
        "vendor_status": "done",
        "order": {"id": ORDER_ID, "external_id": "CMD-2026-00871"},
        "route": {"id": "65f0b9d3e4b0a21d9c3f4e02", "name": "Paris Est - tournée 3"},
        "driver": {
            "id": "65e1a0c4e4b0a21d9c3f1b77",
            "name": "Karim Benali",
            "phone": "+33612345678",
        },
        "stop": {
            "position": 4,
            "address": "12 rue de la Roquette, 75011 Paris, France",
            "eta": "2026-03-10T10:05:00.000Z",
        },
        "location": {"lat": 48.8553, "lng": 2.3739},
        "recipient": {"name": "Boulangerie Martin", "phone": "+33142000000"},
    }
    assert event.raw == fixture_json("antsroute", "delivery_done")


def test_route_started() -> None:
    [event] = parse_fixture("antsroute", "route_started").events

    assert event.type == "route.started"
    assert (event.subject_kind, event.subject_id) == ("route", "65f0b9d3e4b0a21d9c3f4e02")
    assert event.dedupe_key == "route_started:65f0b9d3e4b0a21d9c3f4e02:2026-03-10T07:58:12.903Z"
    assert event.data == {
        "route": {
            "id": "65f0b9d3e4b0a21d9c3f4e02",
            "name": "Paris Est - tournée 3",
            "started_at": "2026-03-10T07:58:12.000Z",
        },
        "driver": {
            "id": "65e1a0c4e4b0a21d9c3f1b77",
            "name": "Karim Benali",
            "phone": "+33612345678",
        },
    }


@pytest.mark.parametrize(
    ("fixture", "kind", "url"),
    [("proof_photo_added", "photo",
      "https://files.antsroute.example/pod/65f0c2a1e4b0a21d9c3f5a17/1.jpg"),
     ("customer_signature_added", "signature",
      "https://files.antsroute.example/signatures/65f0c2a1e4b0a21d9c3f5a17.png")],
)  # fmt: skip
def test_proof_is_about_the_order(fixture: str, kind: str, url: str) -> None:
    [event] = parse_fixture("antsroute", fixture).events

    assert (event.subject_kind, event.subject_id) == ("order", ORDER_ID)
    assert event.data["proof"] == {"kind": kind, "url": url}


def test_notification() -> None:
    [event] = parse_fixture("antsroute", "notification_sent").events

    assert event.type == "notification.sent"
    assert event.subject_id == ORDER_ID
    assert event.data["notification"] == {
        "channel": "sms",
        "recipient": "+33142000000",
        "template": "Veille de livraison",
    }


def test_status_removal_says_what_changed() -> None:
    [event] = parse_fixture("antsroute", "confirmed_status_removed").events

    assert event.type == "order.updated"
    assert event.data["change"] == "confirmed_status_removed"


def test_order_wrapped_in_data_with_camel_case_name() -> None:
    [event] = parse_fixture("antsroute", "delivery_updated_flat").events

    assert event.type == "order.updated"
    assert event.vendor_event_name == "deliveryUpdated"
    assert (event.subject_id, event.subject_external_id) == (ORDER_ID, "CMD-2026-00871")
    assert event.data["route"] == {"id": "65f0b9d3e4b0a21d9c3f4e02"}
    assert event.data["location"] == {"lat": 48.8553, "lng": 2.3739}
    assert event.occurred_at is None
    assert event.dedupe_key.startswith("sha256:")


@pytest.mark.parametrize(
    ("fixture", "unified"),
    [("delivery_created", "order.created"), ("delivery_confirmed", "order.confirmed"),
     ("delivery_pending", "order.pending"), ("delivery_scheduled_from_basket", "order.scheduled"),
     ("delivery_moved_to_basket", "order.unscheduled"), ("delivery_assigned", "order.assigned"),
     ("delivery_unassigned", "order.unassigned"), ("planning_date_changed", "order.rescheduled"),
     ("delivery_locked", "order.locked"), ("loading_done", "order.loaded"),
     ("loading_cancelled", "order.loading_cancelled"), ("unloading_done", "order.unloaded"),
     ("unloading_cancelled", "order.unloading_cancelled")],
)  # fmt: skip
def test_order_fixtures(fixture: str, unified: str) -> None:
    [event] = parse_fixture("antsroute", fixture).events

    assert event.type == unified
    assert (event.subject_kind, event.subject_id) == ("order", ORDER_ID)
    assert event.occurred_at is not None
    assert event.dedupe_key.startswith(f"{event.vendor_event_name}:{ORDER_ID}:")


def test_deleted_order_with_ids_only() -> None:
    [event] = parse_fixture("antsroute", "delivery_deleted").events

    assert event.type == "order.deleted"
    assert event.data == {
        "order": {"id": "65f0c2a1e4b0a21d9c3f5a19", "external_id": "CMD-2026-00873"}
    }


def test_planning_date_is_not_taken_as_the_event_time() -> None:
    document = {"event": "delivery_updated", "order": {"id": "1", "date": "2026-03-10"}}
    [event] = parse_json("antsroute", document).events

    assert event.occurred_at is None
    assert event.dedupe_key.startswith("sha256:")


def test_unknown_event_is_kept_with_a_note() -> None:
    parsed = parse_fixture("antsroute", "unknown_event")

    [event] = parsed.events
    assert event.type == "antsroute.unknown"
    assert event.vendor_event_name == "Delivery rated"
    assert event.subject_id == ORDER_ID
    assert parsed.notes == ["unknown antsroute event 'Delivery rated': stored as antsroute.unknown"]


def test_body_without_name_is_kept_as_unknown() -> None:
    parsed = parse_json("antsroute", {"order": {"id": "7"}})

    [event] = parsed.events
    assert (event.type, event.vendor_event_name, event.subject_id) == (
        "antsroute.unknown",
        "unknown",
        "7",
    )
    assert parsed.notes == ["unknown antsroute event 'unknown': stored as antsroute.unknown"]


def test_an_array_body_is_one_event_per_item() -> None:
    parsed = parse_json(
        "antsroute",
        [
            {"event": "Delivery done", "order": {"id": "1"}},
            {"event": "Route started", "route": {"id": "r"}},
        ],
    )

    assert [(e.type, e.subject_kind, e.subject_id) for e in parsed.events] == [
        ("order.completed", "order", "1"),
        ("route.started", "route", "r"),
    ]
    assert parsed.events[0].raw == {"event": "Delivery done", "order": {"id": "1"}}


def test_array_items_must_be_objects() -> None:
    with pytest.raises(PayloadError, match="item 1 of the body must be an object, got a number"):
        parse_json("antsroute", [{"event": "Delivery done"}, 3])


@pytest.mark.parametrize("body", ["Delivery done", 1, None, True])
def test_scalar_body_is_refused(body: Any) -> None:
    with pytest.raises(PayloadError, match="body must be a JSON object"):
        parse_json("antsroute", body)
