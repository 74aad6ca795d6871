"""The aggregate queries behind GET /v1/stats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession
from ulid import ULID

from relay.outbox.states import Liveness, liveness_sql


def _timed(sql: str, *names: str) -> TextClause:
    return text(sql).bindparams(*(bindparam(name, type_=DateTime(timezone=True)) for name in names))


# Deliveries are counted by when they were created; the id range (ids are ULIDs, ordered by
# creation) lets the primary key find the day's rows without reading the history.
# Latency is read off the delivery row itself, from its creation (the event's arrival; for a
# replay, the replay) to its success being recorded: looking up each succeeded delivery's
# attempt and event cost a random read per row, most of the overview's time on a busy day.
_DELIVERIES_SQL = """
    WITH recent AS (
        SELECT subscription_id, status, created_at >= :hour_ago AS in_hour,
               -- date_part, not EXTRACT: a float, where EXTRACT's numeric costs per row.
               CASE WHEN status = 'succeeded'
                    THEN date_part('epoch', completed_at - created_at) * 1000 END AS latency_ms
        FROM deliveries
        WHERE id >= :lowest_id AND created_at >= :day_ago{only}
    )
    SELECT grouping(subscription_id) = 1 AS is_total, subscription_id,
           count(*) FILTER (WHERE in_hour) AS hour_received,
           count(*) FILTER (WHERE in_hour AND status = 'succeeded') AS hour_delivered,
           count(*) FILTER (WHERE in_hour AND status = 'failed') AS hour_failed,
           count(*) FILTER (WHERE in_hour AND status = 'pending') AS hour_pending,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE in_hour)
               AS hour_p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) FILTER (WHERE in_hour)
               AS hour_p99,
           count(*) AS day_received,
           count(*) FILTER (WHERE status = 'succeeded') AS day_delivered,
           count(*) FILTER (WHERE status = 'failed') AS day_failed,
           count(*) FILTER (WHERE status = 'pending') AS day_pending,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS day_p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS day_p99
    FROM recent
    GROUP BY GROUPING SETS ((subscription_id), ())
    """
_DELIVERIES = _timed(_DELIVERIES_SQL.format(only=""), "hour_ago", "day_ago")
# One subscription's rows, found through its (subscription_id, id) index.
_SUBSCRIPTION_DELIVERIES = _timed(
    _DELIVERIES_SQL.format(only=" AND subscription_id = :subscription_id"),
    "hour_ago",
    "day_ago",
)

# Counts without latency for a page of subscriptions: no percentile is sorted.
_DAY_COUNTS = _timed(
    """
    SELECT subscription_id, status, count(*) AS deliveries
    FROM deliveries
    WHERE id >= :lowest_id AND created_at >= :day_ago AND subscription_id = ANY(:ids)
    GROUP BY 1, 2
    """,
    "day_ago",
)

_EVENTS = _timed(
    """
    SELECT count(*) FILTER (WHERE received_at >= :hour_ago) AS hour_received,
           count(*) AS day_received
    FROM events WHERE received_at >= :day_ago
    """,
    "hour_ago",
    "day_ago",
)

# Through the pending partial index: cost follows the backlog, not the history.
_PENDING = text(
    "SELECT subscription_id, count(*) AS pending FROM deliveries "
    "WHERE status = 'pending' GROUP BY subscription_id"
)

_SUBSCRIPTIONS = text(
    f"""
    SELECT s.id, s.url, s.state, s.active, s.deleted_at IS NOT NULL AS deleted,
           {liveness_sql("s")} AS liveness
    FROM subscriptions s
    WHERE s.deleted_at IS NULL OR s.id = ANY(:ids)
    ORDER BY s.id
    """  # noqa: S608 (formatted only with the outbox's own constants)
)

# Deliveries created in each minute of the window by their status now; the id range keeps the
# scan to the window's rows, as above. One row per status, its minutes and counts as arrays: a
# day has up to 1,440 minutes a status, fetched as three rows rather than thousands.
_PER_MINUTE = _timed(
    """
    SELECT status, array_agg(minute ORDER BY minute) AS minutes,
           array_agg(deliveries ORDER BY minute) AS counts
    FROM (
        SELECT date_trunc('minute', created_at) AS minute, status, count(*) AS deliveries
        FROM deliveries
        WHERE id >= :lowest_id AND created_at >= :since
        GROUP BY 1, 2
    ) AS per_minute
    GROUP BY status
    """,
    "since",
)

# Ids are minted a moment after the row's created_at is taken; the slack keeps those in range.
ID_SLACK = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Window:
    received: int
    delivered: int
    failed: int
    pending: int
    p50: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    subscription_id: str | None
    hour: Window
    day: Window


@dataclass(frozen=True, slots=True)
class MinuteCount:
    minute: datetime
    status: str
    deliveries: int


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    id: str
    url: str
    state: str
    active: bool
    deleted: bool
    liveness: Liveness


def lowest_id(prefix: str, moment: datetime) -> str:
    """The smallest id minted at or after `moment`."""
    if moment.timestamp() < 0:
        # ULID time starts at the Unix epoch: every id was minted after an earlier moment.
        return f"{prefix}_{'0' * 26}"
    timestamp_part = str(ULID.from_datetime(moment))[:10]
    return f"{prefix}_{timestamp_part}{'0' * 16}"


def _window(row: Any, prefix: str) -> Window:
    def optional_float(raw: Any) -> float | None:
        return None if raw is None else round(float(raw), 3)

    return Window(
        received=int(getattr(row, f"{prefix}_received")),
        delivered=int(getattr(row, f"{prefix}_delivered")),
        failed=int(getattr(row, f"{prefix}_failed")),
        pending=int(getattr(row, f"{prefix}_pending")),
        p50=optional_float(getattr(row, f"{prefix}_p50")),
        p99=optional_float(getattr(row, f"{prefix}_p99")),
    )


class StatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def deliveries(
        self, *, hour_ago: datetime, day_ago: datetime, subscription_id: str | None = None
    ) -> list[DeliveryCounts]:
        """One row per subscription with deliveries in the day, and one total (id None); or
        only `subscription_id`'s row and its total."""
        params = {
            "hour_ago": hour_ago,
            "day_ago": day_ago,
            "lowest_id": lowest_id("dlv", day_ago - ID_SLACK),
        }
        if subscription_id is None:
            rows = await self.session.execute(_DELIVERIES, params)
        else:
            rows = await self.session.execute(
                _SUBSCRIPTION_DELIVERIES, {**params, "subscription_id": subscription_id}
            )
        return [
            DeliveryCounts(
                subscription_id=None if row.is_total else row.subscription_id,
                hour=_window(row, "hour"),
                day=_window(row, "day"),
            )
            for row in rows
        ]

    async def day_counts(
        self, ids: Sequence[str], *, day_ago: datetime
    ) -> dict[str, dict[str, int]]:
        """Deliveries created since `day_ago`, by subscription and then status."""
        rows = await self.session.execute(
            _DAY_COUNTS,
            {
                "ids": list(ids),
                "day_ago": day_ago,
                "lowest_id": lowest_id("dlv", day_ago - ID_SLACK),
            },
        )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row.subscription_id, {})[row.status] = int(row.deliveries)
        return counts

    async def per_minute(self, *, since: datetime) -> list[MinuteCount]:
        rows = await self.session.execute(
            _PER_MINUTE, {"since": since, "lowest_id": lowest_id("dlv", since - ID_SLACK)}
        )
        return [
            MinuteCount(minute=minute, status=row.status, deliveries=count)
            for row in rows
            for minute, count in zip(row.minutes, row.counts, strict=True)
        ]

    async def events_received(self, *, hour_ago: datetime, day_ago: datetime) -> tuple[int, int]:
        row = (
            await self.session.execute(_EVENTS, {"hour_ago": hour_ago, "day_ago": day_ago})
        ).one()
        return int(row.hour_received), int(row.day_received)

    async def pending_now(self) -> dict[str, int]:
        rows = await self.session.execute(_PENDING)
        return {row.subscription_id: int(row.pending) for row in rows}

    async def subscriptions(self, also: Sequence[str]) -> list[SubscriptionInfo]:
        rows = await self.session.execute(_SUBSCRIPTIONS, {"ids": list(also)})
        return [
            SubscriptionInfo(
                id=row.id,
                url=row.url,
                state=row.state,
                active=row.active,
                deleted=row.deleted,
                liveness=Liveness(row.liveness),
            )
            for row in rows
        ]
