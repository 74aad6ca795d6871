"""The unified event envelope: the public contract subscribers receive (docs/events.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relay.core.jsonutil import isoformat
from relay.vendors.base import NormalizedEvent

ENVELOPE_VERSION = "2026-11-01"


def build_envelope(
    *,
    event_id: str,
    event: NormalizedEvent,
    source_id: str,
    source_slug: str,
    vendor: str,
    received_at: datetime,
) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event.type,
        "version": ENVELOPE_VERSION,
        "timestamp": isoformat(event.occurred_at or received_at),
        "received_at": isoformat(received_at),
        "source": {"id": source_id, "slug": source_slug, "vendor": vendor},
        "vendor_event": {"name": event.vendor_event_name, "id": event.vendor_event_id},
        "subject": {
            "kind": event.subject_kind,
            "id": event.subject_id,
            "external_id": event.subject_external_id,
        },
        "data": event.data,
        "raw": event.raw,
    }


def ping_envelope(*, event_id: str, subscription_id: str, now: datetime) -> dict[str, Any]:
    """The `relay.ping` event a subscription's test sends: the usual envelope, no vendor."""
    moment = isoformat(now)
    return {
        "id": event_id,
        "type": "relay.ping",
        "version": ENVELOPE_VERSION,
        "timestamp": moment,
        "received_at": moment,
        "source": {"id": None, "slug": None, "vendor": "relay"},
        "vendor_event": {"name": "relay.ping", "id": None},
        "subject": {"kind": "subscription", "id": subscription_id, "external_id": None},
        "data": {"message": "test delivery from relay; answer 2xx to pass"},
        "raw": None,
    }
