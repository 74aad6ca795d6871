"""Fan-out: one delivery planned per (event, subscription that wants it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from relay.core.ids import new_id
from relay.outbox.transitions import PlannedDelivery
from relay.subscriptions.matching import Matchable, subject_key, wants


def plan_deliveries(
    subscriptions: Sequence[Matchable], envelopes: Sequence[Mapping[str, Any]]
) -> list[PlannedDelivery]:
    planned: list[PlannedDelivery] = []
    for envelope in envelopes:
        timestamp = datetime.fromisoformat(envelope["timestamp"])
        for subscription in subscriptions:
            if wants(subscription, envelope):
                planned.append(
                    PlannedDelivery(
                        id=new_id("dlv"),
                        event_id=envelope["id"],
                        subscription_id=subscription.id,
                        # Only ordered subscriptions pay for the claim query's subject check.
                        subject_key=subject_key(envelope) if subscription.ordered else None,
                        event_timestamp=timestamp,
                    )
                )
    return planned
