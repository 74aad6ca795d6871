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

# Claims queue behind one transaction-level advisory lock, taken in its own statement so that
# the claim's snapshot, taken after it, sees every lease the previous claim committed: two
# workers never count the same free slot or spend the same token.
_CLAIM_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('relay.claim'))")

# An ordered subscription's delivery waits while an earlier one for the same subject is pending.
_IN_SUBJECT_ORDER = """
    ({row}.subject_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries AS earlier
        WHERE earlier.subscription_id = {row}.subscription_id
          AND earlier.subject_key = {row}.subject_key
          AND earlier.status = 'pending'
          AND (earlier.event_timestamp, earlier.id) < ({row}.event_timestamp, {row}.id)
    ))
"""

# One statement, timed by statement_timestamp(): the claim's own start, after the lock wait
# (now() is the transaction's start, before it). The candidates are the oldest due rows nobody
# holds (rows another worker is claiming right now are skipped) and the parked rows of
# subscriptions that have room again. A subscription's room is its max_concurrency less what
# any worker holds for it, and no more than its rate bucket's whole tokens. Candidates within
# room are leased by moving next_attempt_at to the lease's end, so a leased row is not due
# until its lease runs out, when any worker may take it again (its worker died). Candidates
# beyond room are parked: out of the due index until their subscription has room, and no
# longer anyone's lease. The throttle rows keep the parked flag and the spent tokens. The
# event and subscription come back in the same round trip.
_CLAIM = text(
    f"""
    WITH due AS (
        SELECT candidate.id, candidate.subscription_id, candidate.next_attempt_at
        FROM deliveries AS candidate
        WHERE candidate.status = 'pending'
          AND NOT candidate.held
          AND NOT candidate.parked
          AND candidate.next_attempt_at <= statement_timestamp()
          AND {_IN_SUBJECT_ORDER.format(row="candidate")}
        ORDER BY candidate.next_attempt_at
        LIMIT :limit
        FOR UPDATE OF candidate SKIP LOCKED
    ),
    throttled AS (
        SELECT subscription_id FROM subscription_throttles WHERE parked
    ),
    room AS (
        SELECT s.id AS subscription_id,
               s.rate_limit_per_second AS rate,
               coalesce(t.parked, false) AS was_parked,
               bucket.tokens,
               CASE WHEN bucket.tokens IS NULL
                    THEN greatest(s.max_concurrency - in_flight.leased, 0)
                    ELSE least(greatest(s.max_concurrency - in_flight.leased, 0),
                               floor(bucket.tokens)::integer)
               END AS slots
        FROM subscriptions AS s
        LEFT JOIN subscription_throttles AS t ON t.subscription_id = s.id
        CROSS JOIN LATERAL (
            SELECT count(*)::integer AS leased
            FROM deliveries AS held_now
            WHERE held_now.subscription_id = s.id
              AND held_now.locked_by IS NOT NULL
              AND held_now.status = 'pending'
              AND held_now.locked_until > statement_timestamp()
        ) AS in_flight
        CROSS JOIN LATERAL (
            SELECT CASE WHEN s.rate_limit_per_second IS NULL THEN NULL
                        WHEN t.tokens IS NULL OR t.refilled_at IS NULL
                        THEN greatest(1.0, s.rate_limit_per_second)
                        ELSE least(greatest(1.0, s.rate_limit_per_second),
                                   t.tokens + s.rate_limit_per_second * extract(
                                       epoch FROM statement_timestamp() - t.refilled_at
                                   )::float8)
                   END AS tokens
        ) AS bucket
        WHERE s.id IN (SELECT subscription_id FROM due UNION SELECT subscription_id FROM throttled)
    ),
    unparked AS (
        SELECT waiting.id, waiting.subscription_id, waiting.next_attempt_at
        FROM room
        CROSS JOIN LATERAL (
            SELECT p.id, p.subscription_id, p.next_attempt_at
            FROM deliveries AS p
            WHERE p.subscription_id = room.subscription_id
              AND p.status = 'pending'
              AND p.parked
              AND NOT p.held
              AND {_IN_SUBJECT_ORDER.format(row="p")}
            ORDER BY p.next_attempt_at, p.id
            LIMIT room.slots
            FOR UPDATE OF p SKIP LOCKED
        ) AS waiting
        WHERE room.was_parked AND room.slots > 0
    ),
    ranked AS (
        SELECT c.id, c.subscription_id, c.next_attempt_at, c.was_parked,
               row_number() OVER (
                   PARTITION BY c.subscription_id ORDER BY c.next_attempt_at, c.id
               ) AS place
        FROM (
            SELECT id, subscription_id, next_attempt_at, true AS was_parked FROM unparked
            UNION ALL
            SELECT id, subscription_id, next_attempt_at, false AS was_parked FROM due
        ) AS c
    ),
    picked AS (
        SELECT ranked.id
        FROM ranked JOIN room USING (subscription_id)
        WHERE ranked.place <= room.slots
        ORDER BY ranked.next_attempt_at
        LIMIT :limit
    ),
    leased AS (
        UPDATE deliveries AS d
        SET locked_by = :worker,
            locked_until = statement_timestamp() + make_interval(secs => :lease_seconds),
            next_attempt_at = statement_timestamp() + make_interval(secs => :lease_seconds),
            parked = false,
            updated_at = statement_timestamp()
        FROM picked
        WHERE d.id = picked.id
        RETURNING d.id, d.event_id, d.subscription_id, d.attempts, d.created_at
    ),
    parking AS (
        UPDATE deliveries AS d
        SET parked = true, locked_by = NULL, locked_until = NULL,
            updated_at = statement_timestamp()
        FROM ranked JOIN room USING (subscription_id)
        WHERE d.id = ranked.id AND NOT ranked.was_parked AND ranked.place > room.slots
        RETURNING d.subscription_id
    ),
    outcome AS (
        SELECT room.subscription_id, room.rate, room.was_parked, spent.count AS spent,
               room.tokens - spent.count AS tokens_left,
               -- The table is read only when the parked rows may have run out: fewer came
               -- than there was room for. A full share says more may wait, and the next
               -- claim looks again.
               CASE WHEN EXISTS (
                        SELECT 1 FROM parking WHERE parking.subscription_id = room.subscription_id
                    ) THEN true
                    WHEN NOT room.was_parked THEN false
                    WHEN room.slots = 0 OR offered.count >= room.slots THEN true
                    ELSE EXISTS (
                        SELECT 1 FROM deliveries AS p
                        WHERE p.subscription_id = room.subscription_id
                          AND p.status = 'pending' AND p.parked
                          AND p.id NOT IN (SELECT id FROM leased)
                    )
               END AS still_parked
        FROM room
        CROSS JOIN LATERAL (
            SELECT count(*)::integer AS count
            FROM leased WHERE leased.subscription_id = room.subscription_id
        ) AS spent
        CROSS JOIN LATERAL (
            SELECT count(*)::integer AS count
            FROM unparked WHERE unparked.subscription_id = room.subscription_id
        ) AS offered
    ),
    remembered AS (
        INSERT INTO subscription_throttles AS t (subscription_id, parked, tokens, refilled_at)
        SELECT subscription_id, still_parked, tokens_left, statement_timestamp()
        FROM outcome
        WHERE still_parked <> was_parked OR (tokens_left IS NOT NULL AND spent > 0)
        ON CONFLICT (subscription_id) DO UPDATE
        SET parked = excluded.parked, tokens = excluded.tokens, refilled_at = excluded.refilled_at
    )
    -- One row at least, so that a claim that only parked, or left a rate-limited subscription
    -- waiting for its next token, says so.
    SELECT claimed.*, summary.parked_now, summary.next_token_in
    FROM (
        SELECT (SELECT count(*)::integer FROM parking) AS parked_now,
               (SELECT min((1.0 - tokens_left) / rate)
                FROM outcome WHERE still_parked AND tokens_left < 1) AS next_token_in
    ) AS summary
    LEFT JOIN (
        SELECT leased.id, leased.event_id, leased.subscription_id, leased.attempts,
               leased.created_at,
               e.type AS event_type, e.envelope, e.received_at AS event_received_at,
               src.slug AS source,
               s.url, s.headers, s.secret, s.previous_secret, s.previous_secret_expires_at,
               s.retry_schedule, s.active, s.state, s.deleted_at, s.breaker_open_until
        FROM leased
        JOIN events AS e ON e.id = leased.event_id
        JOIN sources AS src ON src.id = e.source_id
        JOIN subscriptions AS s ON s.id = leased.subscription_id
    ) AS claimed ON true
    """,  # noqa: S608 (formatted only with the module's own constant)
).columns(secret=EncryptedText(), previous_secret=EncryptedText())

_HOLD = text(
    """
    UPDATE deliveries AS d
    SET held = NOT s.active OR s.state = 'degraded',
        next_attempt_at = CASE WHEN NOT s.active OR s.state = 'degraded'
                               THEN d.next_attempt_at ELSE :now END,
        locked_by = NULL, locked_until = NULL, updated_at = :now
    FROM subscriptions AS s
    WHERE d.id = :id AND d.locked_by = :worker AND s.id = d.subscription_id
    """
).bindparams(bindparam("now", type_=DateTime(timezone=True)))

# Parked, not due: a released backlog goes straight to the claim's parked set, in one write,
# instead of filling the due index that every subscription's fresh events go through. Taken
# under the claim lock, so no claim running now can clear the subscription's parked flag.
_RELEASE_HELD = text(
    """
    WITH released AS (
        UPDATE deliveries
        SET held = false, parked = true, next_attempt_at = least(next_attempt_at, :now),
            updated_at = :now
        WHERE subscription_id = :subscription_id AND status = 'pending' AND held
        RETURNING id
    ),
    flagged AS (
        INSERT INTO subscription_throttles (subscription_id, parked)
        SELECT :subscription_id, true WHERE EXISTS (SELECT 1 FROM released)
        ON CONFLICT (subscription_id) DO UPDATE SET parked = true
    )
    SELECT count(*) FROM released
    """
).bindparams(bindparam("now", type_=DateTime(timezone=True)))

_CLAIM_SUMMARY = frozenset({"parked_now", "next_token_in"})


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
    active: bool
    state: str
    deleted_at: datetime | None
    breaker_open_until: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    deliveries: list[ClaimedDelivery]
    # Deliveries this claim found over their subscription's limits and set aside.
    parked: int
    # Seconds until a rate-limited subscription left with parked deliveries has a token.
    next_token_in: float | None = None


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

    async def claim(self, *, worker: str, limit: int, lease: timedelta) -> ClaimBatch:
        """Leases up to `limit` due deliveries, within their subscriptions' limits across all
        workers, and parks those of the `limit` oldest due rows that are over their limits.
        The caller commits at once: that ends the claim lock."""
        await self.session.execute(_CLAIM_LOCK)
        result = await self.session.execute(
            _CLAIM,
            {"worker": worker, "limit": limit, "lease_seconds": lease.total_seconds()},
        )
        rows = [dict(row._mapping) for row in result]
        parked, next_token_in = rows[0]["parked_now"], rows[0]["next_token_in"]
        claimed = [
            ClaimedDelivery(
                **{key: value for key, value in row.items() if key not in _CLAIM_SUMMARY}
            )
            for row in rows
            if row["id"] is not None
        ]
        return ClaimBatch(
            deliveries=claimed,
            parked=parked,
            next_token_in=None if next_token_in is None else float(next_token_in),
        )

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
                held=False,
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

    async def hold(self, delivery_id: str, *, worker: str, now: datetime) -> None:
        """Holds a leased delivery back while its subscription is paused or its breaker open.

        Under the claim lock, like the release of held deliveries: a subscription resumed
        after the worker saw it paused gets its delivery back due now instead of held, where
        no release would ever come for it."""
        await self.session.execute(_CLAIM_LOCK)
        await self.session.execute(_HOLD, {"id": delivery_id, "worker": worker, "now": now})

    async def release_held(self, subscription_id: str, *, now: datetime) -> int:
        """Sends the deliveries held while the subscription was paused or failing on their way,
        parked: however many there are, they never stand before another subscription's."""
        await self.session.execute(_CLAIM_LOCK)
        result = await self.session.execute(
            _RELEASE_HELD, {"subscription_id": subscription_id, "now": now}
        )
        return int(result.scalar_one())

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
        delivery.parked = False
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
        failed_before: datetime,
    ) -> int:
        query = (
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.subscription_id == subscription_id,
                Delivery.status == DeliveryStatus.FAILED,
                Delivery.created_at >= since,
                Delivery.updated_at <= failed_before,
            )
        )
        if until is not None:
            query = query.where(Delivery.created_at < until)
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
    SET status = 'pending', held = false, parked = false, next_attempt_at = :now,
        locked_by = NULL, locked_until = NULL, completed_at = NULL, updated_at = :now
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
