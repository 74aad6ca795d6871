"""The contract every vendor adapter fulfils: a request in, unified events out, no I/O.

An adapter only ever raises `PayloadError`; anything else escaping one is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol


class PayloadError(ValueError):
    """The body cannot be understood; the message tells the sender what is wrong."""


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """What an adapter may look at. Header names are lower-case."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    max_json_depth: int = 64


@dataclass(frozen=True, slots=True)
class MappingOverrides:
    """Per-source fixes for a vendor's format drift, set by config instead of a release.

    Pointers are RFC 6901 JSON pointers into the event's raw object.
    """

    event_name_pointer: str | None = None
    event_id_pointer: str | None = None
    entity_id_pointer: str | None = None
    event_time_pointer: str | None = None
    type_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    """One event in the unified model, before the relay gives it an id and a source."""

    type: str
    vendor_event_name: str
    vendor_event_id: str | None
    subject_kind: str
    subject_id: str | None
    subject_external_id: str | None
    occurred_at: datetime | None
    data: dict[str, Any]
    raw: Any
    dedupe_key: str


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    """The outcome of parsing one request.

    `kind` is "ping" for a vendor's connectivity test, which is answered but makes no event.
    `notes` are human-readable remarks for the inbound request log (e.g. an unknown event name).
    """

    kind: Literal["events", "ping"]
    events: list[NormalizedEvent]
    notes: list[str] = field(default_factory=list)


class Adapter(Protocol):
    def __call__(self, request: InboundRequest, overrides: MappingOverrides) -> ParsedWebhook: ...
