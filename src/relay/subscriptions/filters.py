"""Which events a subscription asks for: event type patterns and the JSON filter language.

The `validate_*` functions run when a subscription is saved and turn every mistake into a
`FilterError` that says where it is and how to fix it. The `*_matches` functions run for every
event and every subscription, so they trust a validated filter and never raise for anything an
envelope contains.

A filter is a JSON object evaluated against the event envelope:

- `{"data.status": "done"}`: the value at a dotted path equals a JSON value. A numeric segment
  indexes a list (`data.stops.0.id`).
- `{"data.weight": {"$gte": 10, "$lt": 50}}`: operators on a path; several operators in one
  object must all hold. Operators: `$eq`, `$neq`, `$in`, `$nin`, `$exists`, `$gt`, `$gte`,
  `$lt`, `$lte`.
- `{"$and": [...]}`, `{"$or": [...]}`, `{"$not": {...}}`: logic over filters. Several keys in
  one filter object must all hold.

A path that is missing equals nothing, not even `null`; `$neq` and `$nin` hold for it and
`$exists: false` is true. A path holding `null` exists. Equality is JSON equality: `1` equals
`1.0`, but booleans are not numbers, so `true` does not equal `1`. Ordering compares two numbers
or two strings (ISO timestamps order correctly as strings); anything else is simply false.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MAX_EVENT_TYPE_PATTERNS = 100
MAX_FILTER_DEPTH = 8
MAX_CONDITIONS = 100
MAX_LIST_OPERAND_ITEMS = 500
# Keeps literals from recursing without bound; JSON this deep is not a plausible event value.
MAX_VALUE_DEPTH = 32

_EXACT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")
_PREFIX_WILDCARD = re.compile(r"(?:[a-z0-9_]+\.)+\*")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")

_ALLOWED_PATTERNS = (
    "use * for all events, an exact type such as order.completed (lower-case letters, digits, "
    "_ and dots) or a prefix wildcard such as route.*"
)
_LOGICAL_OPERATORS = ("$and", "$or", "$not")
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
_FIELD_OPERATORS = ("$eq", "$neq", "$in", "$nin", "$exists", *_ORDERINGS)
_EXAMPLE = '{"data.status": "done"}'

# Any object would do; it only has to be something an envelope can never contain.
_MISSING: Any = object()


class FilterError(ValueError):
    """A subscription's event types or filter are not valid; the message says what to fix."""


def validate_event_types(patterns: list[str]) -> list[str]:
    """Checks the patterns and returns them without duplicates, in the order given."""
    if not isinstance(patterns, list) or not patterns:
        raise FilterError(
            f'give at least one event type pattern, such as ["*"]; {_ALLOWED_PATTERNS}'
        )
    if len(patterns) > MAX_EVENT_TYPE_PATTERNS:
        raise FilterError(
            f"at most {MAX_EVENT_TYPE_PATTERNS} event type patterns are allowed, got "
            f"{len(patterns)}; a prefix wildcard such as route.* can cover many types"
        )
    unique: dict[str, None] = {}
    for pattern in patterns:
        if not isinstance(pattern, str) or not (
            pattern == "*" or _EXACT_TYPE.fullmatch(pattern) or _PREFIX_WILDCARD.fullmatch(pattern)
        ):
            raise FilterError(f"event type pattern {pattern!r} is not valid; {_ALLOWED_PATTERNS}")
        unique[pattern] = None
    return list(unique)


def event_type_matches(patterns: Sequence[str], event_type: str) -> bool:
    return any(_type_matches(pattern, event_type) for pattern in patterns)


def _type_matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        prefix = pattern[:-1]
        return event_type.startswith(prefix) and len(event_type) > len(prefix)
    return pattern == event_type


def validate_filter(spec: Any) -> None:
    _FilterValidator().check_filter(spec, where="", depth=1)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _in(where: str) -> str:
    return f" in {where}" if where else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _FilterValidator:
    def __init__(self) -> None:
        self.conditions = 0

    def check_filter(self, spec: Any, *, where: str, depth: int) -> None:
        subject = where or "the filter"
        if depth > MAX_FILTER_DEPTH:
            raise FilterError(
                f"the filter nests too deeply at {where}; at most {MAX_FILTER_DEPTH} levels of "
                "filter objects are allowed"
            )
        if not isinstance(spec, Mapping):
            raise FilterError(
                f"{subject} must be a JSON object such as {_EXAMPLE}, not {_json_type(spec)}"
            )
        if not spec:
            hint = "; use null for no filter" if not where else ""
            raise FilterError(f"{subject} is empty; give at least one condition{hint}")
        prefix = f"{where}." if where else ""
        for key, value in spec.items():
            if not isinstance(key, str):
                raise FilterError(f"{subject} has a key {key!r} that is not a string")
            if key in ("$and", "$or"):
                if not isinstance(value, list) or not value:
                    raise FilterError(f"{key}{_in(where)} must be a non-empty list of filters")
                for index, item in enumerate(value):
                    self.check_filter(item, where=f"{prefix}{key}[{index}]", depth=depth + 1)
            elif key == "$not":
                self.check_filter(value, where=f"{prefix}$not", depth=depth + 1)
            elif key.startswith("$"):
                raise FilterError(
                    f"unknown operator {key}{_in(where)}; a filter's keys are dotted paths such "
                    f"as data.status or one of {', '.join(_LOGICAL_OPERATORS)}, and operators "
                    f'such as $in go under a path: {{"data.status": {{"$in": ["done"]}}}}'
                )
            else:
                self.check_condition(key, value, where=where)

    def check_condition(self, path: str, value: Any, *, where: str) -> None:
        if not all(_PATH_SEGMENT.fullmatch(segment) for segment in path.split(".")):
            raise FilterError(
                f"path {path!r}{_in(where)} is not valid; use dot-separated names of letters, "
                "digits, _ and - such as data.status or data.stops.0.id"
            )
        here = f"{path}{_in(where)}"
        if not isinstance(value, Mapping):
            self.count_condition()
            self.check_value(value, f"the value under {here}", depth=1)
            return
        if not value:
            raise FilterError(
                f"the condition on {here} is empty; give a value, an operator such as "
                '{"$exists": true}, or {"$eq": {}} to match an empty object'
            )
        operators = [key for key in value if isinstance(key, str) and key.startswith("$")]
        if not operators:
            self.count_condition()
            self.check_value(value, f"the value under {here}", depth=1)
            return
        if len(operators) != len(value):
            raise FilterError(
                f"the object under {here} mixes operators with plain keys; use only operators, "
                'or {"$eq": {...}} to compare with an object'
            )
        for name, operand in value.items():
            self.count_condition()
            self.check_operator(name, operand, here)

    def check_operator(self, name: str, operand: Any, here: str) -> None:
        if name in ("$eq", "$neq"):
            self.check_value(operand, f"{name} under {here}", depth=1)
        elif name in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise FilterError(f"{name} under {here} must be a list, not {_json_type(operand)}")
            if len(operand) > MAX_LIST_OPERAND_ITEMS:
                raise FilterError(
                    f"{name} under {here} has {len(operand)} items; at most "
                    f"{MAX_LIST_OPERAND_ITEMS} are allowed"
                )
            self.check_value(operand, f"{name} under {here}", depth=1)
        elif name == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(
                    f"$exists under {here} must be true or false, not {_json_type(operand)}"
                )
        elif name in _ORDERINGS:
            if not (isinstance(operand, str) or _is_number(operand)) or (
                isinstance(operand, float) and not math.isfinite(operand)
            ):
                raise FilterError(
                    f"{name} under {here} must be a number or a string, not {_json_type(operand)}"
                )
        else:
            raise FilterError(
                f"unknown operator {name} under {here}; use one of {', '.join(_FIELD_OPERATORS)}"
            )

    def count_condition(self) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise FilterError(
                f"the filter has more than {MAX_CONDITIONS} conditions; simplify it, for example "
                "with $in instead of many alternatives"
            )

    def check_value(self, value: Any, what: str, *, depth: int) -> None:
        if depth > MAX_VALUE_DEPTH:
            raise FilterError(f"{what} nests more than {MAX_VALUE_DEPTH} levels deep")
        if value is None or isinstance(value, bool | int | str):
            return
        if isinstance(value, float):
            if not math.isfinite(value):
                raise FilterError(f"{what} holds {value}, which is not a JSON number")
            return
        if isinstance(value, list):
            for item in value:
                self.check_value(item, what, depth=depth + 1)
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise FilterError(f"{what} has an object key {key!r} that is not a string")
                self.check_value(item, what, depth=depth + 1)
            return
        raise FilterError(f"{what} holds {_json_type(value)}, which is not a JSON value")


def filter_matches(spec: Mapping[str, Any], envelope: Mapping[str, Any]) -> bool:
    return all(_key_matches(key, operand, envelope) for key, operand in spec.items())


def _key_matches(key: str, operand: Any, envelope: Mapping[str, Any]) -> bool:
    if key == "$and":
        return all(filter_matches(item, envelope) for item in operand)
    if key == "$or":
        return any(filter_matches(item, envelope) for item in operand)
    if key == "$not":
        return not filter_matches(operand, envelope)
    found = _resolve(envelope, key)
    if isinstance(operand, Mapping) and operand and all(name.startswith("$") for name in operand):
        return all(_operator_matches(name, arg, found) for name, arg in operand.items())
    return found is not _MISSING and _json_equal(found, operand)


def _operator_matches(name: str, operand: Any, found: Any) -> bool:
    if name == "$exists":
        return (found is not _MISSING) == bool(operand)
    if found is _MISSING:
        return name in ("$neq", "$nin")
    if name == "$eq":
        return _json_equal(found, operand)
    if name == "$neq":
        return not _json_equal(found, operand)
    if name == "$in":
        return any(_json_equal(found, item) for item in operand)
    if name == "$nin":
        return not any(_json_equal(found, item) for item in operand)
    ordering = _ORDERINGS[name]
    if (_is_number(found) and _is_number(operand)) or (
        isinstance(found, str) and isinstance(operand, str)
    ):
        return ordering(found, operand)
    return False


def _is_list_index(segment: str) -> bool:
    # int() refuses strings of more than 4300 digits, and no list is that long anyway.
    return segment.isascii() and segment.isdigit() and len(segment) <= 18


def _resolve(envelope: Mapping[str, Any], path: str) -> Any:
    current: Any = envelope
    for segment in path.split("."):
        if isinstance(current, Mapping):
            if segment not in current:
                return _MISSING
            current = current[segment]
        elif isinstance(current, list) and _is_list_index(segment):
            index = int(segment)
            if index >= len(current):
                return _MISSING
            current = current[index]
        else:
            return _MISSING
    return current


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if left is None or right is None:
        return left is right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(
            _json_equal(value, right[key]) for key, value in left.items()
        )
    return False
