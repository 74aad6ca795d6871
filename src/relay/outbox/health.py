"""A subscription's health: consecutive failures, the circuit breaker, automatic disabling.

The only writer of a subscription's health columns (`state`, `state_reason`,
`consecutive_failures`, `failing_since`, `breaker_open_until`). Its verdicts reach the
deliveries through transitions.py: a breaker that closes releases what it held, a subscription
disabled ends its pending deliveries.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.outbox import transitions
from relay.outbox.states import BREAKER_TO_CLOSE_SQL, SubscriptionState


def _timed(sql: str) -> TextClause:
    # asyncpg needs to know :now is a timestamptz wherever it is compared or added to.
    return text(sql).bindparams(bindparam("now", type_=DateTime(timezone=True)))


# Each subscription's failures of one batch at once (`f.failures` of them, the last one's
# reason); rows locked in id order, so two workers' batches never wait on each other in a
# circle, and with the lock an UPDATE takes (no key update), so the ingest's inserts of
# deliveries, which lock the subscription's key, never wait for it.
_RECORD_FAILURES = _timed(
    """
    WITH f AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:failures AS integer[]),
                             CAST(:reasons AS text[])) AS f(id, failures, reason)
    ),
    locked AS (
        SELECT s.id FROM subscriptions AS s JOIN f ON f.id = s.id
        WHERE s.state <> 'disabled'
        ORDER BY s.id
        FOR NO KEY UPDATE OF s
    )
    UPDATE subscriptions AS s
    SET consecutive_failures = s.consecutive_failures + f.failures,
        failing_since = COALESCE(s.failing_since, :now),
        state = CASE
            WHEN COALESCE(s.failing_since, :now) <= :now - make_interval(secs => :disable_after)
                THEN 'disabled'
            WHEN s.consecutive_failures + f.failures >= :threshold THEN 'degraded'
            ELSE s.state END,
        state_reason = CASE
            WHEN COALESCE(s.failing_since, :now) <= :now - make_interval(secs => :disable_after)
                THEN 'disabled: failing with no success since '
                     || to_char(COALESCE(s.failing_since, :now) AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            WHEN s.consecutive_failures + f.failures >= :threshold
                THEN 'circuit breaker open after ' || (s.consecutive_failures + f.failures)
                     || ' consecutive failures; last: ' || f.reason
            ELSE s.state_reason END,
        breaker_open_until = CASE
            WHEN s.consecutive_failures + f.failures >= :threshold
                 AND (s.breaker_open_until IS NULL OR s.breaker_open_until < :now)
                THEN :now + make_interval(secs => :probe_interval)
            ELSE s.breaker_open_until END,
        updated_at = :now
    FROM f JOIN locked ON locked.id = f.id
    WHERE s.id = f.id
    RETURNING s.id, s.state
    """
)

_RECORD_SUCCESSES = _timed(
    f"""
    UPDATE subscriptions AS s
    SET consecutive_failures = 0, failing_since = NULL, state = 'active', state_reason = '',
        breaker_open_until = NULL, updated_at = :now
    WHERE s.id = ANY(CAST(:ids AS text[])) AND {BREAKER_TO_CLOSE_SQL.format(s="s")}
    RETURNING s.id
    """  # noqa: S608 (formatted only with the outbox's own constants)
)

_DISABLE = _timed(
    """
    UPDATE subscriptions
    SET state = 'disabled', state_reason = :reason, breaker_open_until = NULL, updated_at = :now
    WHERE id = :id AND state <> 'disabled'
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

_NEXT_PROBE = _timed(
    """
    SELECT min(breaker_open_until) FROM subscriptions
    WHERE state = 'degraded' AND deleted_at IS NULL AND active AND breaker_open_until > :now
    """
)

# The admin's word that the endpoint is fixed (resumed, or its URL or headers changed): the
# breaker closes and the failure count starts over.
_RESET = _timed(
    """
    UPDATE subscriptions
    SET state = 'active', state_reason = '', consecutive_failures = 0, failing_since = NULL,
        breaker_open_until = NULL, updated_at = :now
    WHERE id = :id AND (state <> 'active' OR consecutive_failures <> 0
                        OR breaker_open_until IS NOT NULL)
    RETURNING id
    """
)

_PROBE_NOW = _timed(
    """
    UPDATE subscriptions SET breaker_open_until = :now
    WHERE id = :id AND state = 'degraded'
    RETURNING id
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

    async def record_successes(self, subscription_ids: Collection[str], *, now: datetime) -> None:
        """Closes the breaker of each subscription that just had a success; a no-op (no row
        written) for the usual healthy one."""
        changed = await self.session.execute(
            _RECORD_SUCCESSES, {"ids": sorted(subscription_ids), "now": now}
        )
        for subscription_id in changed.scalars().all():
            await transitions.release_held(self.session, subscription_id, now=now)

    async def record_failures(
        self, failures: Mapping[str, tuple[int, str]], *, now: datetime
    ) -> list[str]:
        """Counts each subscription's failed attempts (how many, and the last one's reason):
        the breaker opens at RELAY_BREAKER_FAILURES in a row, and a subscription failing for
        longer than RELAY_DISABLE_AFTER is disabled, its pending deliveries failed. Returns
        the subscriptions whose breaker is open now."""
        if not failures:
            return []
        ordered = sorted(failures.items())
        result = await self.session.execute(
            _RECORD_FAILURES,
            {
                "ids": [subscription_id for subscription_id, _ in ordered],
                "failures": [count for _, (count, _reason) in ordered],
                "reasons": [reason[:200] for _, (_count, reason) in ordered],
                "now": now,
                "threshold": self.policy.failures,
                "probe_interval": self.policy.probe_interval.total_seconds(),
                "disable_after": self.policy.disable_after.total_seconds(),
            },
        )
        degraded = []
        for subscription_id, state in result.all():
            if state == SubscriptionState.DISABLED:
                await transitions.end_pending(
                    self.session,
                    subscription_id,
                    reason="subscription disabled: failing too long",
                    now=now,
                )
            elif state == SubscriptionState.DEGRADED:
                degraded.append(subscription_id)
        return degraded

    async def disable(self, subscription_id: str, *, reason: str, now: datetime) -> None:
        result = await self.session.execute(
            _DISABLE, {"id": subscription_id, "reason": reason, "now": now}
        )
        if result.first() is not None:
            await transitions.end_pending(
                self.session, subscription_id, reason=f"subscription disabled: {reason}", now=now
            )

    async def release_due_probes(self, *, now: datetime) -> int:
        """Makes one held delivery due for each subscription whose probe time has come."""
        due = (await self.session.execute(_PROBES_DUE, {"now": now})).scalars().all()
        released = 0
        for subscription_id in due:
            if await transitions.release_probe(self.session, subscription_id, now=now):
                released += 1
        return released

    async def next_probe_at(self, *, now: datetime) -> datetime | None:
        """When the next probe of any failing subscription is due, after `now`."""
        result = await self.session.execute(_NEXT_PROBE, {"now": now})
        moment: datetime | None = result.scalar_one()
        return moment


async def reset(session: AsyncSession, subscription_id: str, *, now: datetime) -> None:
    """Closes the breaker at the admin's word and sends what it held on its way."""
    await session.execute(_RESET, {"id": subscription_id, "now": now})
    await transitions.release_held(session, subscription_id, now=now)


async def probe_now(session: AsyncSession, subscription_id: str, *, now: datetime) -> bool:
    """A failing subscription is probed at once instead of at its next probe time."""
    result = await session.execute(_PROBE_NOW, {"id": subscription_id, "now": now})
    if result.first() is None:
        return False
    await transitions.release_probe(session, subscription_id, now=now)
    await transitions.wake_dispatchers(session)
    return True
