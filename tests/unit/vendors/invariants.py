"""What every event an adapter emits must satisfy, whatever the input: the ingest stores and
sends these fields without further checks."""

from __future__ import annotations

from datetime import UTC, timedelta

import orjson

from relay.core.jsonutil import dumps
from relay.vendors.base import NormalizedEvent, ParsedWebhook


def _column_text(value: str | None, limit: int) -> None:
    if value is not None:
        assert value, "an empty string where the column expects text or null"
        assert len(value) <= limit
        assert "\x00" not in value


def check_event(event: NormalizedEvent) -> None:
    assert event.type
    assert len(event.type) <= 100
    _column_text(event.vendor_event_name, 200)
    _column_text(event.vendor_event_id, 200)
    _column_text(event.subject_kind, 32)
    _column_text(event.subject_id, 200)
    assert 0 < len(event.dedupe_key) <= 512
    assert "\x00" not in event.dedupe_key
    if event.occurred_at is not None:
        assert event.occurred_at.utcoffset() == timedelta(0)
        assert event.occurred_at.tzinfo is UTC
    assert isinstance(event.data, dict)
    encoded = dumps({"data": event.data, "raw": event.raw})
    assert orjson.loads(encoded)["data"] == event.data


def check_parsed(parsed: ParsedWebhook) -> None:
    assert parsed.kind in ("events", "ping")
    if parsed.kind == "ping":
        assert parsed.events == []
    for event in parsed.events:
        check_event(event)
    for note in parsed.notes:
        assert "\x00" not in note
