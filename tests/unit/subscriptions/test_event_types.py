from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.subscriptions.filters import FilterError, event_type_matches, validate_event_types

EXACT_TYPES = st.lists(st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True), min_size=1, max_size=4)


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["*"], ["*"]),
        (["order.completed"], ["order.completed"]),
        (["route.*"], ["route.*"]),
        (["a.b.*"], ["a.b.*"]),
        (["stop_2.done_1"], ["stop_2.done_1"]),
        (["relay"], ["relay"]),
        (["b", "a", "b", "*", "a"], ["b", "a", "*"]),
        ([f"type_{number}" for number in range(100)], [f"type_{number}" for number in range(100)]),
    ],
)
def test_valid_patterns_are_kept_in_order_without_duplicates(
    patterns: list[str], expected: list[str]
) -> None:
    assert validate_event_types(patterns) == expected


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "Order.Completed",
        "order-completed",
        "order completed",
        "route*",
        "*.started",
        "route.*.started",
        "route.**",
        "route.",
        ".route",
        "a..b",
        "**",
        "order.completed\n",
        "route.%",
    ],
)
def test_invalid_pattern_is_named_with_the_allowed_forms(pattern: str) -> None:
    with pytest.raises(FilterError) as raised:
        validate_event_types(["order.completed", pattern])

    message = str(raised.value)
    assert repr(pattern) in message
    assert "order.completed" in message
    assert "route.*" in message


def test_pattern_that_is_not_a_string_is_rejected() -> None:
    with pytest.raises(FilterError, match="pattern 5 is not valid"):
        validate_event_types([5])  # type: ignore[list-item]


def test_empty_list_asks_for_at_least_one_pattern() -> None:
    with pytest.raises(FilterError, match=r'at least one event type pattern, such as \["\*"\]'):
        validate_event_types([])


def test_more_than_100_patterns_are_rejected() -> None:
    with pytest.raises(FilterError, match="at most 100 event type patterns are allowed, got 101"):
        validate_event_types([f"type_{number}" for number in range(101)])


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "order.completed", True),
        (["*"], "relay.ping", True),
        (["route.*"], "route.started", True),
        (["route.*"], "route.x.y", True),
        (["route.*"], "route", False),
        (["route.*"], "router.x", False),
        (["route.*"], "xroute.started", False),
        (["a.b.*"], "a.b.c", True),
        (["a.b.*"], "a.b.c.d", True),
        (["a.b.*"], "a.b", False),
        (["a.b.*"], "a.bc", False),
        (["a.b.*"], "a.c.b", False),
        (["order.completed"], "order.completed", True),
        (["order.completed"], "order.completed.late", False),
        (["order.completed"], "order", False),
        (["order.completed"], "order.complete", False),
        (["order.created", "route.*"], "route.done", True),
        (["order.created", "route.*"], "stop.done", False),
        ([], "order.completed", False),
    ],
)
def test_event_type_matching(patterns: list[str], event_type: str, expected: bool) -> None:
    assert event_type_matches(patterns, event_type) is expected


@given(EXACT_TYPES)
def test_an_exact_type_is_valid_and_matches_itself_only(segments: list[str]) -> None:
    event_type = ".".join(segments)

    assert validate_event_types([event_type]) == [event_type]
    assert event_type_matches([event_type], event_type)
    assert not event_type_matches([event_type], event_type + ".x")
    assert not event_type_matches([event_type], event_type + "x")


@given(EXACT_TYPES, st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True))
def test_a_prefix_wildcard_matches_every_type_below_it(segments: list[str], child: str) -> None:
    prefix = ".".join(segments)
    pattern = f"{prefix}.*"

    assert validate_event_types([pattern]) == [pattern]
    assert event_type_matches([pattern], f"{prefix}.{child}")
    assert event_type_matches([pattern], f"{prefix}.{child}.{child}")
    assert not event_type_matches([pattern], prefix)
    assert not event_type_matches([pattern], f"{prefix}{child}.{child}")


@given(st.lists(st.text(max_size=12), max_size=5))
def test_any_text_is_either_accepted_or_rejected_with_filter_error(patterns: list[str]) -> None:
    try:
        accepted = validate_event_types(patterns)
    except FilterError:
        return
    assert set(accepted) == set(patterns)
    assert len(accepted) == len(set(patterns))
