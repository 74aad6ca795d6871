from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.subscriptions.filters import FilterError, filter_matches, validate_filter

ENVELOPE: dict[str, Any] = {
    "id": "evt_1",
    "type": "order.completed",
    "timestamp": "2026-11-22T10:00:00.000Z",
    "source": {"id": "src_1", "vendor": "routigo"},
    "data": {
        "status": "done",
        "count": 3,
        "weight": 2.5,
        "paid": True,
        "note": None,
        "tags": ["fragile", "cold"],
        "stops": [{"id": "s1", "eta": 10}, {"id": "s2", "eta": 20}],
        "address": {"city": "Lyon", "zip": "69001"},
        "0": "zero key",
        "my-field_2": "dashed",
    },
}

KEYS = ("a", "b", "c", "0", "1")
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(-5, 5, allow_nan=False)
    | st.sampled_from(["", "a", "b", "done"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=3)
    ),
    max_leaves=12,
)
ENVELOPES = st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, max_size=4)
PATHS = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(".".join)
ORDERED = st.integers(-5, 5) | st.floats(-5, 5, allow_nan=False) | st.sampled_from(["", "a", "b"])

OPERATOR_CONDITIONS = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$neq"]), JSON_VALUES),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(JSON_VALUES, max_size=4)),
    st.tuples(st.just("$exists"), st.booleans()),
    st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ORDERED),
)
CONDITIONS = st.one_of(
    st.builds(lambda path, value: {path: value}, PATHS, SCALARS),
    st.builds(lambda path, op: {path: {op[0]: op[1]}}, PATHS, OPERATOR_CONDITIONS),
)


def filters(depth: int = 1) -> st.SearchStrategy[dict[str, Any]]:
    if depth >= 4:
        return CONDITIONS
    child = st.deferred(lambda: filters(depth + 1))
    return st.one_of(
        CONDITIONS,
        st.lists(child, min_size=1, max_size=3).map(lambda items: {"$and": items}),
        st.lists(child, min_size=1, max_size=3).map(lambda items: {"$or": items}),
        child.map(lambda item: {"$not": item}),
    )


FILTERS = filters()


def nest(path: str, value: Any) -> dict[str, Any]:
    envelope: Any = value
    for segment in reversed(path.split(".")):
        envelope = {segment: envelope}
    return dict(envelope)


# --- validation: a table of filters with what the user is told


@pytest.mark.parametrize(
    "spec",
    [
        {"data.status": "done"},
        {"data.status": "done", "data.count": 3},
        {"data.address": {"city": "Lyon"}},
        {"data.tags": ["fragile", "cold"]},
        {"data.note": None},
        {"data.status": {"$eq": "done"}},
        {"data.status": {"$neq": "done"}},
        {"data.status": {"$in": ["done", "failed"]}},
        {"data.status": {"$nin": []}},
        {"data.note": {"$exists": False}},
        {"data.count": {"$gte": 1, "$lt": 10}},
        {"timestamp": {"$gt": "2026-01-01"}},
        {"data.address": {"$eq": {"$weird": 1}}},
        {"data.address": {"$eq": {}}},
        {"data.stops.0.id": "s1"},
        {"data.my-field_2": "dashed"},
        {"$and": [{"data.status": "done"}]},
        {"$or": [{"data.status": "done"}, {"$not": {"data.paid": True}}]},
        {"data.status": {"$in": list(range(500))}},
    ],
)
def test_valid_filters_pass(spec: dict[str, Any]) -> None:
    validate_filter(spec)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "the filter must be a JSON object such as"),
        ("data.status=done", "the filter must be a JSON object such as"),
        (None, "the filter must be a JSON object such as"),
        ({}, "the filter is empty; give at least one condition; use null for no filter"),
        ({"data.status": {"$in": "done"}}, "$in under data.status must be a list, not a string"),
        ({"data.status": {"$nin": {"a": 1}}}, "$nin under data.status must be a list"),
        (
            {"data.status": {"$regex": "^d"}},
            "unknown operator $regex under data.status; use one of $eq, $neq, $in, $nin, "
            "$exists, $gt, $gte, $lt, $lte",
        ),
        ({"$regex": "^d"}, "unknown operator $regex; a filter's keys are dotted paths"),
        ({"$in": ["done"]}, 'operators such as $in go under a path: {"data.status"'),
        ({"$and": []}, "$and must be a non-empty list of filters"),
        ({"$or": {"data.status": "done"}}, "$or must be a non-empty list of filters"),
        ({"$not": [{"data.status": "done"}]}, "$not must be a JSON object such as"),
        ({"$not": {}}, "$not is empty; give at least one condition"),
        ({"$and": [{"a": 1}, 5]}, "$and[1] must be a JSON object such as"),
        ({"$or": [{"a": {"$in": 3}}]}, "$in under a in $or[0] must be a list"),
        ({"$and": [{"$not": {"a": {"$bad": 1}}}]}, "unknown operator $bad under a in $and[0].$not"),
        ({"data..status": 1}, "path 'data..status' is not valid; use dot-separated names"),
        ({"": 1}, "path '' is not valid"),
        ({"data.st atus": 1}, "path 'data.st atus' is not valid"),
        ({".data": 1}, "path '.data' is not valid"),
        ({"data.": 1}, "path 'data.' is not valid"),
        ({"data.€": 1}, "path 'data.€' is not valid"),
        ({"a": {"$exists": "yes"}}, "$exists under a must be true or false, not a string"),
        ({"a": {"$exists": 1}}, "$exists under a must be true or false, not a number"),
        ({"a": {"$gt": True}}, "$gt under a must be a number or a string, not a boolean"),
        ({"a": {"$lte": None}}, "$lte under a must be a number or a string, not null"),
        ({"a": {"$lt": [1]}}, "$lt under a must be a number or a string, not a list"),
        ({"a": {"$gte": float("inf")}}, "$gte under a must be a number or a string"),
        ({"a": {"$in": list(range(501))}}, "$in under a has 501 items; at most 500 are allowed"),
        ({"a": {"$eq": 1, "b": 2}}, "the object under a mixes operators with plain keys"),
        ({"a": {}}, 'the condition on a is empty; give a value, an operator such as {"$exists"'),
        ({"a": float("nan")}, "the value under a holds nan, which is not a JSON number"),
        ({"a": {"$eq": {1, 2}}}, "$eq under a holds set, which is not a JSON value"),
        ({"a": {"$in": [b"x"]}}, "$in under a holds bytes, which is not a JSON value"),
        ({"a": {"x": {3: 1}}}, "the value under a has an object key 3 that is not a string"),
        ({1: "x"}, "the filter has a key 1 that is not a string"),
    ],
)
def test_invalid_filters_say_where_and_what(spec: Any, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        validate_filter(spec)

    assert message in str(raised.value)


def nested_nots(levels: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"a": 1}
    for _ in range(levels):
        spec = {"$not": spec}
    return spec


def test_eight_levels_of_filter_objects_are_allowed() -> None:
    validate_filter(nested_nots(7))


def test_nine_levels_are_too_deep() -> None:
    with pytest.raises(FilterError, match=r"nests too deeply at \$not(\.\$not)+; at most 8 levels"):
        validate_filter(nested_nots(8))


def test_one_hundred_conditions_are_allowed() -> None:
    validate_filter({"$or": [{f"data.k{n}": {"$exists": True}} for n in range(100)]})


def test_more_than_one_hundred_conditions_are_rejected() -> None:
    spec = {"$or": [{f"data.k{n}": 1} for n in range(50)], "data.x": {"$gt": 1, "$lt": 5}}
    validate_filter(spec)
    spec["$and"] = [{f"data.k{n}": 1} for n in range(49)]

    with pytest.raises(FilterError, match="more than 100 conditions"):
        validate_filter(spec)


def test_literal_values_may_not_nest_without_bound() -> None:
    value: Any = 1
    for _ in range(40):
        value = [value]

    with pytest.raises(FilterError, match="the value under a nests more than 32 levels deep"):
        validate_filter({"a": value})


# --- evaluation: a table on one envelope


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"data.status": "done"}, True),
        ({"data.status": "DONE"}, False),
        ({"data.status": "done", "data.count": 3}, True),
        ({"data.status": "done", "data.count": 4}, False),
        ({"data.count": 3.0}, True),
        ({"data.weight": 2.5}, True),
        ({"data.paid": True}, True),
        ({"data.paid": 1}, False),
        ({"data.count": True}, False),
        ({"data.note": None}, True),
        ({"data.missing": None}, False),
        ({"data.tags": ["fragile", "cold"]}, True),
        ({"data.tags": ["cold", "fragile"]}, False),
        ({"data.tags": "fragile"}, False),
        ({"data.address": {"zip": "69001", "city": "Lyon"}}, True),
        ({"data.address": {"city": "Lyon"}}, False),
        ({"data.address.city": "Lyon"}, True),
        ({"data.stops.1.id": "s2"}, True),
        ({"data.stops.2.id": "s3"}, False),
        ({"data.stops.x": 1}, False),
        ({"data.tags.0.x": 1}, False),
        ({"data.0": "zero key"}, True),
        ({"data.my-field_2": "dashed"}, True),
        ({"data.status": {"$eq": "done"}}, True),
        ({"data.status": {"$neq": "done"}}, False),
        ({"data.missing": {"$neq": "done"}}, True),
        ({"data.missing": {"$eq": None}}, False),
        ({"data.status": {"$in": ["done", "failed"]}}, True),
        ({"data.status": {"$in": ["failed"]}}, False),
        ({"data.status": {"$in": []}}, False),
        ({"data.count": {"$in": [1.0, 3.0]}}, True),
        ({"data.paid": {"$in": [1]}}, False),
        ({"data.missing": {"$in": [None]}}, False),
        ({"data.status": {"$nin": ["failed"]}}, True),
        ({"data.status": {"$nin": ["done"]}}, False),
        ({"data.missing": {"$nin": ["done"]}}, True),
        ({"data.note": {"$exists": True}}, True),
        ({"data.missing": {"$exists": True}}, False),
        ({"data.missing": {"$exists": False}}, True),
        ({"data.count": {"$gt": 2}}, True),
        ({"data.count": {"$gt": 3}}, False),
        ({"data.count": {"$gte": 3}}, True),
        ({"data.count": {"$lt": 3.5}}, True),
        ({"data.count": {"$lte": 2.9}}, False),
        ({"data.count": {"$gte": 1, "$lt": 10}}, True),
        ({"data.count": {"$gte": 1, "$lt": 3}}, False),
        ({"timestamp": {"$gte": "2026-11-22T00:00:00Z"}}, True),
        ({"timestamp": {"$lt": "2026-11-22T00:00:00Z"}}, False),
        ({"data.status": {"$gt": 1}}, False),
        ({"data.status": {"$lt": 1}}, False),
        ({"data.count": {"$gt": "1"}}, False),
        ({"data.paid": {"$gte": 0}}, False),
        ({"data.note": {"$lt": 1}}, False),
        ({"data.missing": {"$gt": 1}}, False),
        ({"data.missing": {"$lte": 1}}, False),
        ({"$and": [{"data.status": "done"}, {"data.count": 3}]}, True),
        ({"$and": [{"data.status": "done"}, {"data.count": 4}]}, False),
        ({"$or": [{"data.status": "failed"}, {"data.count": 3}]}, True),
        ({"$or": [{"data.status": "failed"}, {"data.count": 4}]}, False),
        ({"$not": {"data.status": "done"}}, False),
        ({"$not": {"data.missing": "done"}}, True),
        ({"$not": {"$not": {"data.status": "done"}}}, True),
        ({"source.vendor": "routigo", "$or": [{"type": "order.completed"}]}, True),
    ],
)
def test_filter_matches_envelope(spec: dict[str, Any], expected: bool) -> None:
    validate_filter(spec)

    assert filter_matches(spec, ENVELOPE) is expected


def test_a_list_index_past_the_end_or_absurdly_long_is_missing() -> None:
    envelope = {"items": ["a", "b"]}

    assert filter_matches({"items.1": "b"}, envelope)
    assert filter_matches({"items.2": {"$exists": False}}, envelope)
    assert filter_matches({"items." + "9" * 5000: {"$exists": False}}, envelope)


# --- properties


@given(FILTERS)
def test_generated_filters_are_valid(spec: dict[str, Any]) -> None:
    validate_filter(spec)


@given(FILTERS, ENVELOPES)
def test_evaluation_never_raises_and_returns_a_bool(
    spec: dict[str, Any], envelope: dict[str, Any]
) -> None:
    assert isinstance(filter_matches(spec, envelope), bool)


@given(FILTERS, ENVELOPES)
def test_not_inverts(spec: dict[str, Any], envelope: dict[str, Any]) -> None:
    assert filter_matches({"$not": spec}, envelope) is not filter_matches(spec, envelope)


@given(FILTERS, ENVELOPES)
def test_and_or_of_one_filter_is_that_filter(
    spec: dict[str, Any], envelope: dict[str, Any]
) -> None:
    alone = filter_matches(spec, envelope)

    assert filter_matches({"$and": [spec]}, envelope) is alone
    assert filter_matches({"$or": [spec]}, envelope) is alone


@given(FILTERS, FILTERS, ENVELOPES)
def test_and_or_combine_like_boolean_logic(
    first: dict[str, Any], second: dict[str, Any], envelope: dict[str, Any]
) -> None:
    one, two = filter_matches(first, envelope), filter_matches(second, envelope)

    assert filter_matches({"$and": [first, second]}, envelope) is (one and two)
    assert filter_matches({"$or": [first, second]}, envelope) is (one or two)


@given(PATHS, JSON_VALUES, ENVELOPES)
def test_in_of_one_value_is_equality(path: str, value: Any, envelope: dict[str, Any]) -> None:
    equal = filter_matches({path: {"$eq": value}}, envelope)

    assert filter_matches({path: {"$in": [value]}}, envelope) is equal
    assert filter_matches({path: {"$nin": [value]}}, envelope) is not equal
    assert filter_matches({path: {"$neq": value}}, envelope) is not equal


@given(PATHS, JSON_VALUES)
def test_a_value_at_a_path_is_found_and_equal(path: str, value: Any) -> None:
    envelope = nest(path, value)

    assert filter_matches({path: {"$eq": value}}, envelope)
    assert filter_matches({path: {"$exists": True}}, envelope)
    assert not filter_matches({path + ".zz": {"$exists": True}}, envelope)


@given(PATHS, ENVELOPES)
def test_exists_true_and_false_are_opposites(path: str, envelope: dict[str, Any]) -> None:
    exists = filter_matches({path: {"$exists": True}}, envelope)

    assert filter_matches({path: {"$exists": False}}, envelope) is not exists


@given(PATHS, st.integers(-(2**53), 2**53))
def test_an_integer_equals_the_same_float(path: str, number: int) -> None:
    assert filter_matches({path: float(number)}, nest(path, number))
    assert filter_matches({path: number}, nest(path, float(number)))


@given(PATHS, st.booleans(), st.integers(0, 1))
def test_booleans_are_not_numbers(path: str, flag: bool, number: int) -> None:
    assert not filter_matches({path: flag}, nest(path, number))
    assert not filter_matches({path: number}, nest(path, flag))
    assert not filter_matches({path: {"$gte": number}}, nest(path, flag))


@given(PATHS, ORDERED, ORDERED)
def test_ordering_compares_only_like_types(path: str, stored: Any, bound: Any) -> None:
    envelope = nest(path, stored)
    comparable = isinstance(stored, str) == isinstance(bound, str)

    assert filter_matches({path: {"$gt": bound}}, envelope) is (comparable and stored > bound)
    assert filter_matches({path: {"$lte": bound}}, envelope) is (comparable and stored <= bound)


ANYTHING = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=3)
    | st.sampled_from(["$and", "$or", "$not", "$in", "$eq", "$gt", "$exists", "$regex", "a.b"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["$and", "$or", "$not", "$in", "$nin", "$eq", "$gt", "$exists", "$x"])
            | st.text(max_size=6)
            | st.integers(),
            children,
            max_size=3,
        )
        | st.frozensets(st.integers(), max_size=2)
    ),
    max_leaves=15,
)


@given(ANYTHING, ENVELOPES)
def test_arbitrary_specs_raise_only_filter_error_and_accepted_ones_evaluate(
    spec: Any, envelope: dict[str, Any]
) -> None:
    try:
        validate_filter(spec)
    except FilterError:
        return
    assert isinstance(filter_matches(spec, envelope), bool)
