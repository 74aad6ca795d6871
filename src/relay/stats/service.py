"""Assembles the stats answer from the aggregate queries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from relay.stats.repository import MinuteCount, StatsRepository, Window
from relay.stats.schemas import OverallStats, StatsOut, SubscriptionStats, WindowStats

_EMPTY = Window(received=0, delivered=0, failed=0, pending=0, p50=None, p99=None)


def _out(window: Window, *, received: int | None = None) -> WindowStats:
    return WindowStats(
        received=window.received if received is None else received,
        delivered=window.delivered,
        failed=window.failed,
        pending=window.pending,
        latency_p50_ms=window.p50,
        latency_p99_ms=window.p99,
    )


class StatsService:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = StatsRepository(session)

    async def per_minute(self, *, now: datetime, window: timedelta) -> list[MinuteCount]:
        """Deliveries created in each minute of the window, by status; minutes without any
        are left out."""
        return await self.repository.per_minute(since=now - window)

    async def subscription(self, subscription_id: str, *, now: datetime) -> OverallStats:
        """One subscription's windows, as `stats` gives them, reading only its deliveries."""
        hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
        counts = await self.repository.deliveries(
            hour_ago=hour_ago, day_ago=day_ago, subscription_id=subscription_id
        )
        row = next((row for row in counts if row.subscription_id == subscription_id), None)
        pending = await self.repository.pending_now()
        return OverallStats(
            pending_now=pending.get(subscription_id, 0),
            last_hour=_out(row.hour if row else _EMPTY),
            last_day=_out(row.day if row else _EMPTY),
        )

    async def day_counts(self, ids: Sequence[str], *, now: datetime) -> dict[str, dict[str, int]]:
        """Deliveries of each subscription created in the last 24 hours, by status: what a
        list of subscriptions shows, without the latency percentiles it does not show."""
        return await self.repository.day_counts(ids, day_ago=now - timedelta(days=1))

    async def stats(self, *, now: datetime) -> StatsOut:
        hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
        counts = await self.repository.deliveries(hour_ago=hour_ago, day_ago=day_ago)
        hour_events, day_events = await self.repository.events_received(
            hour_ago=hour_ago, day_ago=day_ago
        )
        pending = await self.repository.pending_now()
        by_subscription = {row.subscription_id: row for row in counts if row.subscription_id}
        total = next((row for row in counts if row.subscription_id is None), None)
        subscriptions = await self.repository.subscriptions(sorted({*by_subscription, *pending}))
        per_subscription = []
        for info in subscriptions:
            row = by_subscription.get(info.id)
            per_subscription.append(
                SubscriptionStats(
                    subscription_id=info.id,
                    url=info.url,
                    state=info.state,
                    active=info.active,
                    deleted=info.deleted,
                    liveness=info.liveness,
                    pending_now=pending.get(info.id, 0),
                    last_hour=_out(row.hour if row else _EMPTY),
                    last_day=_out(row.day if row else _EMPTY),
                )
            )
        return StatsOut(
            generated_at=now,
            overall=OverallStats(
                pending_now=sum(pending.values()),
                last_hour=_out(total.hour if total else _EMPTY, received=hour_events),
                last_day=_out(total.day if total else _EMPTY, received=day_events),
            ),
            subscriptions=per_subscription,
        )
