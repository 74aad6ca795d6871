"""Deliveries as admins see them: reading the log, and asking for a retry now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.errors import Conflict, NotFound
from relay.deliveries.repository import DeliveryQuery, DeliveryRepository
from relay.outbox import transitions
from relay.outbox.models import Delivery, DeliveryAttempt
from relay.outbox.states import ENDS_PENDING_DELIVERIES, Liveness
from relay.subscriptions.models import Subscription


class DeliveryService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repository = DeliveryRepository(session)

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
        # A deleted subscription's attempts stay readable, like its deliveries.
        if await self.session.get(Subscription, subscription_id) is None:
            raise NotFound(f"no subscription with id '{subscription_id}'")
        return await self.repository.list_attempts(
            subscription_id, errors_only=errors_only, limit=limit, cursor=cursor
        )

    async def list(
        self, query: DeliveryQuery, *, limit: int, cursor: str | None
    ) -> Sequence[Delivery]:
        return await self.repository.list(query, limit=limit, cursor=cursor)

    async def retry(self, delivery_id: str, *, now: datetime) -> Delivery:
        """Makes a delivery due now: a finished one goes back in the queue, a pending one
        waiting for its next attempt is sent at once. A paused subscription's waits for its
        resume, like every delivery of it."""
        delivery = await self.get(delivery_id)
        subscription = await self.session.get(Subscription, delivery.subscription_id)
        assert subscription is not None  # a delivery's subscription is only ever marked deleted
        state = subscription.liveness
        if state is Liveness.DELETED:
            raise Conflict(f"delivery '{delivery_id}' belongs to a deleted subscription")
        if state in ENDS_PENDING_DELIVERIES:
            why = subscription.state_reason or "by an admin"
            raise Conflict(
                f"subscription '{subscription.id}' is {state.value} ({why}): "
                'switch it back on with PATCH {"active": true} first'
            )
        return await transitions.retry(self.session, delivery_id, now=now)
