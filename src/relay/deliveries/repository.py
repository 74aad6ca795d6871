"""All SQL about deliveries and attempts, including the dispatcher's claim query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.crypto import EncryptedText
from relay.deliveries.models import Delivery, DeliveryAttempt, DeliveryStatus

NOTIFY_CHANNEL = "relay_deliveries"

# One statement: pick due rows nobody holds, skip rows another worker is claiming right now,
# and lease them by moving next_attempt_at to the lease's end. A leased row is therefore not
# due until its lease runs out, when any worker may take it again (its worker died).
# An ordered subscription's delivery waits while an earlier one for the same subject is
# pending. The event and subscription come back in the same round trip.
_CLAIM = text(
    """
    UPDATE deliveries AS d
    SET locked_by = :worker,
        locked_until = now() + make_interval(secs => :lease_seconds),
        next_attempt_at = now() + make_interval(secs => :lease_seconds),
        updated_at = now()
    FROM (
        SELECT candidate.id
        FROM deliveries AS candidate
        WHERE candidate.status = 'pending'
          AND NOT candidate.held
          AND candidate.next_attempt_at <= now()
          AND (
            candidate.subject_key IS NULL
            OR NOT EXISTS (
                SELECT 1 FROM deliveries AS earlier
                WHERE earlier.subscription_id = candidate.subscription_id
                  AND earlier.subject_key = candidate.subject_key
                  AND earlier.status = 'pending'
                  AND (earlier.event_timestamp, earlier.id)
                      < (candidate.event_timestamp, candidate.id)
            )
          )
        ORDER BY candidate.next_attempt_at
        LIMIT :limit
        FOR UPDATE OF candidate SKIP LOCKED
    ) AS picked,
    events AS e,
    sources AS src,
    subscriptions AS s
    WHERE d.id = picked.id AND e.id = d.event_id AND src.id = e.source_id
      AND s.id = d.subscription_id
    RETURNING d.id, d.event_id, d.subscription_id, d.attempts, d.created_at,
              e.type AS event_type, e.envelope, e.received_at AS event_received_at,
              src.slug AS source,
              s.url, s.headers, s.secret, s.previous_secret, s.previous_secret_expires_at,
              s.retry_schedule, s.max_concurrency, s.rate_limit_per_second,
              s.active, s.state, s.deleted_at, s.breaker_open_until
    """
).columns(secret=EncryptedText(), previous_secret=EncryptedText())


@dataclass(frozen=True, slots=True)
class SucceededDelivery:
    id: str
    attempts: int
    status_code: int


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A pending delivery about to be written with its event (the outbox)."""

    id: str
    event_id: str
    subscription_id: str
    subject_key: str | None
    event_timestamp: datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: str
    event_id: str
    subscription_id: str
    attempts: int
    created_at: datetime
    event_type: str
    envelope: str
    event_received_at: datetime
    # The slug of the event's source, for the logs.
    source: str
    url: str
    headers: dict[str, str]
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    retry_schedule: list[float] | None
    max_concurrency: int
    rate_limit_per_second: float | None
    active: bool
    state: str
    deleted_at: datetime | None
    breaker_open_until: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    subscription_id: str | None = None
    event_id: str | None = None
    status: str | None = None
    since: datetime | None = None


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(Delivery), list(rows))

    async def notify(self) -> None:
        """Wakes the dispatchers when the surrounding transaction commits (a hint only)."""
        await self.session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))

    async def claim(self, *, worker: str, limit: int, lease: timedelta) -> list[ClaimedDelivery]:
        result = await self.session.execute(
            _CLAIM,
            {"worker": worker, "limit": limit, "lease_seconds": lease.total_seconds()},
        )
        return [ClaimedDelivery(**row._mapping) for row in result]

    async def finish(
        self,
        delivery_id: str,
        *,
        worker: str,
        status: str,
        attempts: int,
        next_attempt_at: datetime,
        last_status_code: int | None,
        last_error: str | None,
        now: datetime,
        held: bool = False,
    ) -> bool:
        """Records an attempt's result on the delivery, only if this worker still holds it."""
        result = await self.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.locked_by == worker)
            .values(
                status=status,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                last_status_code=last_status_code,
                last_error=last_error,
                locked_by=None,
                locked_until=None,
                held=held,
                updated_at=now,
                completed_at=now if status != DeliveryStatus.PENDING else None,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release(self, delivery_ids: Sequence[str], *, worker: str, at: datetime) -> int:
        """Gives leased deliveries back unattempted, due again at `at`."""
        if not delivery_ids:
            return 0
        result = await self.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.locked_by == worker)
            .values(locked_by=None, locked_until=None, next_attempt_at=at, updated_at=at)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def hold(self, delivery_ids: Sequence[str], *, worker: str, now: datetime) -> None:
        """Parks leased deliveries behind an open circuit breaker."""
        if delivery_ids:
            await self.session.execute(
                update(Delivery)
                .where(Delivery.id.in_(delivery_ids), Delivery.locked_by == worker)
                .values(locked_by=None, locked_until=None, held=True, updated_at=now)
            )

    async def release_one_probe(self, subscription_id: str, *, now: datetime) -> bool:
        """Makes the oldest held delivery of a subscription due: the breaker's probe."""
        oldest = (
            select(Delivery.id)
            .where(
                Delivery.subscription_id == subscription_id,
                Delivery.status == DeliveryStatus.PENDING,
                Delivery.held,
            )
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        result = await self.session.execute(
            update(Delivery)
            .where(Delivery.id == oldest)
            .values(held=False, next_attempt_at=now, updated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def add_attempts(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.session.execute(insert(DeliveryAttempt), list(rows))

    async def finish_succeeded(
        self, finished: Sequence[SucceededDelivery], *, worker: str, now: datetime
    ) -> None:
        """Marks deliveries succeeded in one statement, each only if this worker holds it."""
        await self.session.execute(
            _FINISH_SUCCEEDED,
            {
                "ids": [item.id for item in finished],
                "attempts": [item.attempts for item in finished],
                "status_codes": [item.status_code for item in finished],
                "worker": worker,
                "now": now,
            },
        )

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

    async def requeue(self, delivery: Delivery, *, now: datetime) -> None:
        delivery.status = DeliveryStatus.PENDING
        delivery.next_attempt_at = now
        delivery.held = False
        delivery.locked_by = None
        delivery.locked_until = None
        delivery.completed_at = None
        delivery.updated_at = now
        await self.session.flush()

    async def count_failed(
        self,
        subscription_id: str,
        *,
        since: datetime,
        until: datetime | None,
        failed_before: datetime | None = None,
    ) -> int:
        query = (
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.subscription_id == subscription_id,
                Delivery.status == DeliveryStatus.FAILED,
                Delivery.created_at >= since,
            )
        )
        if until is not None:
            query = query.where(Delivery.created_at < until)
        if failed_before is not None:
            query = query.where(Delivery.updated_at <= failed_before)
        return int((await self.session.execute(query)).scalar_one())

    async def requeue_failed(
        self,
        subscription_id: str,
        *,
        since: datetime,
        until: datetime | None,
        after: tuple[datetime, str] | None,
        failed_before: datetime,
        limit: int,
        now: datetime,
    ) -> Sequence[tuple[datetime, str]]:
        """Puts the next `limit` failed deliveries of the window back in the queue, due now;
        returns their (created_at, id) in order, the keyset position for the next batch.

        Only deliveries that were failed by `failed_before` (the job's start) qualify, so one
        that this job requeued and that failed again is not requeued twice. Rows another
        transaction holds (a hand retry, another recovery, the retention purge deleting their
        event) are skipped rather than waited for; the job sweeps again for them at the end.
        """
        result = await self.session.execute(
            _REQUEUE_FAILED,
            {
                "subscription_id": subscription_id,
                "since": since,
                "until": until,
                "after_at": after[0] if after else None,
                "after_id": after[1] if after else None,
                "failed_before": failed_before,
                "limit": limit,
                "now": now,
            },
        )
        return sorted((row.created_at, row.id) for row in result)

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


_REQUEUE_FAILED = text(
    """
    WITH picked AS (
        SELECT d.id
        FROM deliveries AS d
        JOIN events AS e ON e.id = d.event_id
        WHERE d.subscription_id = :subscription_id
          AND d.status = 'failed'
          AND d.created_at >= :since
          AND (CAST(:until AS timestamptz) IS NULL OR d.created_at < :until)
          AND (CAST(:after_id AS text) IS NULL OR (d.created_at, d.id) > (:after_at, :after_id))
          AND d.updated_at <= :failed_before
        ORDER BY d.created_at, d.id
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
        FOR KEY SHARE OF e SKIP LOCKED
    )
    UPDATE deliveries AS d
    SET status = 'pending', held = false, next_attempt_at = :now, locked_by = NULL,
        locked_until = NULL, completed_at = NULL, updated_at = :now
    FROM picked
    WHERE d.id = picked.id
    RETURNING d.id, d.created_at
    """
).bindparams(
    bindparam("since", type_=DateTime(timezone=True)),
    bindparam("until", type_=DateTime(timezone=True)),
    bindparam("after_at", type_=DateTime(timezone=True)),
    bindparam("after_id", type_=String()),
    bindparam("failed_before", type_=DateTime(timezone=True)),
    bindparam("now", type_=DateTime(timezone=True)),
)

# Rows a worker claimed are not counted (the claim moves next_attempt_at to the lease's end);
# rows given back by a saturated subscription are (they come back due a second later).
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

_BACKLOG = text(
    """
    SELECT count(*) FROM (
        SELECT 1 FROM deliveries
        WHERE status = 'pending' AND NOT held AND next_attempt_at <= now() + interval '5 seconds'
        LIMIT :cap
    ) AS due
    """
)

_FINISH_SUCCEEDED = text(
    """
    UPDATE deliveries AS d
    SET status = 'succeeded', attempts = f.attempts, next_attempt_at = :now,
        last_status_code = f.status_code, last_error = NULL, locked_by = NULL,
        locked_until = NULL, held = false, updated_at = :now, completed_at = :now
    FROM unnest(CAST(:ids AS text[]), CAST(:attempts AS integer[]),
                CAST(:status_codes AS integer[])) AS f(id, attempts, status_code)
    WHERE d.id = f.id AND d.locked_by = :worker
    """
).bindparams(bindparam("now", type_=DateTime(timezone=True)))
