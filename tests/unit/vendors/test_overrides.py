"""A source's mapping overrides: JSON pointers and type_map, applied before the adapter's own
lookups, ignored when they find nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from relay.vendors.base import MappingOverrides
from tests.unit.vendors.fixtures import parse_fixture, parse_json

DRIFTED = {
    "kind": "task_done",
    "meta": {"delivery_id": "dlv-778", "at": "2026-03-10T14:02:31Z", "ids": ["a", 42]},
    "payload": {"task_ref": 991},
    "task": {"id": 88412207, "ended_time": "2026-03-10T14:00:00Z"},
    "webhook_type": "task_updated",
}


def parse_drifted(**overrides: Any) -> Any:
    [event] = parse_json("bringg", DRIFTED, MappingOverrides(**overrides)).events
    return event


def test_event_name_pointer_wins_over_the_adapter() -> None:
    event = parse_drifted(event_name_pointer="/kind")

    assert event.type == "order.completed"
    assert event.vendor_event_name == "task_done"
    assert event.occurred_at == datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


def test_event_id_pointer_names_the_event_and_its_dedupe_key() -> None:
    event = parse_drifted(event_id_pointer="/meta/delivery_id")

    assert event.vendor_event_id == "dlv-778"
    assert event.dedupe_key == "dlv-778"


def test_entity_id_pointer_sets_the_subject() -> None:
    event = parse_drifted(entity_id_pointer="/payload/task_ref", event_name_pointer="/kind")

    assert (event.subject_kind, event.subject_id) == ("order", "991")
    assert event.dedupe_key == "task_done:991:2026-03-10T14:00:00.000Z"


def test_event_time_pointer_sets_occurred_at() -> None:
    event = parse_drifted(event_time_pointer="/meta/at", event_name_pointer="/kind")

    assert event.occurred_at == datetime(2026, 3, 10, 14, 2, 31, tzinfo=UTC)
    assert event.dedupe_key == "task_done:88412207:2026-03-10T14:02:31.000Z"


def test_pointer_into_an_array() -> None:
    event = parse_drifted(event_id_pointer="/meta/ids/1")

    assert event.vendor_event_id == "42"


@pytest.mark.parametrize(
    "pointer", ["/missing", "/meta/nothing/deeper", "/meta", "/meta/ids", "/meta/ids/9",
                "/meta/ids/-", "/a~2b", "/task/id/x"],
)  # fmt: skip
def test_pointer_that_finds_nothing_usable_falls_back(pointer: str) -> None:
    event = parse_drifted(
        event_name_pointer=pointer,
        event_id_pointer=pointer,
        entity_id_pointer=pointer,
        event_time_pointer=pointer,
    )
    plain = parse_drifted()

    assert event == plain
    assert (event.type, event.subject_id, event.vendor_event_id) == (
        "order.updated",
        "88412207",
        None,
    )


def test_pointer_to_text_that_is_no_time_leaves_occurred_at_empty() -> None:
    event = parse_drifted(event_time_pointer="/meta/delivery_id")

    assert event.occurred_at is None
    assert event.dedupe_key.startswith("sha256:")


def test_type_map_wins_over_the_built_in_table() -> None:
    event = parse_drifted(type_map={"task_updated": "order.rescheduled"})

    assert event.type == "order.rescheduled"


def test_type_map_classifies_an_unknown_name_without_a_note() -> None:
    parsed = parse_fixture(
        "bringg",
        "unknown_event",
        MappingOverrides(type_map={"task_inventory_rejected": "order.updated"}),
    )

    assert parsed.events[0].type == "order.updated"
    assert parsed.notes == []


def test_type_map_value_outside_the_taxonomy_is_used_as_given() -> None:
    event = parse_drifted(type_map={"task_updated": "acme.task_touched"})

    assert event.type == "acme.task_touched"


def test_type_map_applies_to_the_name_from_the_name_pointer() -> None:
    event = parse_drifted(event_name_pointer="/kind", type_map={"task_done": "order.delivered"})

    assert event.type == "order.delivered"


def test_type_map_may_name_a_status_refined_event() -> None:
    overrides = MappingOverrides(
        type_map={"visit.status.changed (status failed)": "order.cancelled"}
    )
    events = parse_fixture("routestripe", "batch_mixed", overrides).events

    assert [e.type for e in events if e.vendor_event_name == "visit.status.changed"] == [
        "order.scheduled",
        "order.completed",
        "order.cancelled",
        "order.updated",
    ]


def test_type_map_matches_the_canonical_spelling() -> None:
    overrides = MappingOverrides(type_map={"delivery_done": "order.delivered"})
    [event] = parse_fixture("antsroute", "delivery_done", overrides).events

    assert event.type == "order.delivered"


def test_routestripe_pointers_resolve_against_each_entry() -> None:
    overrides = MappingOverrides(entity_id_pointer="/object/external_id")
    events = parse_fixture("routestripe", "batch_mixed", overrides).events

    assert events[0].subject_id == "SO-20260310-0042"
    assert events[5].subject_id == "SO-20260310-0043"
    assert events[4].subject_id == "172160"


def test_routigo_trigger_found_by_the_name_pointer() -> None:
    document = {"meta": {"trigger": "TOUR_FINISHED"}, "tour": {"id": "t1"}}
    [event] = parse_json(
        "routigo", document, MappingOverrides(event_name_pointer="/meta/trigger")
    ).events

    assert event.type == "route.finished"
