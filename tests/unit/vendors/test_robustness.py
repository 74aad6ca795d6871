"""Whatever arrives, an adapter answers with events or a PayloadError, never anything else."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.vendors.base import MappingOverrides, PayloadError
from relay.vendors.registry import VENDORS
from tests.unit.vendors.fixtures import fixture_json, fixture_names, parse_body
from tests.unit.vendors.invariants import check_parsed

VENDOR_NAMES = sorted(VENDORS)

# Keys the adapters look for, so that generated objects reach past the first lookup.
KEYS = (
    "event", "eventType", "event_type", "type", "trigger", "routigoEvent", "routigoEventType",
    "webhook_type", "webhookEvent", "action", "timestamp", "id", "_id", "external_id",
    "reference", "status", "endStatus", "data", "events", "event_count", "entity", "object",
    "payload", "task", "run", "user", "way_point", "way_points", "tasks", "runs",
    "unassigned_tasks", "order", "route", "tour", "journey", "tourLegs", "stop", "stops",
    "shipment", "assignment", "driver", "customer", "lat", "lng", "location", "visit_id",
    "route_id", "position", "address", "eta", "started_at", "updated_at", "user_available",
    "notification", "photo", "signature", "task_id", "title", "name", "phone",
)  # fmt: skip

WRONG_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**64 - 1, -(2**63), 1.5, -1e308, 1e308, "", " ", "\x00",
    "x" * 5000, "2026-13-45T99:99:99Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-14:00",
    "NaN", "1e999", [], [None], {}, {"id": {}}, [[[]]],
)  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["TOUR_STARTED", "task_done", "visit.status.changed", "Delivery done",
                       "attachment.photo.created", "batch", "webhook.ping", "2026-03-10T06:02:41Z",
                       "ASSIGNMENT", "0", "4"])
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)
pointers = (
    st.none()
    | st.sampled_from(["/", "/id", "/task/id", "/a~2", "/data/events/0"])
    | (
        st.lists(st.sampled_from(KEYS) | st.text(max_size=5) | st.just("-"), max_size=4).map(
            lambda parts: (
                "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)
            )
        )
    )
)
overrides_strategy = st.builds(
    MappingOverrides,
    event_name_pointer=pointers,
    event_id_pointer=pointers,
    entity_id_pointer=pointers,
    event_time_pointer=pointers,
    type_map=st.dictionaries(st.text(max_size=20), st.text(min_size=1, max_size=30), max_size=3),
)


def parse_anything(
    vendor: str, body: bytes, overrides: MappingOverrides | None = None, **kw: Any
) -> None:
    try:
        parsed = parse_body(vendor, body, overrides, **kw)
    except PayloadError as exc:
        problem = str(exc)
    else:
        check_parsed(parsed)
        return
    assert problem, "a PayloadError must say what is wrong"


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
@given(body=st.binary(max_size=300))
def test_random_bytes(vendor: str, body: bytes) -> None:
    parse_anything(vendor, body)


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
@given(
    document=json_values,
    overrides=overrides_strategy,
    query=st.dictionaries(st.sampled_from(["event", "x"]), st.text(max_size=20), max_size=2),
    headers=st.dictionaries(
        st.sampled_from(["x-routigo-event", "x"]), st.text(max_size=20), max_size=2
    ),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_random_json(
    vendor: str,
    document: Any,
    overrides: MappingOverrides,
    query: dict[str, str],
    headers: dict[str, str],
) -> None:
    parse_anything(vendor, json.dumps(document).encode(), overrides, query=query, headers=headers)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    result = copy.deepcopy(document)
    parent = result
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return result


def _all_fixtures() -> list[tuple[str, str]]:
    return [(vendor, name) for vendor in VENDOR_NAMES for name in fixture_names(vendor)]


@pytest.mark.parametrize(("vendor", "name"), _all_fixtures())
def test_wrong_type_in_every_field(vendor: str, name: str) -> None:
    document = fixture_json(vendor, name)
    for path in _paths(document):
        for value in WRONG_VALUES:
            parse_anything(vendor, json.dumps(_replaced(document, path, value)).encode())


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
@given(data=st.data())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_fixtures(vendor: str, data: st.DataObject) -> None:
    document = fixture_json(vendor, data.draw(st.sampled_from(fixture_names(vendor))))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        paths = list(_paths(document))
        if not paths:
            break
        document = _replaced(document, data.draw(st.sampled_from(paths)), data.draw(json_values))
    parse_anything(vendor, json.dumps(document).encode(), data.draw(overrides_strategy))


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
@pytest.mark.parametrize("depth", [65, 100, 200, 1000, 5000])
def test_nesting_deeper_than_the_limit_is_refused(vendor: str, depth: int) -> None:
    body = b'{"a":' * depth + b"1" + b"}" * depth

    with pytest.raises(PayloadError, match="levels deep"):
        parse_body(vendor, body, max_json_depth=64)


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
def test_nesting_at_the_limit_is_accepted(vendor: str) -> None:
    body = b'{"a":' * 64 + b"1" + b"}" * 64

    check_parsed(parse_body(vendor, body, max_json_depth=64))


@pytest.mark.parametrize("vendor", VENDOR_NAMES)
def test_a_configured_limit_above_what_can_be_delivered_is_capped(vendor: str) -> None:
    body = b"[" * 300 + b"]" * 300

    with pytest.raises(PayloadError, match="200 levels deep"):
        parse_body(vendor, body, max_json_depth=512)
