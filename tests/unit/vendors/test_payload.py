from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.vendors.base import InboundRequest, PayloadError
from relay.vendors.payload import (
    address_text,
    canonical_sha256,
    dedupe_key,
    integer,
    load_json,
    load_object,
    location,
    number,
    parse_time,
    shortened,
    snake,
    status_word,
    text,
)


def request(body: bytes, depth: int = 64) -> InboundRequest:
    return InboundRequest(body=body, max_json_depth=depth)


@pytest.mark.parametrize("body", [b"", b"   \n\t"])
def test_empty_body(body: bytes) -> None:
    with pytest.raises(PayloadError, match="body is empty"):
        load_json(request(body))


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"NaN", b"\xff\xfe", b'{"a": 1e999}', b"{}{}"])
def test_body_that_is_not_json(body: bytes) -> None:
    with pytest.raises(PayloadError, match=r"^body is not valid JSON: "):
        load_json(request(body))


def test_content_is_parsed_whatever_it_claims_to_be() -> None:
    assert load_json(request(b'  {"a": [1, "b"]}  ')) == {"a": [1, "b"]}


@pytest.mark.parametrize(
    ("body", "kind"), [(b"[]", "an array"), (b'"x"', "a string"), (b"1", "a number"),
                       (b"true", "a boolean"), (b"null", "null")],
)  # fmt: skip
def test_top_level_must_be_an_object(body: bytes, kind: str) -> None:
    with pytest.raises(PayloadError, match=f"body must be a JSON object, got {kind}"):
        load_object(request(body))


@pytest.mark.parametrize(
    ("limit", "depth", "refused"), [(4, 4, False), (4, 5, True), (64, 64, False), (64, 65, True)]
)
def test_depth_limit_counts_objects_and_arrays(limit: int, depth: int, refused: bool) -> None:
    body = b'{"a":[' * (depth // 2) + (b'{"b":1}' if depth % 2 else b"1") + b"]}" * (depth // 2)
    if refused:
        with pytest.raises(PayloadError, match=f"more than {limit} levels deep"):
            load_json(request(body, limit))
    else:
        assert load_json(request(body, limit)) is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2024-02-05T11:00:30.336Z", datetime(2024, 2, 5, 11, 0, 30, 336000, tzinfo=UTC)),
     ("2026-03-10T08:00:00+02:00", datetime(2026, 3, 10, 6, 0, tzinfo=UTC)),
     ("2024-02-05T11:00:30+0000", datetime(2024, 2, 5, 11, 0, 30, tzinfo=UTC)),
     ("2026-03-10 06:00:00", datetime(2026, 3, 10, 6, 0, tzinfo=UTC)),
     (1773124961, datetime(2026, 3, 10, 6, 42, 41, tzinfo=UTC)),
     (1773124961.5, datetime(2026, 3, 10, 6, 42, 41, 500000, tzinfo=UTC)),
     (1773124961250, datetime(2026, 3, 10, 6, 42, 41, 250000, tzinfo=UTC)),
     ("1773124961", datetime(2026, 3, 10, 6, 42, 41, tzinfo=UTC)),
     ("2026-03-10", None), ("08:00", None), ("", None), ("soon", None), (0, None), (-5, None),
     (True, None), (None, None), ([], None), ({}, None), (1e308, None),
     ("0001-01-01T00:00:00+01:00", None), ("2026-02-30T10:00:00Z", None)],
)  # fmt: skip
def test_parse_time(value: Any, expected: datetime | None) -> None:
    assert parse_time(value) == expected


json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat())
)  # fmt: skip


@given(json_scalars)
def test_parse_time_gives_utc_or_nothing(value: Any) -> None:
    moment = parse_time(value)

    assert moment is None or moment.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [(172158, "172158"), (4545484542.0, "4545484542"), (1.5, "1.5"), ("  ab ", "ab"), ("", None),
     ("  ", None), (None, None), (True, None), ([], None), ({}, None), ("a\x00b", "a\ufffdb")],
)  # fmt: skip
def test_text(value: Any, expected: str | None) -> None:
    assert text(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), ("4", 4), (" 5 ", 5), (4.0, 4), (4.5, None), ("4.0", None), (True, None),
     (2**53, None), ("99999999999999999", None), (None, None)],
)  # fmt: skip
def test_integer(value: Any, expected: int | None) -> None:
    assert integer(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("52.030187", 52.030187), ("-4.3", -4.3), (".5", 0.5), ("1e3", 1000.0), (7, 7.0),
     ("1_000", None), ("nan", None), ("inf", None), ("1e999", None), ("", None), (False, None)],
)  # fmt: skip
def test_number(value: Any, expected: float | None) -> None:
    assert number(value) == expected


def test_location_needs_both_coordinates_in_range() -> None:
    assert location("52.1", "5.1") == {"lat": 52.1, "lng": 5.1}
    assert location(-90, 180) == {"lat": -90.0, "lng": 180.0}
    assert location(90.1, 0) is None
    assert location(0, -180.5) is None
    assert location("52.1", None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1 Main St", "1 Main St"),
     ({"street": "Oudegracht", "houseNumber": "231", "postalCode": "3511 NK", "city": "Utrecht",
       "country": "NL"}, "Oudegracht 231, 3511 NK Utrecht, NL"),
     ({"city": "Utrecht"}, "Utrecht"), ({}, None), ({"street": {"x": 1}}, None), (5, "5")],
)  # fmt: skip
def test_address_text(value: Any, expected: str | None) -> None:
    assert address_text(value) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Delivery cancelled", "delivery_cancelled"), ("deliveryCancelled", "delivery_cancelled"),
     ("DELIVERY-CANCELLED", "delivery_cancelled"), ("Proof of delivery (photo) added",
     "proof_of_delivery_photo_added"), ("toARoute", "to_a_route"), ("  x  ", "x"),
     ("Livraison créée", "livraison_créée")],
)  # fmt: skip
def test_snake(name: str, expected: str) -> None:
    assert snake(name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("DELIVERED", "done"), ("Not delivered", "failed"), ("canceled", "cancelled"),
     ("Assigned to Delivery Provider", "assigned"), ("in progress", "started"),
     ("mystery", None), (4, None), (True, None)],
)  # fmt: skip
def test_status_words(value: Any, expected: str | None) -> None:
    assert status_word(value) == expected


def test_numbered_statuses_use_the_vendor_table() -> None:
    table = {4: "done"}

    assert status_word(4, table) == "done"
    assert status_word("4", table) == "done"
    assert status_word(5, table) is None


def test_dedupe_key_prefers_the_event_id() -> None:
    assert dedupe_key("evt_1", "a", "b", "2026-03-10T00:00:00.000Z", {}) == "evt_1"


def test_dedupe_key_from_name_entity_and_time() -> None:
    key = dedupe_key(None, "TOUR_STARTED", "t1", "2026-03-10T06:02:41.000Z", {})

    assert key == "TOUR_STARTED:t1:2026-03-10T06:02:41.000Z"


def test_dedupe_key_parts_cannot_run_into_each_other() -> None:
    first = dedupe_key(None, "a:b", "c", "2026-03-10T00:00:00.000Z", {})
    second = dedupe_key(None, "a", "b:c", "2026-03-10T00:00:00.000Z", {})

    assert first == "a%3Ab:c:2026-03-10T00:00:00.000Z"
    assert second == "a:b%3Ac:2026-03-10T00:00:00.000Z"


@pytest.mark.parametrize("missing", ["name", "entity", "time"])
def test_dedupe_key_hashes_the_event_when_a_part_is_missing(missing: str) -> None:
    raw = {"b": [1, "é"], "a": None}
    parts = {"name": "n", "entity": "e", "time": "2026-03-10T00:00:00.000Z"} | {missing: None}
    expected = hashlib.sha256(
        json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()

    assert (
        dedupe_key(None, parts["name"], parts["entity"], parts["time"], raw) == f"sha256:{expected}"
    )
    assert canonical_sha256(raw) == expected


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1, max_size=40))
def test_dedupe_key_stays_within_the_column(name: str, entity: str, moment: str) -> None:
    assert len(dedupe_key(None, name, entity, moment, {})) <= 512
    assert len(dedupe_key(name * 100, None, None, None, {})) <= 512


def test_long_values_are_shortened_but_stay_distinct() -> None:
    first, second = "x" * 300 + "1", "x" * 300 + "2"

    assert len(shortened(first, 200)) <= 200
    assert shortened(first, 200) != shortened(second, 200)
    assert shortened("short", 200) == "short"
