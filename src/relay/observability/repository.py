"""The database reads behind the scrape-time gauges and the live activity feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.observability.metrics import PendingBacklog, SubscriptionBreaker
from relay.stats.repository import ID_SLACK, lowest_id

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _since(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("since", type_=DateTime(timezone=True)))


# Reads only the pending rows, through the pending partial index: cost follows the backlog.
_BACKLOG = text(
    """
    SELECT subscription_id, count(*) AS pending,
           GREATEST(EXTRACT(EPOCH FROM (:now - min(created_at))), 0) AS oldest_age_seconds
    FROM deliveries
    WHERE status = 'pending'
    GROUP BY subscription_id
    """
).bindparams(bindparam("now", type_=DateTime(timezone=True)))

_BREAKERS = text("SELECT id, state FROM subscriptions WHERE deleted_at IS NULL")


class MetricsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def backlog(self, *, now: datetime) -> list[PendingBacklog]:
        rows = await self.session.execute(_BACKLOG, {"now": now})
        return [
            PendingBacklog(
                subscription_id=row.subscription_id,
                pending=int(row.pending),
                oldest_age_seconds=float(row.oldest_age_seconds),
            )
            for row in rows
        ]

    async def breakers(self) -> list[SubscriptionBreaker]:
        rows = await self.session.execute(_BREAKERS)
        return [SubscriptionBreaker(subscription_id=row.id, state=row.state) for row in rows]


# Both feeds find their rows through the primary key: ids are ULIDs, ordered by creation.
_RECENT_EVENTS = _since(
    """
    SELECT e.id, e.type, e.source_id, s.slug AS source, e.vendor, e.subject_kind,
           e.subject_id, e.received_at
    FROM events AS e JOIN sources AS s ON s.id = e.source_id
    WHERE e.id >= :lowest_id AND e.received_at >= :since
      AND (CAST(:type AS text) IS NULL OR e.type = :type)
      AND (CAST(:source AS text) IS NULL OR s.id = :source OR s.slug = :source)
      AND (CAST(:subscription_id AS text) IS NULL OR EXISTS (
          SELECT 1 FROM deliveries AS d
          WHERE d.event_id = e.id AND d.subscription_id = :subscription_id))
    ORDER BY e.id
    LIMIT :limit
    """
)

_RECENT_ATTEMPTS = _since(
    """
    SELECT a.id, a.delivery_id, d.event_id, e.type AS event_type, s.slug AS source,
           a.subscription_id, a.attempt_number, a.outcome, a.response_status, a.error_class,
           a.started_at, a.duration_ms
    FROM delivery_attempts AS a
    JOIN deliveries AS d ON d.id = a.delivery_id
    JOIN events AS e ON e.id = d.event_id
    JOIN sources AS s ON s.id = e.source_id
    WHERE a.id >= :lowest_id AND a.started_at >= :since
      AND (CAST(:type AS text) IS NULL OR e.type = :type)
      AND (CAST(:source AS text) IS NULL OR s.id = :source OR s.slug = :source)
      AND (CAST(:subscription_id AS text) IS NULL OR a.subscription_id = :subscription_id)
    ORDER BY a.id
    LIMIT :limit
    """
)


@dataclass(frozen=True, slots=True)
class ActivityFilter:
    since: datetime
    type: str | None = None
    source: str | None = None
    subscription_id: str | None = None


def _lowest(prefix: str, since: datetime) -> str:
    # Any moment before the Unix epoch has the same answer, and the earliest ones (year 1) have
    # no moment ID_SLACK before them.
    return lowest_id(prefix, max(since, EPOCH) - ID_SLACK)


class ActivityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def events(self, query: ActivityFilter, *, limit: int) -> list[dict[str, Any]]:
        rows = await self.session.execute(
            _RECENT_EVENTS,
            {
                "lowest_id": _lowest("evt", query.since),
                "since": query.since,
                "type": query.type,
                "source": query.source,
                "subscription_id": query.subscription_id,
                "limit": limit,
            },
        )
        return [dict(row._mapping) for row in rows]

    async def attempts(self, query: ActivityFilter, *, limit: int) -> list[dict[str, Any]]:
        rows = await self.session.execute(
            _RECENT_ATTEMPTS,
            {
                "lowest_id": _lowest("att", query.since),
                "since": query.since,
                "type": query.type,
                "source": query.source,
                "subscription_id": query.subscription_id,
                "limit": limit,
            },
        )
        return [dict(row._mapping) for row in rows]
