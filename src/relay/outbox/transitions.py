"""Every change of a delivery's state, each a named transition.

    planned --claim--> leased --answered 2xx--> succeeded
       ^                 |  \\--failed, retry left--> pending (due at its retry time)
       |                 |   \\--failed for good, or subscription gone--> failed
       |                 |--shutdown--> pending (given back, due now)
       |--over a limit--> parked --room again--> leased
       |--paused / breaker open--> held --resumed / breaker closed--> parked
    failed --retry / recover--> pending (due now)
    pending --subscription deleted or disabled--> failed (unless in flight: it finishes)

The claim (claim.py) is the leasing, parking and holding step; the breaker's own columns are
written by health.py. Nothing outside this package inserts or updates a delivery, an attempt
or a throttle row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, DateTime, String, TextClause, bindparam, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.errors import Conflict, NotFound
from relay.core.jsonutil import dumps
from relay.db.driver import DriverStatement, fetch
from relay.outbox.claim import CLAIM_LOCK
from relay.outbox.models import Delivery, DeliveryAttempt
from relay.outbox.states import (
    BREAKER_TO_CLOSE_SQL,
    ENDS_PENDING_DELIVERIES,
    DeliveryStatus,
    liveness_in_sql,
)

NOTIFY_CHANNEL = "relay_deliveries"


def _timed(sql: str, *names: str) -> TextClause:
    # asyncpg needs to know these are timestamptz wherever they are compared or added to.
    return text(sql).bindparams(
        *(bindparam(name, type_=DateTime(timezone=True)) for name in ("now", *names))
    )


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """A pending delivery about to be written with its event."""

    id: str
    event_id: str
    subscription_id: str
    subject_key: str | None
    event_timestamp: datetime


# The ingest writes its deliveries inside its own single statement (see ingest/repository.py):
# this is that statement's step, joined to the CTE named `stored` that holds the events it
# inserted (their `id` and `received_at`), so only fresh events get deliveries, due when their
# event was received. A delivery for a subscription whose backlog is parked (over its limits,
# or hanging) is written parked, behind that backlog: it never enters the due index, where the
# claim would only have to park it (a thousand a second for fifty hanging subscribers). Claims
# go on looking behind a flag lowered while this statement ran (claim.LOWERED_WATCH), and the
# upkeep raises a flag again over anything found parked without one (`raise_parked_flags`).
INSERT_PLANNED = """
    INSERT INTO deliveries (id, event_id, subscription_id, status, held, parked, attempts,
                            next_attempt_at, subject_key, event_timestamp, created_at,
                            updated_at)
    SELECT d.id, d.event_id, d.subscription_id, 'pending', false,
           coalesce(t.parked, false), 0, stored.received_at,
           d.subject_key, d.event_timestamp, stored.received_at, stored.received_at
    FROM unnest(
        CAST(:delivery_ids AS text[]), CAST(:delivery_event_ids AS text[]),
        CAST(:delivery_subscription_ids AS text[]), CAST(:delivery_subject_keys AS text[]),
        CAST(:delivery_event_timestamps AS timestamptz[])
    ) AS d(id, event_id, subscription_id, subject_key, event_timestamp)
    JOIN stored ON stored.id = d.event_id
    LEFT JOIN subscription_throttles AS t ON t.subscription_id = d.subscription_id
    RETURNING event_id
"""


def planned_params(planned: Sequence[PlannedDelivery]) -> dict[str, list[Any]]:
    return {
        "delivery_ids": [item.id for item in planned],
        "delivery_event_ids": [item.event_id for item in planned],
        "delivery_subscription_ids": [item.subscription_id for item in planned],
        "delivery_subject_keys": [item.subject_key for item in planned],
        "delivery_event_timestamps": [item.event_timestamp for item in planned],
    }


async def add_planned(
    session: AsyncSession, planned: Sequence[PlannedDelivery], *, now: datetime
) -> list[Delivery]:
    """New pending deliveries, due now (a replay); the dispatchers are woken at commit."""
    rows = [
        {
            "id": item.id,
            "event_id": item.event_id,
            "subscription_id": item.subscription_id,
            "status": DeliveryStatus.PENDING,
            "held": False,
            "attempts": 0,
            "next_attempt_at": now,
            "subject_key": item.subject_key,
            "event_timestamp": item.event_timestamp,
            "created_at": now,
            "updated_at": now,
        }
        for item in planned
    ]
    if rows:
        await session.execute(insert(Delivery), rows)
        await wake_dispatchers(session)
    return [Delivery(**row) for row in rows]


async def wake_dispatchers(session: AsyncSession) -> None:
    """Wakes the dispatchers when the surrounding transaction commits (a hint only)."""
    await session.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


_ENDS_PENDING = liveness_in_sql("s", ENDS_PENDING_DELIVERIES)

# Failed attempts' results, on deliveries this worker still leases. A retry is not scheduled
# for a subscription deleted or disabled while the attempt was in flight: the delivery fails,
# and says why.
_FINISH_FAILED = _timed(
    f"""
    UPDATE deliveries AS d
    SET status = CASE WHEN f.status = 'pending' AND {_ENDS_PENDING} THEN 'failed'
                      ELSE f.status END,
        attempts = f.attempts,
        next_attempt_at = f.next_attempt_at,
        last_status_code = f.status_code,
        last_error = CASE WHEN f.status = 'pending' AND {_ENDS_PENDING}
                          THEN f.error || '; not retried: subscription '
                               || CASE WHEN s.deleted_at IS NOT NULL THEN 'deleted'
                                       ELSE 'disabled' END
                          ELSE f.error END,
        locked_by = NULL, locked_until = NULL, updated_at = :now,
        completed_at = CASE WHEN f.status = 'pending' AND NOT {_ENDS_PENDING} THEN NULL
                            ELSE :now END
    FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[]), CAST(:attempts AS integer[]),
                CAST(:next_attempt_ats AS timestamptz[]), CAST(:status_codes AS integer[]),
                CAST(:errors AS text[]))
             AS f(id, status, attempts, next_attempt_at, status_code, error),
         subscriptions AS s
    WHERE d.id = f.id AND d.locked_by = :worker AND s.id = d.subscription_id
    RETURNING d.id, d.status, d.last_error
    """  # noqa: S608 (formatted only with the module's own constants)
).bindparams(bindparam("next_attempt_ats", type_=ARRAY(DateTime(timezone=True))))

# A succeeded attempt's result, on a delivery this worker still leases (rows f).
_SUCCEEDED = """
    UPDATE deliveries AS d
    SET status = 'succeeded', attempts = f.attempts, next_attempt_at = :now,
        last_status_code = f.status_code, last_error = NULL, locked_by = NULL,
        locked_until = NULL, held = false, updated_at = :now, completed_at = :now
    FROM unnest(CAST(:ids AS text[]), CAST(:attempts AS integer[]),
                CAST(:status_codes AS integer[])) AS f(id, attempts, status_code)
    WHERE d.id = f.id AND d.locked_by = :worker
"""

_FINISH_SUCCEEDED = _timed(_SUCCEEDED)

# The usual batch, all successes on healthy subscriptions, in one statement that commits by
# itself: the deliveries finished and their attempts logged, with no breaker to touch. It
# writes nothing if one of the subscriptions has a breaker to close, which must close in the
# same transaction as its held deliveries are released (finish_attempts and the health's
# record_successes do it all then). A failure counted by another worker after this
# statement's snapshot is left counted, as if it had come after these successes.
_FINISH_SUCCEEDED_ALONE = DriverStatement.of(
    _timed(
        f"""
        WITH breaker_to_close AS (
            SELECT 1 FROM subscriptions AS s
            WHERE s.id = ANY(CAST(:subscription_ids AS text[]))
              AND {BREAKER_TO_CLOSE_SQL.format(s="s")}
            LIMIT 1
        ),
        finished AS (
            {_SUCCEEDED} AND NOT EXISTS (SELECT 1 FROM breaker_to_close)
        ),
        logged AS (
            INSERT INTO delivery_attempts (
                id, delivery_id, subscription_id, attempt_number, started_at, duration_ms,
                request_url, request_headers, response_status, response_headers,
                response_body, error_class, error_message, outcome, decision
            )
            SELECT a.id, a.delivery_id, a.subscription_id, a.attempt_number, a.started_at,
                   a.duration_ms, a.request_url, a.request_headers::jsonb, a.response_status,
                   a.response_headers::jsonb, a.response_body, a.error_class,
                   a.error_message, 'succeeded', a.decision
            FROM unnest(
                CAST(:attempt_ids AS text[]), CAST(:ids AS text[]),
                CAST(:subscription_ids AS text[]), CAST(:attempts AS integer[]),
                CAST(:started_ats AS timestamptz[]), CAST(:durations AS integer[]),
                CAST(:urls AS text[]), CAST(:request_headers AS text[]),
                CAST(:status_codes AS integer[]), CAST(:response_headers AS text[]),
                CAST(:bodies AS text[]), CAST(:error_classes AS text[]),
                CAST(:error_messages AS text[]), CAST(:decisions AS text[])
            ) AS a(id, delivery_id, subscription_id, attempt_number, started_at, duration_ms,
                   request_url, request_headers, response_status, response_headers,
                   response_body, error_class, error_message, decision)
            WHERE NOT EXISTS (SELECT 1 FROM breaker_to_close)
        )
        SELECT NOT EXISTS (SELECT 1 FROM breaker_to_close) AS written
        """  # noqa: S608 (formatted only with the outbox's own constants)
    )
)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """An attempt as the dispatcher reports it: its row of the attempt log, and for a failure
    when the next attempt is due (None: no retry)."""

    attempt: dict[str, Any]
    succeeded: bool
    retry_at: datetime | None = None
    # The subscriber answered 410 Gone: it asks to be removed.
    gone: bool = False

    @property
    def delivery_id(self) -> str:
        delivery_id: str = self.attempt["delivery_id"]
        return delivery_id

    @property
    def subscription_id(self) -> str:
        subscription_id: str = self.attempt["subscription_id"]
        return subscription_id


@dataclass(frozen=True, slots=True)
class Finished:
    status: DeliveryStatus
    reason: str


async def finish_attempts(
    session: AsyncSession, outcomes: Sequence[AttemptOutcome], *, worker: str, now: datetime
) -> dict[str, Finished]:
    """Attempts' results, in a few statements however many there are: each delivery finished
    only if this worker still leases it, each attempt logged with its delivery's resulting
    status, so the two never disagree. Returns what each delivery became."""
    succeeded = [outcome for outcome in outcomes if outcome.succeeded]
    failed = [outcome for outcome in outcomes if not outcome.succeeded]
    finished: dict[str, Finished] = {
        outcome.delivery_id: Finished(DeliveryStatus.SUCCEEDED, outcome.attempt["decision"])
        for outcome in succeeded
    }
    if succeeded:
        await session.execute(
            _FINISH_SUCCEEDED,
            {
                "ids": [outcome.delivery_id for outcome in succeeded],
                "attempts": [outcome.attempt["attempt_number"] for outcome in succeeded],
                "status_codes": [outcome.attempt["response_status"] for outcome in succeeded],
                "worker": worker,
                "now": now,
            },
        )
    if failed:
        for outcome in failed:
            # A lease that ran out leaves the row to another worker: the attempt was still
            # made, and is logged as decided.
            finished[outcome.delivery_id] = Finished(
                DeliveryStatus.PENDING if outcome.retry_at else DeliveryStatus.FAILED,
                outcome.attempt["decision"],
            )
        result = await session.execute(
            _FINISH_FAILED,
            {
                "ids": [outcome.delivery_id for outcome in failed],
                "statuses": [
                    DeliveryStatus.PENDING if outcome.retry_at else DeliveryStatus.FAILED
                    for outcome in failed
                ],
                "attempts": [outcome.attempt["attempt_number"] for outcome in failed],
                "next_attempt_ats": [outcome.retry_at or now for outcome in failed],
                "status_codes": [outcome.attempt["response_status"] for outcome in failed],
                "errors": [outcome.attempt["decision"] for outcome in failed],
                "worker": worker,
                "now": now,
            },
        )
        for row in result:
            finished[row.id] = Finished(DeliveryStatus(row.status), row.last_error)
    await record_attempts(
        session,
        [
            outcome.attempt
            | {
                "outcome": finished[outcome.delivery_id].status.value,
                "decision": finished[outcome.delivery_id].reason,
            }
            for outcome in outcomes
        ],
    )
    return finished


async def finish_successes(
    session: AsyncSession, outcomes: Sequence[AttemptOutcome], *, worker: str, now: datetime
) -> dict[str, Finished] | None:
    """Attempts that all succeeded, as finish_attempts writes them, in one statement that
    commits by itself (`session` must not have begun a transaction). None, with nothing
    written, when one of their subscriptions has a breaker to close: finish_attempts and the
    health's record_successes then write them in one transaction."""
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    attempts = [outcome.attempt for outcome in outcomes]
    rows = await fetch(
        connection,
        _FINISH_SUCCEEDED_ALONE,
        {
            "now": now,
            "worker": worker,
            "ids": [row["delivery_id"] for row in attempts],
            "attempts": [row["attempt_number"] for row in attempts],
            "status_codes": [row["response_status"] for row in attempts],
            "attempt_ids": [row["id"] for row in attempts],
            "subscription_ids": [row["subscription_id"] for row in attempts],
            "started_ats": [row["started_at"] for row in attempts],
            "durations": [row["duration_ms"] for row in attempts],
            "urls": [row["request_url"] for row in attempts],
            "request_headers": [dumps(row["request_headers"]).decode() for row in attempts],
            "response_headers": [
                None if row["response_headers"] is None else dumps(row["response_headers"]).decode()
                for row in attempts
            ],
            "bodies": [row["response_body"] for row in attempts],
            "error_classes": [row["error_class"] for row in attempts],
            "error_messages": [row["error_message"] for row in attempts],
            "decisions": [row["decision"] for row in attempts],
        },
    )
    if not rows[0]["written"]:
        return None
    return {
        outcome.delivery_id: Finished(DeliveryStatus.SUCCEEDED, outcome.attempt["decision"])
        for outcome in outcomes
    }


async def record_attempts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    await session.execute(insert(DeliveryAttempt), list(rows))


async def end_unsent(
    session: AsyncSession, delivery_id: str, *, worker: str, reason: str, now: datetime
) -> None:
    """A leased delivery whose subscription was deleted or disabled: failed, never sent."""
    await session.execute(
        _timed(
            """
            UPDATE deliveries
            SET status = 'failed', last_error = :reason, locked_by = NULL, locked_until = NULL,
                updated_at = :now, completed_at = :now
            WHERE id = :id AND locked_by = :worker
            """
        ),
        {"id": delivery_id, "worker": worker, "reason": reason, "now": now},
    )


async def give_back(
    session: AsyncSession, delivery_ids: Sequence[str], *, worker: str, at: datetime
) -> int:
    """Leased deliveries given back unattempted, due again at `at`."""
    if not delivery_ids:
        return 0
    result = await session.execute(
        text(
            """
            UPDATE deliveries
            SET locked_by = NULL, locked_until = NULL, next_attempt_at = :at, updated_at = :at
            WHERE id = ANY(CAST(:ids AS text[])) AND locked_by = :worker
            """
        ).bindparams(bindparam("at", type_=DateTime(timezone=True))),
        {"ids": list(delivery_ids), "worker": worker, "at": at},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def end_pending(
    session: AsyncSession, subscription_id: str, *, reason: str, now: datetime
) -> int:
    """Fails the pending deliveries of a subscription that was deleted or disabled. One in
    flight is left to its worker, which writes what the subscriber answered (a success stays
    a success) and schedules no retry; one whose lease ran out is failed here."""
    result = await session.execute(
        _timed(
            """
            UPDATE deliveries
            SET status = 'failed', last_error = :reason, completed_at = :now, updated_at = :now,
                locked_by = NULL, locked_until = NULL, held = false, parked = false
            WHERE subscription_id = :subscription_id AND status = 'pending'
              AND (locked_by IS NULL OR locked_until <= :now)
            """
        ),
        {"subscription_id": subscription_id, "reason": reason, "now": now},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# Parked, not due: a released backlog goes straight to the claim's parked set, in one write,
# instead of filling the due index that every subscription's fresh events go through. Taken
# under the claim lock, so no claim running now can clear the subscription's parked flag, nor
# hold a delivery after this release ran.
_RELEASE_HELD = _timed(
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
        ON CONFLICT (subscription_id) DO UPDATE SET parked = true, lowered_at = NULL
    )
    SELECT count(*) FROM released
    """
)


async def release_held(session: AsyncSession, subscription_id: str, *, now: datetime) -> int:
    """Sends the deliveries held while the subscription was paused or failing on their way,
    parked: however many there are, they never stand before another subscription's."""
    await session.execute(CLAIM_LOCK)
    result = await session.execute(_RELEASE_HELD, {"subscription_id": subscription_id, "now": now})
    count = int(result.scalar_one())
    if count:
        await wake_dispatchers(session)
    return count


_RELEASE_PROBE = _timed(
    """
    UPDATE deliveries SET held = false, next_attempt_at = :now, updated_at = :now
    WHERE id = (
        SELECT id FROM deliveries
        WHERE subscription_id = :subscription_id AND status = 'pending' AND held
        ORDER BY next_attempt_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    """
)


# A flag raised again over deliveries parked without one: written by an ingest statement that
# read the flag, and committed after it was lowered and after the claims' watch.
_RAISE_PARKED_FLAGS = text(
    """
    INSERT INTO subscription_throttles AS t (subscription_id, parked)
    SELECT s.id, true FROM subscriptions AS s
    WHERE NOT EXISTS (
            SELECT 1 FROM subscription_throttles AS flagged
            WHERE flagged.subscription_id = s.id AND flagged.parked
        )
      AND EXISTS (
            SELECT 1 FROM deliveries AS d
            WHERE d.subscription_id = s.id AND d.status = 'pending' AND d.parked
            LIMIT 1
        )
    ON CONFLICT (subscription_id) DO UPDATE SET parked = true, lowered_at = NULL
    """
)

# Flags over nothing parked any more, lowered; the claims go on looking behind a lowered flag
# for a while (claim.LOWERED_WATCH), for what an ingest may have been writing behind it.
_LOWER_PARKED_FLAGS = _timed(
    """
    UPDATE subscription_throttles AS t
    SET parked = false, lowered_at = :now
    WHERE t.parked
      AND NOT EXISTS (
            SELECT 1 FROM deliveries AS d
            WHERE d.subscription_id = t.subscription_id AND d.status = 'pending' AND d.parked
            LIMIT 1
        )
    """
)


async def raise_parked_flags(session: AsyncSession) -> None:
    """Raises the parked flag where deliveries wait parked without one (an ingest statement
    that read the flag outlasted the claims' watch after it was lowered). Raising is always
    safe."""
    await session.execute(_RAISE_PARKED_FLAGS)


async def lower_parked_flags(session: AsyncSession, *, now: datetime) -> None:
    """Lowers the parked flags that nothing is parked behind any more. Under the claim lock,
    so that no claim raising a flag is undone by a lowering decided before."""
    await session.execute(CLAIM_LOCK)
    await session.execute(_LOWER_PARKED_FLAGS, {"now": now})


async def release_probe(session: AsyncSession, subscription_id: str, *, now: datetime) -> bool:
    """Makes the oldest held delivery of a failing subscription due: the breaker's probe,
    which the claim lets through once per probe interval."""
    result = await session.execute(_RELEASE_PROBE, {"subscription_id": subscription_id, "now": now})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry(session: AsyncSession, delivery_id: str, *, now: datetime) -> Delivery:
    """Makes a delivery due now: a finished one goes back in the queue, a pending one waiting
    for its next attempt skips the wait. Its attempt count is kept, so a failure after the
    retry continues the subscription's schedule where it stopped."""
    delivery = await session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise NotFound(f"no delivery with id '{delivery_id}'")
    if delivery.status == DeliveryStatus.PENDING:
        if delivery.locked_until is not None and delivery.locked_until > now:
            raise Conflict(
                f"delivery '{delivery_id}' is being attempted right now; "
                "its result will be in its attempts"
            )
        if delivery.held:
            raise Conflict(
                f"delivery '{delivery_id}' is held while its subscription is paused or its "
                "circuit breaker is open: resume the subscription, or recover it to probe now"
            )
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = now
    delivery.parked = False
    delivery.locked_by = None
    delivery.locked_until = None
    delivery.completed_at = None
    delivery.updated_at = now
    await session.flush()
    await wake_dispatchers(session)
    return delivery


_REQUEUE = _timed(
    """
    WITH picked AS (
        SELECT d.id
        FROM deliveries AS d
        JOIN events AS e ON e.id = d.event_id
        WHERE d.subscription_id = :subscription_id
          AND d.status = :status
          AND d.created_at >= :since
          AND (CAST(:until AS timestamptz) IS NULL OR d.created_at < :until)
          AND (CAST(:after_id AS text) IS NULL OR (d.created_at, d.id) > (:after_at, :after_id))
          AND d.updated_at <= :changed_before
          AND (d.status = 'failed'
               OR (NOT d.held AND d.locked_by IS NULL AND d.next_attempt_at > :now))
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
    """,
    "since",
    "until",
    "after_at",
    "changed_before",
).bindparams(bindparam("after_id", type_=String()))


async def requeue(
    session: AsyncSession,
    subscription_id: str,
    *,
    status: DeliveryStatus,
    since: datetime,
    until: datetime | None,
    after: tuple[datetime, str] | None,
    changed_before: datetime,
    limit: int,
    now: datetime,
) -> Sequence[tuple[datetime, str]]:
    """Makes the next `limit` deliveries of the window in `status` due now: failed ones go
    back in the queue, pending ones waiting for a retry skip the wait. Returns their
    (created_at, id) in order, the keyset position for the next batch.

    Only deliveries last changed by `changed_before` (the job's start) qualify, so one that
    this job requeued and that failed again is not requeued twice. Rows another transaction
    holds (a hand retry, another recovery, the retention purge deleting their event) are
    skipped rather than waited for; the job sweeps again for them at the end.
    """
    result = await session.execute(
        _REQUEUE,
        {
            "subscription_id": subscription_id,
            "status": status.value,
            "since": since,
            "until": until,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "changed_before": changed_before,
            "limit": limit,
            "now": now,
        },
    )
    requeued = sorted((row.created_at, row.id) for row in result)
    if requeued:
        await wake_dispatchers(session)
    return requeued


async def apply_ordering(session: AsyncSession, subscription_id: str, *, ordered: bool) -> int:
    """Brings a subscription's pending backlog under its new `ordered` setting: switched on,
    each pending delivery gets its subject key (it waits behind an earlier one of the same
    subject); switched off, none waits behind another any longer."""
    subject_key = (
        "(SELECT e.subject_kind || ':' || e.subject_id FROM events AS e "
        "WHERE e.id = deliveries.event_id)"
        if ordered
        else "NULL"
    )
    result = await session.execute(
        text(
            f"""
            UPDATE deliveries SET subject_key = {subject_key}
            WHERE subscription_id = :subscription_id AND status = 'pending'
            """  # noqa: S608 (one of two constant expressions)
        ),
        {"subscription_id": subscription_id},
    )
    await wake_dispatchers(session)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def clear_attempt_bodies(session: AsyncSession, *, before: datetime, limit: int) -> int:
    """Drops the response bodies of attempts started before `before` (retention)."""
    result = await session.execute(
        text(
            """
            UPDATE delivery_attempts SET response_body = NULL WHERE id IN (
                SELECT id FROM delivery_attempts
                WHERE response_body IS NOT NULL AND started_at < :cutoff
                ORDER BY started_at
                LIMIT :limit
                FOR UPDATE SKIP LOCKED
            )
            """
        ).bindparams(bindparam("cutoff", type_=DateTime(timezone=True))),
        {"cutoff": before, "limit": limit},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
