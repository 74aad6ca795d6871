"""Which subscriptions want an event: type patterns, vendors, sources and the JSON filter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from relay.subscriptions.filters import event_type_matches, filter_matches


class Matchable(Protocol):
    """What matching reads of a subscription: the ORM row, or the ingest's lighter copy."""

    @property
    def id(self) -> str: ...
    @property
    def ordered(self) -> bool: ...
    @property
    def event_types(self) -> Sequence[str]: ...
    @property
    def vendors(self) -> Sequence[str] | None: ...
    @property
    def source_ids(self) -> Sequence[str] | None: ...
    @property
    def filter(self) -> Mapping[str, Any] | None: ...


def wants(subscription: Matchable, envelope: Mapping[str, Any]) -> bool:
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
