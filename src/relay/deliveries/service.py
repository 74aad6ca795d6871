"""Deliveries: the outbox rows written with each event, and what admins do with them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.errors import Conflict, NotFound
from relay.core.ids import new_id
from relay.deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus
from relay.deliveries.repository import DeliveryQuery, DeliveryRepository, PlannedDelivery
from relay.subscriptions.matching import Matchable, subject_key, wants
from relay.subscriptions.models import SubscriptionState
from relay.subscriptions.repository import SubscriptionRepository


def plan_deliveries(
    subscriptions: Sequence[Matchable], envelopes: Sequence[Mapping[str, Any]]
) -> list[PlannedDelivery]:
    """One delivery per (event, subscription that wants it)."""
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


def delivery_rows(
    subscriptions: Sequence[Matchable], envelopes: Sequence[Mapping[str, Any]], *, now: datetime
) -> list[dict[str, Any]]:
    """The planned deliveries as rows for `DeliveryRepository.add_many`."""
    return [
        {
            "id": planned.id,
            "event_id": planned.event_id,
            "subscription_id": planned.subscription_id,
            "status": DeliveryStatus.PENDING,
            "held": False,
            "attempts": 0,
            "next_attempt_at": now,
            "subject_key": planned.subject_key,
            "event_timestamp": planned.event_timestamp,
            "created_at": now,
            "updated_at": now,
        }
        for planned in plan_deliveries(subscriptions, envelopes)
    ]


class DeliveryService:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = DeliveryRepository(session)
        self.subscriptions = SubscriptionRepository(session)

    async def get(self, delivery_id: str) -> Delivery:
        delivery = await self.repository.get(delivery_id)
        if delivery is None:
            raise NotFound(f"no delivery with id '{delivery_id}'")
        return delivery

    async def attempts(self, delivery_id: str) -> Sequence[DeliveryAttempt]:
        return await self.repository.attempts_of(delivery_id)

    async def subscription_attempts(
        self, subscription_id: str, *, errors_only: bool, limit: int, cursor: str | None
    ) -> Sequence[DeliveryAttempt]:
        if await self.subscriptions.get(subscription_id) is None:
            raise NotFound(f"no subscription with id '{subscription_id}'")
        return await self.repository.list_attempts(
            subscription_id, errors_only=errors_only, limit=limit, cursor=cursor
        )

    async def list(
        self, query: DeliveryQuery, *, limit: int, cursor: str | None
    ) -> Sequence[Delivery]:
        return await self.repository.list(query, limit=limit, cursor=cursor)

    async def retry(self, delivery_id: str, *, now: datetime) -> Delivery:
        """Puts a finished delivery back in the queue, due now.

        Its attempt count is kept, so a failure after the retry continues the subscription's
        schedule where it stopped instead of starting it over.
        """
        delivery = await self.get(delivery_id)
        if delivery.status == DeliveryStatus.PENDING:
            raise Conflict(
                f"delivery '{delivery_id}' is still pending (next attempt at "
                f"{delivery.next_attempt_at.isoformat()}); only a finished delivery can be retried"
            )
        subscription = await self.subscriptions.get(delivery.subscription_id)
        if subscription is None:
            raise Conflict(f"delivery '{delivery_id}' belongs to a deleted subscription")
        if not subscription.active or subscription.state == SubscriptionState.DISABLED:
            why = subscription.state_reason or "by an admin"
            raise Conflict(
                f"subscription '{subscription.id}' is disabled ({why}): "
                'switch it back on with PATCH {"active": true} first'
            )
        await self.repository.requeue(delivery, now=now)
        await self.repository.notify()
        return delivery
