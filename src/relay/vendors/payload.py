"""What the vendor adapters share: reading the body, looking values up, and the rules that turn
what an adapter found into a `NormalizedEvent` (mapping overrides, type lookup, unknown events,
dedupe keys).

Every function here accepts any JSON value and either returns or raises `PayloadError`, which
is what lets the adapters built on it promise the same.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonpointer
import orjson

from relay.core.jsonutil import isoformat
from relay.vendors.base import InboundRequest, MappingOverrides, NormalizedEvent, PayloadError

Json = dict[str, Any]

# orjson cannot encode more than 254 levels, and the envelope wraps `raw` in a few more: a body
# accepted deeper than this could be parsed but never delivered.
ENCODABLE_DEPTH = 200
# Width of the events table's vendor_event_name, vendor_event_id and subject_id columns.
COLUMN_LIMIT = 200
# Three parts and two colons stay under the 512 characters of a stored dedupe key.
KEY_PART_LIMIT = 160
# JavaScript subscribers lose precision above 2**53; nothing the adapters count gets near it.
_SAFE_INTEGER = 2**53

_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_WORD = re.compile(r"[\W_]+")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_WHOLE = re.compile(r"[+-]?\d{1,16}")
_EPOCH = re.compile(r"\d{9,14}(?:\.\d{1,9})?")
# No event or status name in any table is longer: a body-sized string is not worth rewriting.
_LONGEST_NAME = 256
# Above this an epoch number is taken as milliseconds: seconds would be past the year 5000.
_EPOCH_MILLIS_FROM = 100_000_000_000


def load_json(request: InboundRequest) -> Any:
    """The parsed body. The content type is not trusted: whatever was sent is parsed."""
    limit = min(request.max_json_depth, ENCODABLE_DEPTH)
    if not request.body.strip():
        raise PayloadError("body is empty: the webhook must carry a JSON payload")
    try:
        value = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise PayloadError(_too_deep(limit)) from exc
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    if _deeper_than(value, limit):
        raise PayloadError(_too_deep(limit))
    return value


def load_object(request: InboundRequest) -> Json:
    value = load_json(request)
    if not isinstance(value, dict):
        raise PayloadError(f"body must be a JSON object, got {describe(value)}")
    return value


def _too_deep(limit: int) -> str:
    return f"body nests objects and arrays more than {limit} levels deep: flatten the payload"


def _deeper_than(value: Any, limit: int) -> bool:
    # Iterative on purpose: recursion would let the body choose our stack depth.
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        pending.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return False


def describe(value: Any) -> str:
    """The JSON type of a value, for messages to the sender."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def obj(value: Any) -> Json | None:
    return value if isinstance(value, dict) else None


def objects(value: Any) -> list[Json]:
    """The objects in a JSON array; anything else in it, or a non-array, gives nothing."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def child(parent: Json | None, *keys: str) -> Json | None:
    """The first of `keys` in `parent` that holds an object."""
    if parent is None:
        return None
    for key in keys:
        found = parent.get(key)
        if isinstance(found, dict):
            return found
    return None


def text(value: Any) -> str | None:
    """A scalar as text (ids arrive as numbers or strings); None for blanks and non-scalars."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        cleaned = value.strip().replace("\x00", "\ufffd")
        return cleaned or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def first_text(parent: Json | None, *keys: str) -> str | None:
    if parent is None:
        return None
    for key in keys:
        found = text(parent.get(key))
        if found is not None:
            return found
    return None


def wrapped(body: Json, *keys: str) -> list[Json]:
    """The body and the objects it wraps under `keys`, outermost first: where to look."""
    return [body, *(found for key in keys if isinstance(found := body.get(key), dict))]


def child_in(places: Iterable[Json | None], *keys: str) -> Json | None:
    for place in places:
        found = child(place, *keys)
        if found is not None:
            return found
    return None


def text_in(places: Iterable[Json | None], *keys: str) -> str | None:
    for place in places:
        found = first_text(place, *keys)
        if found is not None:
            return found
    return None


def value_in(places: Iterable[Json | None], *keys: str) -> Any:
    """The first of `keys` that is present and not null, as sent."""
    for place in places:
        if place is None:
            continue
        for key in keys:
            if place.get(key) is not None:
                return place[key]
    return None


def number(value: Any) -> float | None:
    """A finite number, from a JSON number or a decimal string."""
    if isinstance(value, bool):
        return None
    numeric = isinstance(value, int | float)
    if not numeric and not (
        isinstance(value, str) and len(value) <= 64 and _DECIMAL.fullmatch(value.strip())
    ):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    """A whole number, from a JSON number or a string of digits."""
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            return None
    elif isinstance(value, str):
        if not _WHOLE.fullmatch(value.strip()):
            return None
    elif not isinstance(value, int) or isinstance(value, bool):
        return None
    result = int(value)
    return result if abs(result) < _SAFE_INTEGER else None


def position(value: Any) -> int | None:
    """A 1-based place on a route; vendors send 0 for "not placed yet"."""
    found = integer(value)
    return found if found is not None and found > 0 else None


def location(lat: Any, lng: Any) -> dict[str, float] | None:
    latitude, longitude = number(lat), number(lng)
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    return {"lat": latitude, "lng": longitude}


def location_of(holder: Json | None) -> dict[str, float] | None:
    """The coordinates in an object: lat/lng or latitude/longitude, on it or in a child."""
    if holder is None:
        return None
    point = child(holder, "location", "coordinates", "geo") or holder
    return location(
        value_in([point], "lat", "latitude"),
        value_in([point], "lng", "lon", "longitude"),
    )


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text or unix seconds/milliseconds; None otherwise.

    Text without an offset is taken as UTC, which is what every vendor here sends. A bare date
    is not a moment and gives None.
    """
    try:
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float):
            return _from_epoch(float(value))
        if not isinstance(value, str):
            return None
        candidate = value.strip()
        if _EPOCH.fullmatch(candidate):
            return _from_epoch(float(candidate))
        if len(candidate) <= len("2024-01-01") or len(candidate) > 64:
            return None
        moment = datetime.fromisoformat(candidate)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _from_epoch(seconds: float) -> datetime | None:
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    if seconds >= _EPOCH_MILLIS_FROM:
        seconds /= 1000
    return datetime.fromtimestamp(seconds, UTC)


def time_text(value: Any) -> str | None:
    """A moment as the relay writes them (ISO 8601, UTC, milliseconds, Z)."""
    moment = parse_time(value)
    return None if moment is None else isoformat(moment)


def snake(name: str) -> str:
    """`Delivery cancelled`, `deliveryCancelled` and `DELIVERY-CANCELLED` all give
    `delivery_cancelled`."""
    if len(name) > _LONGEST_NAME:
        return name
    return _NOT_WORD.sub("_", _CAMEL_HUMP.sub("_", name).lower()).strip("_")


# Vendors' status words, in any spelling `snake` reduces to these, and the word data.status
# carries for each.
_STATUS_WORDS: dict[str, str] = {
    "created": "created",
    "new": "created",
    "free": "created",
    "unscheduled": "unscheduled",
    "unplanned": "unscheduled",
    "planning": "planning",
    "planned": "scheduled",
    "scheduled": "scheduled",
    "assigned": "assigned",
    "assigned_to_delivery_provider": "assigned",
    "unassigned": "unassigned",
    "accepted": "accepted",
    "rejected": "rejected",
    "started": "started",
    "on_the_way": "started",
    "in_progress": "started",
    "in_transit": "started",
    "arrived": "arrived",
    "checked_in": "arrived",
    "done": "done",
    "completed": "done",
    "delivered": "done",
    "finished": "done",
    "picked_up": "done",
    "failed": "failed",
    "not_delivered": "failed",
    "undeliverable": "failed",
    "not_home": "failed",
    "refused": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "pending": "pending",
    "confirmed": "confirmed",
    "deleted": "deleted",
    "online": "online",
    "offline": "offline",
}


def status_word(value: Any, numbered: Mapping[int, str] | None = None) -> str | None:
    """The relay's word for a vendor's status: numbers through the vendor's own table."""
    if numbered is not None:
        code = integer(value)
        if code is not None:
            return numbered.get(code)
    if isinstance(value, str):
        return _STATUS_WORDS.get(snake(value))
    return None


def status_fields(value: Any, numbered: Mapping[int, str] | None = None) -> Json:
    """`status` and `vendor_status` for data; empty when the payload carries no status."""
    if not is_scalar(value) or text(value) is None:
        return {}
    return compact(status=status_word(value, numbered), vendor_status=value)


def address_text(value: Any) -> str | None:
    """An address as one line: vendors send either a line or an object of parts."""
    if not isinstance(value, dict):
        return text(value)
    street = " ".join(
        part
        for part in (
            first_text(value, "street", "streetName", "street_name", "address1", "line1"),
            first_text(value, "houseNumber", "house_number", "number"),
            first_text(value, "houseNumberAddition", "house_number_addition"),
        )
        if part
    )
    town = " ".join(
        part
        for part in (
            first_text(value, "postalCode", "postal_code", "postcode", "zipcode", "zip"),
            first_text(value, "city", "town"),
        )
        if part
    )
    country = first_text(value, "country", "countryCode", "country_code")
    return ", ".join(part for part in (street, town, country) if part) or None


def compact(**fields: Any) -> Json:
    """The fields that carry something: no None, no empty object or list, no blank text."""
    return {
        name: value
        for name, value in fields.items()
        if value is not None and value != {} and value != [] and value != ""
    }


def scalars(parent: Json | None, *keys: str) -> Json:
    """The named fields of `parent` that hold a scalar, as sent (for data.extra)."""
    if parent is None:
        return {}
    return {key: parent[key] for key in keys if is_scalar(parent.get(key)) and parent[key] != ""}


def pointed(document: Any, pointer: str | None) -> Any:
    """The scalar an admin's JSON pointer names, or None when it names nothing usable."""
    if not pointer:
        return None
    try:
        found = jsonpointer.resolve_pointer(document, pointer, None)
    except jsonpointer.JsonPointerException:
        return None
    return found if is_scalar(found) else None


def overridden_name(raw: Any, overrides: MappingOverrides) -> str | None:
    """The event name at the source's event_name_pointer, which wins over the adapter's own."""
    return text(pointed(raw, overrides.event_name_pointer))


def shortened(value: str, limit: int) -> str:
    """`value`, or when longer than `limit` a stand-in that still identifies it."""
    if len(value) <= limit:
        return value
    return f"{value[:64]}~sha256:{hashlib.sha256(value.encode()).hexdigest()}"


def canonical_sha256(value: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of a parsed value."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Subject:
    kind: str
    id: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """What an adapter found in one event, before the shared rules finish it.

    `qualifier` refines the name for the type lookup (`visit.status.changed (status done)`).
    `event_time` is the value as sent; it becomes occurred_at when it reads as a moment.
    """

    name: str | None
    subject: Subject
    data: Json
    raw: Any
    qualifier: str | None = None
    event_id: str | None = None
    event_time: Any = None


@dataclass(frozen=True, slots=True)
class Catalogue:
    """A vendor's event names and the unified type of each.

    `canonical` turns a name as sent into the spelling `event_types` is keyed by.
    """

    vendor: str
    event_types: Mapping[str, str]
    canonical: Callable[[str], str]

    def lookup_keys(self, name: str, qualifier: str | None) -> list[str]:
        keys: list[str] = []
        for spelling in (name, self.canonical(name)):
            if qualifier:
                keys.append(f"{spelling} ({qualifier})")
            keys.append(spelling)
        return list(dict.fromkeys(keys))

    def unified_type(
        self, name: str | None, qualifier: str | None, overrides: MappingOverrides
    ) -> str | None:
        if name is None:
            return None
        keys = self.lookup_keys(name, qualifier)
        for table in (overrides.type_map, self.event_types):
            for key in keys:
                found = table.get(key)
                if found:
                    return found
        return None


def finish(
    draft: Draft, catalogue: Catalogue, overrides: MappingOverrides, notes: list[str]
) -> NormalizedEvent:
    """Apply the source's overrides and the shared rules to what an adapter found."""
    vendor = catalogue.vendor
    unified = catalogue.unified_type(draft.name, draft.qualifier, overrides)
    name = draft.name or "unknown"
    if unified is None:
        unified = f"{vendor}.unknown"
        label = name if len(name) <= 80 else f"{name[:77]}..."
        note = f"unknown {vendor} event '{label}': stored as {unified}"
        if note not in notes:
            notes.append(note)

    event_id = text(pointed(draft.raw, overrides.event_id_pointer)) or draft.event_id
    subject_id = text(pointed(draft.raw, overrides.entity_id_pointer)) or draft.subject.id
    when = pointed(draft.raw, overrides.event_time_pointer)
    if when is None:
        when = draft.event_time
    occurred_at = parse_time(when)
    # Only a moment read as one joins the key: a date or free text would merge distinct events.
    moment = None if occurred_at is None else isoformat(occurred_at)

    return NormalizedEvent(
        type=unified,
        vendor_event_name=shortened(name, COLUMN_LIMIT),
        vendor_event_id=None if event_id is None else shortened(event_id, COLUMN_LIMIT),
        subject_kind=draft.subject.kind,
        subject_id=None if subject_id is None else shortened(subject_id, COLUMN_LIMIT),
        subject_external_id=(
            None
            if draft.subject.external_id is None
            else shortened(draft.subject.external_id, COLUMN_LIMIT)
        ),
        occurred_at=occurred_at,
        data=draft.data,
        raw=draft.raw,
        dedupe_key=dedupe_key(event_id, draft.name, subject_id, moment, draft.raw),
    )


def dedupe_key(
    event_id: str | None, name: str | None, entity_id: str | None, moment: str | None, raw: Any
) -> str:
    """The vendor's event id; else name, entity id and event time; else a hash of the event.

    Colons and percent signs in the name and entity id are percent-encoded so that the three
    parts can never be confused with each other.
    """
    if event_id is not None:
        return shortened(event_id, COLUMN_LIMIT)
    if name and entity_id and moment:
        return ":".join(
            (
                shortened(_escape(name), KEY_PART_LIMIT),
                shortened(_escape(entity_id), KEY_PART_LIMIT),
                shortened(moment, KEY_PART_LIMIT),
            )
        )
    return f"sha256:{canonical_sha256(raw)}"


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")
