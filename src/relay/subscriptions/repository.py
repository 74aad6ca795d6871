from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.outbox.states import TAKES_NEW_DELIVERIES, liveness_in_sql
from relay.subscriptions.models import Subscription

# Fan-out's rule, the same one the ingest's lookup statement reads (ingest/repository.py).
TAKES_NEW_DELIVERIES_SQL = liveness_in_sql("subscriptions", TAKES_NEW_DELIVERIES)


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
        """Subscriptions that take new deliveries (paused and failing ones included: theirs
        wait)."""
        query = select(Subscription).where(text(TAKES_NEW_DELIVERIES_SQL))
        return (await self.session.execute(query)).scalars().all()

    async def add(self, subscription: Subscription) -> None:
        self.session.add(subscription)
        await self.session.flush()
