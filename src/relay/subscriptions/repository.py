from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relay.deliveries.models import Delivery, DeliveryStatus
from relay.subscriptions.models import Subscription


class SubscriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, subscription_id: str) -> Subscription | None:
        subscription = await self.session.get(Subscription, subscription_id)
        if subscription is None or subscription.deleted_at is not None:
            return None
        return subscription

    async def list(self, *, limit: int, cursor: str | None) -> Sequence[Subscription]:
        query = (
            select(Subscription)
            .where(Subscription.deleted_at.is_(None))
            .order_by(Subscription.id.desc())
            .limit(limit)
        )
        if cursor is not None:
            query = query.where(Subscription.id < cursor)
        return (await self.session.execute(query)).scalars().all()

    async def live(self) -> Sequence[Subscription]:
        """Subscriptions that take new deliveries: active, not deleted, not disabled."""
        query = select(Subscription).where(
            Subscription.deleted_at.is_(None),
            Subscription.active,
            Subscription.state != "disabled",
        )
        return (await self.session.execute(query)).scalars().all()

    async def add(self, subscription: Subscription) -> None:
        self.session.add(subscription)
        await self.session.flush()

    async def fail_pending_deliveries(
        self, subscription_id: str, *, reason: str, now: datetime
    ) -> int:
        result = await self.session.execute(
            update(Delivery)
            .where(
                Delivery.subscription_id == subscription_id,
                Delivery.status == DeliveryStatus.PENDING,
            )
            .values(
                status=DeliveryStatus.FAILED,
                last_error=reason,
                completed_at=now,
                updated_at=now,
                locked_by=None,
                locked_until=None,
                held=False,
                parked=False,
            )
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
