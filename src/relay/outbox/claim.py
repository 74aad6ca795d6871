"""The claim: the one statement that hands due deliveries to a worker.

Claims queue behind one transaction-level advisory lock, and the claim reads only after it has
the lock, so that it sees every lease the previous claim committed: two workers never count the
same free slot or spend the same token. Every other write that must not interleave with a claim
(releasing held deliveries) takes the same lock.

The lock and the claim run as one call of a PL/pgSQL function, in a transaction of its own, so
the lock is held for the claim's execution alone: not across the round trips to the worker and
back (the lock's statement answered, the claim sent, its rows read, the commit sent), each a
wait on the worker's event loop, busy with hundreds of requests, before it runs on. Each
statement of a volatile function reads a snapshot of its own, so the claim's is taken after
the lock. The function is a temporary one, created from this module's text on each database
connection the first time it claims: the claim's SQL has one home, here, and a relay of
another version on the same database runs its own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.core.crypto import decrypt_json_column, decrypt_text
from relay.db.driver import DriverStatement, fetch
from relay.outbox.states import Liveness, liveness_sql

_TAKE_CLAIM_LOCK = "pg_advisory_xact_lock(hashtext('relay.claim'))"
CLAIM_LOCK = text(f"SELECT {_TAKE_CLAIM_LOCK}")

# A claim looks at this many due rows at least, however few it may lease: the ones over their
# subscription's room are parked on the way, so a due backlog of saturated subscriptions (many
# hanging subscribers, say) is cleared in a few claims instead of one per free slot.
SCAN_AT_LEAST = 500

# Seconds a claim still looks for parked deliveries of a subscription whose parked flag was
# lowered: far longer than any ingest statement that read the flag before and wrote a delivery
# parked behind it takes (and transitions.raise_parked_flags catches a slower one).
LOWERED_WATCH = 30.0

# An ordered subscription's delivery waits while an earlier one for the same subject is pending.
IN_SUBJECT_ORDER = """
    ({row}.subject_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries AS earlier
        WHERE earlier.subscription_id = {row}.subscription_id
          AND earlier.subject_key = {row}.subject_key
          AND earlier.status = 'pending'
          AND (earlier.event_timestamp, earlier.id) < ({row}.event_timestamp, {row}.id)
    ))
"""

# One statement, timed by statement_timestamp(): the start of the call of the claim function
# (the lock wait included, as the lock is taken inside it), the same for every row it writes.
# The candidates are the oldest due rows nobody holds (rows another worker is claiming right
# now are skipped) and the parked rows of subscriptions that have room again.
#
# A subscription's room is the least of: its max_concurrency less what any worker holds for
# it (less this worker's deliveries whose request was answered: they stay leased until their
# outcome is written, but are no longer requests in flight), its rate bucket's whole tokens,
# and the room this worker gives it (its share of the worker's slots, see
# dispatcher/shares.py). A paused subscription, or a degraded one between probes, has no room:
# its due rows are held, out of every index the claim reads, until it is resumed or its
# breaker closes. A degraded subscription whose probe is due gets room for one delivery, the
# probe, and its next probe time moves on by the probe interval.
#
# Candidates within room are leased by moving next_attempt_at to the lease's end, so a leased
# row is not due until its lease runs out, when any worker may take it again (its worker
# died). Candidates beyond room are parked: out of the due index until their subscription has
# room, and no longer anyone's lease. The throttle rows keep the parked flag and the spent
# tokens. The event and subscription come back in the same round trip.
#
# The writes name their rows as `id = ANY(ARRAY(...))`, which the planner reckons a few rows
# found by primary key. Joined to the CTEs instead, they were planned from the CTEs' estimates,
# where a LIMIT given as a parameter lets through a tenth of its input: a hash of the whole
# table seemed cheaper, and beside 50 hanging subscribers each claim read all of deliveries
# twice (tests/integration/test_claim.py, the claim beside a history).
_CLAIM_QUERY = f"""
    WITH due AS (
        SELECT candidate.id, candidate.subscription_id, candidate.next_attempt_at
        FROM deliveries AS candidate
        WHERE candidate.status = 'pending'
          AND NOT candidate.held
          AND NOT candidate.parked
          AND candidate.next_attempt_at <= statement_timestamp()
          AND {IN_SUBJECT_ORDER.format(row="candidate")}
        ORDER BY candidate.next_attempt_at
        LIMIT p_scan
        FOR UPDATE OF candidate SKIP LOCKED
    ),
    throttled AS (
        -- Flagged, or lowered a moment ago (an ingest that read the flag may have written a
        -- delivery parked since). Not those this worker has no room for now (hanging
        -- subscribers filling their share): looking would find nothing to lease, at a cost in
        -- every claim.
        SELECT subscription_id FROM subscription_throttles
        WHERE (parked
               OR lowered_at > statement_timestamp() - make_interval(secs => p_lowered_watch))
          AND subscription_id <> ALL(p_full_ids)
    ),
    looked_at AS (
        SELECT s.id AS subscription_id, s.max_concurrency,
               s.rate_limit_per_second AS rate,
               coalesce(t.parked, false) AS was_parked,
               coalesce(t.parked OR t.lowered_at > statement_timestamp()
                                     - make_interval(secs => p_lowered_watch), false) AS watched,
               t.tokens AS stored_tokens, t.refilled_at,
               {liveness_sql("s")} AS liveness,
               coalesce(s.breaker_open_until > statement_timestamp(), false) AS breaker_shut
        FROM subscriptions AS s
        LEFT JOIN subscription_throttles AS t ON t.subscription_id = s.id
        WHERE s.id IN (SELECT subscription_id FROM due UNION SELECT subscription_id FROM throttled)
    ),
    room AS (
        SELECT l.subscription_id, l.rate, l.was_parked, l.watched, bucket.tokens,
               share.slots IS NULL AS stranger,
               l.liveness = '{Liveness.PAUSED.value}'
                   OR (l.liveness = '{Liveness.DEGRADED.value}' AND l.breaker_shut) AS waiting,
               l.liveness = '{Liveness.DEGRADED.value}' AND NOT l.breaker_shut AS probing,
               CASE WHEN l.liveness = '{Liveness.PAUSED.value}'
                         OR (l.liveness = '{Liveness.DEGRADED.value}' AND l.breaker_shut)
                    THEN 0
                    -- least() passes over NULLs: no rate limit, no probe, no share of ours.
                    ELSE greatest(least(
                        l.max_concurrency - in_flight.leased,
                        coalesce(share.slots, p_default_room),
                        CASE WHEN l.liveness = '{Liveness.DEGRADED.value}' THEN 1 END,
                        floor(bucket.tokens)::integer
                    ), 0)
               END AS slots
        FROM looked_at AS l
        LEFT JOIN unnest(p_share_ids, p_share_slots)
            AS share(subscription_id, slots) ON share.subscription_id = l.subscription_id
        CROSS JOIN LATERAL (
            SELECT count(*)::integer AS leased
            FROM deliveries AS held_now
            WHERE held_now.subscription_id = l.subscription_id
              AND held_now.locked_by IS NOT NULL
              AND held_now.status = 'pending'
              AND held_now.locked_until > statement_timestamp()
              AND NOT (held_now.locked_by = p_worker
                       AND held_now.id = ANY(p_answered_ids))
        ) AS in_flight
        CROSS JOIN LATERAL (
            SELECT CASE WHEN l.rate IS NULL THEN NULL
                        WHEN l.stored_tokens IS NULL OR l.refilled_at IS NULL
                        THEN greatest(1.0, l.rate)
                        ELSE least(greatest(1.0, l.rate),
                                   l.stored_tokens + l.rate * extract(
                                       epoch FROM statement_timestamp() - l.refilled_at
                                   )::float8)
                   END AS tokens
        ) AS bucket
    ),
    holding AS (
        UPDATE deliveries AS d
        SET held = true, updated_at = statement_timestamp()
        WHERE d.id = ANY(ARRAY(
            SELECT due.id FROM due JOIN room USING (subscription_id) WHERE room.waiting
        ))
        RETURNING d.id
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
              AND {IN_SUBJECT_ORDER.format(row="p")}
            ORDER BY p.next_attempt_at, p.id
            LIMIT room.slots
            FOR UPDATE OF p SKIP LOCKED
        ) AS waiting
        WHERE room.watched AND room.slots > 0
    ),
    ranked AS (
        SELECT c.id, c.subscription_id, c.next_attempt_at, c.was_parked,
               row_number() OVER (
                   PARTITION BY c.subscription_id ORDER BY c.next_attempt_at, c.id
               ) AS place
        FROM (
            SELECT id, subscription_id, next_attempt_at, true AS was_parked FROM unparked
            UNION ALL
            SELECT due.id, due.subscription_id, due.next_attempt_at, false AS was_parked
            FROM due JOIN room USING (subscription_id)
            WHERE NOT room.waiting
        ) AS c
    ),
    picked AS (
        SELECT fitting.id
        FROM (
            SELECT ranked.id, ranked.next_attempt_at, room.stranger,
                   row_number() OVER (
                       PARTITION BY room.stranger ORDER BY ranked.next_attempt_at, ranked.id
                   ) AS arrival
            FROM ranked JOIN room USING (subscription_id)
            WHERE ranked.place <= room.slots
        ) AS fitting
        -- Subscriptions this worker has not seen answer yet are taken a few at a time.
        WHERE NOT fitting.stranger OR fitting.arrival <= p_strangers
        ORDER BY fitting.next_attempt_at
        LIMIT p_limit
    ),
    leased AS (
        UPDATE deliveries AS d
        SET locked_by = p_worker,
            locked_until = statement_timestamp() + make_interval(secs => p_lease_seconds),
            next_attempt_at = statement_timestamp() + make_interval(secs => p_lease_seconds),
            parked = false,
            updated_at = statement_timestamp()
        WHERE d.id = ANY(ARRAY(SELECT id FROM picked))
        RETURNING d.id, d.event_id, d.subscription_id, d.attempts, d.created_at
    ),
    parking AS (
        UPDATE deliveries AS d
        SET parked = true, locked_by = NULL, locked_until = NULL,
            updated_at = statement_timestamp()
        WHERE d.id = ANY(ARRAY(
            SELECT ranked.id FROM ranked JOIN room USING (subscription_id)
            WHERE NOT ranked.was_parked AND ranked.place > room.slots
        ))
        RETURNING d.subscription_id
    ),
    probed AS (
        UPDATE subscriptions AS s
        SET breaker_open_until = statement_timestamp() + make_interval(secs => p_probe_seconds)
        FROM room
        WHERE s.id = room.subscription_id AND room.probing
          AND EXISTS (SELECT 1 FROM leased WHERE leased.subscription_id = room.subscription_id)
        RETURNING s.id
    ),
    outcome AS (
        SELECT room.subscription_id, room.rate, room.was_parked, spent.count AS spent,
               room.tokens - spent.count AS tokens_left,
               -- Raised by parking, lowered only by the upkeep (transitions.lower_parked_flags):
               -- an ingest may be writing a parked delivery behind a flag it read just now.
               room.was_parked OR EXISTS (
                   SELECT 1 FROM parking WHERE parking.subscription_id = room.subscription_id
               ) AS still_parked
        FROM room
        CROSS JOIN LATERAL (
            SELECT count(*)::integer AS count
            FROM leased WHERE leased.subscription_id = room.subscription_id
        ) AS spent
    ),
    remembered AS (
        INSERT INTO subscription_throttles AS t (subscription_id, parked, tokens, refilled_at)
        SELECT subscription_id, still_parked, tokens_left, statement_timestamp()
        FROM outcome
        WHERE still_parked <> was_parked OR (tokens_left IS NOT NULL AND spent > 0)
        ON CONFLICT (subscription_id) DO UPDATE
        SET parked = excluded.parked, tokens = excluded.tokens, refilled_at = excluded.refilled_at,
            lowered_at = CASE WHEN excluded.parked THEN NULL ELSE t.lowered_at END
    )
    -- One row at least, so that a claim that only parked or held, or left a rate-limited
    -- subscription waiting for its next token, says so.
    SELECT claimed.*, summary.parked_now, summary.held_now, summary.next_token_in
    FROM (
        SELECT (SELECT count(*)::integer FROM parking) AS parked_now,
               (SELECT count(*)::integer FROM holding) AS held_now,
               (SELECT min((1.0 - tokens_left) / rate)
                FROM outcome WHERE still_parked AND tokens_left < 1) AS next_token_in
    ) AS summary
    LEFT JOIN (
        SELECT leased.id, leased.event_id, leased.subscription_id, leased.attempts,
               leased.created_at,
               e.type AS event_type, e.envelope, e.received_at AS event_received_at,
               src.slug AS source,
               s.url, s.headers, s.secret, s.previous_secret, s.previous_secret_expires_at,
               s.retry_schedule, s.max_concurrency, s.state_reason, l.liveness
        FROM leased
        JOIN events AS e ON e.id = leased.event_id
        JOIN sources AS src ON src.id = e.source_id
        JOIN subscriptions AS s ON s.id = leased.subscription_id
        JOIN looked_at AS l ON l.subscription_id = leased.subscription_id
    ) AS claimed ON true
"""  # noqa: S608 (formatted only with the module's own constants)


# RETURN QUERY checks the query's columns against these types exactly (varchar is not text).
# `use_column`: an unqualified name in the query is a column, never one of these OUT names.
_CREATE_FUNCTION = text(
    f"""
    CREATE OR REPLACE FUNCTION pg_temp.relay_claim(
        p_worker text, p_limit bigint, p_scan bigint, p_lease_seconds float8,
        p_probe_seconds float8, p_share_ids text[], p_share_slots integer[], p_full_ids text[],
        p_default_room integer, p_lowered_watch float8, p_strangers bigint,
        p_answered_ids text[]
    ) RETURNS TABLE (
        id varchar, event_id varchar, subscription_id varchar, attempts integer,
        created_at timestamptz, event_type varchar, envelope text,
        event_received_at timestamptz, source varchar, url text, headers jsonb, secret text,
        previous_secret text, previous_secret_expires_at timestamptz, retry_schedule float8[],
        max_concurrency integer, state_reason text, liveness text, parked_now integer,
        held_now integer, next_token_in float8
    ) LANGUAGE plpgsql VOLATILE AS $claim$
    #variable_conflict use_column
    BEGIN
        PERFORM {_TAKE_CLAIM_LOCK};
        RETURN QUERY {_CLAIM_QUERY};
    END
    $claim$
    """
)

# Run by the driver (db/driver.py): at a steady rate the claim runs once per webhook, and
# SQLAlchemy's execution layer cost each claim about a tenth of its time at idle.
_CALL = DriverStatement.of(
    text(
        "SELECT * FROM pg_temp.relay_claim(:worker, :limit, :scan, :lease_seconds, "
        ":probe_seconds, :share_ids, :share_slots, :full_ids, :default_room, :lowered_watch, "
        ":strangers, :answered_ids)"
    )
)

# Set in a connection's info once it has the claim function (temporary: its session's own).
_HAS_FUNCTION = "relay_claim_function"

_SUMMARY = frozenset({"parked_now", "held_now", "next_token_in"})


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
    state_reason: str
    liveness: Liveness


@dataclass(frozen=True, slots=True)
class ClaimBatch:
    deliveries: list[ClaimedDelivery]
    # Deliveries this claim found over their subscription's limits and set aside.
    parked: int = 0
    # Deliveries this claim held back: their subscription is paused or its breaker open.
    held: int = 0
    # Seconds until a rate-limited subscription left with parked deliveries has a token.
    next_token_in: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerShares:
    """How many more deliveries of each subscription this worker takes now (see
    dispatcher/shares.py); `default` for each subscription it does not name."""

    slots: Mapping[str, int]
    default: int
    # Deliveries of subscriptions it does not name that one claim takes, at most.
    strangers: int


def _claimed(row: asyncpg.Record) -> ClaimedDelivery:
    fields = {key: value for key, value in row.items() if key not in _SUMMARY}
    previous_secret = fields["previous_secret"]
    return ClaimedDelivery(
        **fields
        | {
            "liveness": Liveness(fields["liveness"]),
            "secret": decrypt_text(fields["secret"]),
            "previous_secret": None if previous_secret is None else decrypt_text(previous_secret),
            "headers": decrypt_json_column(fields["headers"]),
        }
    )


async def claim(
    session: AsyncSession,
    *,
    worker: str,
    limit: int,
    lease: timedelta,
    probe_interval: timedelta,
    shares: WorkerShares,
    answered: Collection[str] = (),
) -> ClaimBatch:
    """Leases up to `limit` due deliveries within their subscriptions' limits across all
    workers and this worker's shares, parks those of the oldest due rows that are over them,
    and holds those of paused or failing subscriptions. `answered` are the ids of this
    worker's leased deliveries whose request has been answered, their outcome not yet
    written.

    The claim commits by itself, in a transaction of its own: `session` must not have begun
    one, unless it is a session that claimed before and so holds its connection in autocommit
    already (the dispatcher keeps one across its claims)."""
    connection = await session.connection(
        execution_options=None if session.in_transaction() else {"isolation_level": "AUTOCOMMIT"}
    )
    info = (await connection.get_raw_connection()).info
    if not info.get(_HAS_FUNCTION):
        await session.execute(_CREATE_FUNCTION)
        info[_HAS_FUNCTION] = True
    rows = await fetch(
        connection,
        _CALL,
        {
            "worker": worker,
            "limit": limit,
            "scan": max(limit, SCAN_AT_LEAST),
            "lease_seconds": lease.total_seconds(),
            "probe_seconds": probe_interval.total_seconds(),
            "share_ids": list(shares.slots),
            "share_slots": list(shares.slots.values()),
            "full_ids": [key for key, slots in shares.slots.items() if slots <= 0],
            "default_room": shares.default,
            "lowered_watch": LOWERED_WATCH,
            "strangers": shares.strangers,
            "answered_ids": list(answered),
        },
    )
    summary = rows[0]
    claimed = [_claimed(row) for row in rows if row["id"] is not None]
    next_token_in = summary["next_token_in"]
    return ClaimBatch(
        deliveries=claimed,
        parked=summary["parked_now"],
        held=summary["held_now"],
        next_token_in=None if next_token_in is None else float(next_token_in),
    )
