"""A subscription's health: consecutive failures, the circuit breaker, automatic disabling."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.deliveries.repository import DeliveryRepository
from relay.subscriptions.repository import SubscriptionRepository


def _timed(sql: str) -> TextClause:
    # asyncpg needs to know :now is a timestamptz wherever it is compared or added to.
    return text(sql).bindparams(bindparam("now", type_=DateTime(timezone=True)))


_RECORD_FAILURE = _timed(
    """
    UPDATE subscriptions
    SET consecutive_failures = consecutive_failures + 1,
        failing_since = COALESCE(failing_since, :now),
        state = CASE
            WHEN COALESCE(failing_since, :now) <= :now - make_interval(secs => :disable_after)
                THEN 'disabled'
            WHEN consecutive_failures + 1 >= :threshold THEN 'degraded'
            ELSE state END,
        state_reason = CASE
            WHEN COALESCE(failing_since, :now) <= :now - make_interval(secs => :disable_after)
                THEN 'disabled: failing with no success since '
                     || to_char(COALESCE(failing_since, :now) AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            WHEN consecutive_failures + 1 >= :threshold
                THEN 'circuit breaker open after ' || (consecutive_failures + 1)
                     || ' consecutive failures; last: ' || :reason
            ELSE state_reason END,
        breaker_open_until = CASE
            WHEN consecutive_failures + 1 >= :threshold
                 AND (breaker_open_until IS NULL OR breaker_open_until < :now)
                THEN :now + make_interval(secs => :probe_interval)
            ELSE breaker_open_until END,
        updated_at = :now
    WHERE id = :id AND state <> 'disabled'
    RETURNING state
    """
)

_RECORD_SUCCESSES = _timed(
    """
    UPDATE subscriptions
    SET consecutive_failures = 0, failing_since = NULL, state = 'active', state_reason = '',
        breaker_open_until = NULL, updated_at = :now
    WHERE id = ANY(CAST(:ids AS text[])) AND state <> 'disabled'
      AND (consecutive_failures <> 0 OR state <> 'active' OR breaker_open_until IS NOT NULL)
    RETURNING id
    """
)

_DISABLE = _timed(
    """
    UPDATE subscriptions
    SET state = 'disabled', state_reason = :reason, breaker_open_until = NULL, updated_at = :now
    WHERE id = :id AND state <> 'disabled'
    RETURNING id
    """
)

_TAKE_PROBE_SLOT = _timed(
    """
    UPDATE subscriptions
    SET breaker_open_until = :now + make_interval(secs => :probe_interval)
    WHERE id = :id AND state = 'degraded'
      AND (breaker_open_until IS NULL OR breaker_open_until <= :now)
    RETURNING id
    """
)

_PROBES_DUE = _timed(
    """
    SELECT id FROM subscriptions
    WHERE state = 'degraded' AND deleted_at IS NULL AND active
      AND breaker_open_until <= :now
    """
)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int
    probe_interval: timedelta
    disable_after: timedelta


class SubscriptionHealth:
    def __init__(self, session: AsyncSession, policy: BreakerPolicy) -> None:
        self.session = session
        self.policy = policy
        self.deliveries = DeliveryRepository(session)
        self.subscriptions = SubscriptionRepository(session)

    async def record_successes(self, subscription_ids: Collection[str], *, now: datetime) -> None:
        """Closes the breaker of each subscription that just had a success; a no-op (no row
        written) for the usual healthy one."""
        changed = await self.session.execute(
            _RECORD_SUCCESSES, {"ids": sorted(subscription_ids), "now": now}
        )
        for subscription_id in changed.scalars().all():
            await self.deliveries.release_held(subscription_id, now=now)

    async def record_failure(self, subscription_id: str, *, reason: str, now: datetime) -> None:
        result = await self.session.execute(
            _RECORD_FAILURE,
            {
                "id": subscription_id,
                "now": now,
                "reason": reason[:200],
                "threshold": self.policy.failures,
                "probe_interval": self.policy.probe_interval.total_seconds(),
                "disable_after": self.policy.disable_after.total_seconds(),
            },
        )
        state = result.scalar_one_or_none()
        if state == "disabled":
            await self.subscriptions.fail_pending_deliveries(
                subscription_id, reason="subscription disabled: failing too long", now=now
            )

    async def disable(self, subscription_id: str, *, reason: str, now: datetime) -> None:
        result = await self.session.execute(
            _DISABLE, {"id": subscription_id, "reason": reason, "now": now}
        )
        if result.first() is not None:
            await self.subscriptions.fail_pending_deliveries(
                subscription_id, reason=f"subscription disabled: {reason}", now=now
            )

    async def take_probe_slot(self, subscription_id: str, *, now: datetime) -> bool:
        """True when this delivery may go out as the breaker's probe; at most one a period."""
        result = await self.session.execute(
            _TAKE_PROBE_SLOT,
            {
                "id": subscription_id,
                "now": now,
                "probe_interval": self.policy.probe_interval.total_seconds(),
            },
        )
        return result.first() is not None

    async def release_due_probes(self, *, now: datetime) -> int:
        """Makes one held delivery due for each subscription whose probe time has come."""
        due = (await self.session.execute(_PROBES_DUE, {"now": now})).scalars().all()
        released = 0
        for subscription_id in due:
            if await self.deliveries.release_one_probe(subscription_id, now=now):
                released += 1
        return released
