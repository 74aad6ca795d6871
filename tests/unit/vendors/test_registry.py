from __future__ import annotations

import dataclasses

import pytest

from relay.events.taxonomy import EVENT_TYPES
from relay.vendors.antsroute import EVENTS as ANTSROUTE_EVENTS
from relay.vendors.antsroute import canonical_name as antsroute_name
from relay.vendors.registry import VENDORS, Vendor
from relay.vendors.routigo import canonical_name as routigo_name

# Every event named in the vendors' pages and in NOTES.md.
ROUTIGO_TRIGGERS = (
    "TOUR_PLANNED", "TOUR_ASSIGNED", "TOUR_UNASSIGNED", "TOUR_STARTED", "TOUR_FINISHED",
    "STOP_DONE", "SHIPMENT_DONE", "ASSIGNMENT_DONE", "STOP_ARRIVED", "ASSIGNMENT_ARRIVED",
    "ROUTE_PLANNED",
)  # fmt: skip
ANTSROUTE_LABELS = (
    "Delivery cancelled", "Delivery confirmed", "Delivery created", "Delivery pending",
    "Delivery deleted", "Delivery done", "Confirmed status removed", "Pending status removed",
    "Delivery set to unassigned state",
    "Delivery moved forward or delayed or assigned to another route",
    "Delivery assigned to a route", "Delivery assigned to a route in progress",
    "Delivery scheduled from the basket", "Delivery moved to the basket", "Planning date changed",
    "Proof of delivery (photo) added", "Customer signature added", "Delivery locked",
    "Delivery updated", "Route started", "Route ended", "Notification sent", "Loading done",
    "Unloading done", "Loading cancelled", "Unloading cancelled",
)  # fmt: skip
BRINGG_SEEN = (
    "run_started", "task_done", "way_point_arrived", "way_point_left", "task_assigned_to_dp",
    "driver_unavailable_status_changed", "optimization_applied",
)  # fmt: skip
BRINGG_DOCUMENTED_UNSEEN = (
    "run_ended", "planning_done", "route_plan_updated", "task_created", "task_updated",
    "task_cancelled", "task_eta_updated", "task_assigned", "task_unassigned", "task_accepted",
    "task_rejected", "task_late", "shift_started", "shift_ended", "task_note_added",
    "task_form_submitted", "task_rated",
)  # fmt: skip
ROUTESTRIPE_EVENTS = (
    "visit.created", "visit.status.changed", "visit.delivery_note.changed",
    "visit.recipient_note.changed", "attachment.signature.created", "attachment.photo.created",
)  # fmt: skip


def test_the_four_vendors_with_their_default_verification() -> None:
    assert {name: vendor.default_verification for name, vendor in VENDORS.items()} == {
        "routigo": "header_token",
        "antsroute": "basic",
        "bringg": "header_token",
        "routestripe": "hmac",
    }
    assert all(vendor.name == name for name, vendor in VENDORS.items())


def test_vendor_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        VENDORS["bringg"].name = "other"  # type: ignore[misc]
    assert isinstance(VENDORS["bringg"], Vendor)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_every_mapped_type_is_in_the_taxonomy(vendor: str) -> None:
    assert set(VENDORS[vendor].event_types.values()) <= set(EVENT_TYPES)


def test_every_taxonomy_type_is_emitted_by_some_vendor() -> None:
    emitted = {unified for vendor in VENDORS.values() for unified in vendor.event_types.values()}
    unknowns = {f"{vendor}.unknown" for vendor in VENDORS}

    assert set(EVENT_TYPES) == emitted | unknowns | {"relay.ping"}


def test_every_type_has_a_one_line_description() -> None:
    assert all(description and "\n" not in description for description in EVENT_TYPES.values())


def test_every_documented_routigo_trigger_is_mapped() -> None:
    events = VENDORS["routigo"].event_types

    assert all(routigo_name(trigger) in events for trigger in ROUTIGO_TRIGGERS)


def test_every_antsroute_label_is_mapped() -> None:
    events = VENDORS["antsroute"].event_types

    assert {label: antsroute_name(label) in events for label in ANTSROUTE_LABELS} == {
        label: True for label in ANTSROUTE_LABELS
    }
    assert len(ANTSROUTE_EVENTS) == len(ANTSROUTE_LABELS)


def test_every_bringg_webhook_type_is_mapped() -> None:
    events = VENDORS["bringg"].event_types

    assert [name for name in (*BRINGG_SEEN, *BRINGG_DOCUMENTED_UNSEEN) if name not in events] == []


def test_every_routestripe_event_is_mapped() -> None:
    events = VENDORS["routestripe"].event_types

    assert [name for name in ROUTESTRIPE_EVENTS if name not in events] == []
