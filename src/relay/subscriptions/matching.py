"""Which subscriptions want an event: type patterns, vendors, sources and the JSON filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relay.subscriptions.filters import event_type_matches, filter_matches
from relay.subscriptions.models import Subscription


def wants(subscription: Subscription, envelope: Mapping[str, Any]) -> bool:
    if not event_type_matches(subscription.event_types, envelope["type"]):
        return False
    source = envelope["source"]
    if subscription.vendors and source["vendor"] not in subscription.vendors:
        return False
    if subscription.source_ids and source["id"] not in subscription.source_ids:
        return False
    return subscription.filter is None or filter_matches(subscription.filter, envelope)


def subject_key(envelope: Mapping[str, Any]) -> str | None:
    subject = envelope["subject"]
    if subject.get("id") is None:
        return None
    return f"{subject['kind']}:{subject['id']}"
