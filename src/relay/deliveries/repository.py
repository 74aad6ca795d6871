"""Reads of deliveries and attempts, for the API, the stats and the jobs. Every write is the
outbox's (relay.outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.outbox.models import Delivery, DeliveryAttempt
from relay.outbox.states import DeliveryStatus


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    subscription_id: str | None = None
    event_id: str | None = None
    status: str | None = None
    since: datetime | None = None


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, delivery_id: str) -> Delivery | None:
        return await self.session.get(Delivery, delivery_id)

    async def attempts_of(self, delivery_id: str) -> Sequence[DeliveryAttempt]:
        query = (
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.attempt_number)
        )
        return (await self.session.execute(query)).scalars().all()

    async def list(
        self, query: DeliveryQuery, *, limit: int, cursor: str | None
    ) -> Sequence[Delivery]:
        statement = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
        if cursor is not None:
            statement = statement.where(Delivery.id < cursor)
        if query.subscription_id is not None:
            statement = statement.where(Delivery.subscription_id == query.subscription_id)
        if query.event_id is not None:
            statement = statement.where(Delivery.event_id == query.event_id)
        if query.status is not None:
            statement = statement.where(Delivery.status == query.status)
        if query.since is not None:
            statement = statement.where(Delivery.created_at >= query.since)
        return (await self.session.execute(statement)).scalars().all()

    async def list_attempts(
        self, subscription_id: str, *, errors_only: bool, limit: int, cursor: str | None
    ) -> Sequence[DeliveryAttempt]:
        statement = (
            select(DeliveryAttempt)
            .where(DeliveryAttempt.subscription_id == subscription_id)
            .order_by(DeliveryAttempt.id.desc())
            .limit(limit)
        )
        if cursor is not None:
            statement = statement.where(DeliveryAttempt.id < cursor)
        if errors_only:
            statement = statement.where(DeliveryAttempt.outcome != "succeeded")
        return (await self.session.execute(statement)).scalars().all()

    async def count_recoverable(
        self,
        subscription_id: str,
        *,
        status: DeliveryStatus,
        since: datetime,
        until: datetime | None,
        changed_before: datetime,
        now: datetime,
    ) -> int:
        """What a recovery of `status` deliveries would requeue (see outbox.transitions.requeue):
        failed ones, or pending ones waiting for their next attempt."""
        query = (
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.subscription_id == subscription_id,
                Delivery.status == status,
                Delivery.created_at >= since,
                Delivery.updated_at <= changed_before,
            )
        )
        if status is DeliveryStatus.PENDING:
            query = query.where(
                ~Delivery.held, Delivery.locked_by.is_(None), Delivery.next_attempt_at > now
            )
        if until is not None:
            query = query.where(Delivery.created_at < until)
        return int((await self.session.execute(query)).scalar_one())

    async def due_backlog(self, *, subscription_id: str | None, cap: int) -> int:
        """Pending deliveries due now or within seconds that no worker holds yet, counted up
        to `cap`: what live traffic would queue behind. Per subscription, or all of them."""
        if subscription_id is None:
            result = await self.session.execute(_BACKLOG, {"cap": cap})
        else:
            result = await self.session.execute(
                _SUBSCRIPTION_BACKLOG, {"subscription_id": subscription_id, "cap": cap}
            )
        return int(result.scalar_one())


# Rows a worker claimed are not counted (the claim moves next_attempt_at to the lease's end);
# parked rows are (they are due, waiting only for room).
_SUBSCRIPTION_BACKLOG = text(
    """
    SELECT count(*) FROM (
        SELECT 1 FROM deliveries
        WHERE subscription_id = :subscription_id AND status = 'pending' AND NOT held
          AND next_attempt_at <= now() + interval '5 seconds'
        LIMIT :cap
    ) AS due
    """
)

# Parked rows count too: they are due, waiting only for their subscription to have room.
_BACKLOG = text(
    """
    SELECT count(*) FROM (
        (SELECT 1 FROM deliveries
         WHERE status = 'pending' AND NOT held AND NOT parked
           AND next_attempt_at <= now() + interval '5 seconds'
         LIMIT :cap)
        UNION ALL
        (SELECT 1 FROM deliveries WHERE status = 'pending' AND parked AND NOT held LIMIT :cap)
        LIMIT :cap
    ) AS due
    """
)
