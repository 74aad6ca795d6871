"""The claim statement: each subscription's share across workers (its free slots and its rate
tokens), and parking, which keeps one subscription's backlog from standing before the others."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.db.engine import create_engine, create_session_factory
from relay.outbox import transitions
from relay.outbox.claim import CLAIM_LOCK, ClaimBatch, ClaimedDelivery, WorkerShares
from relay.outbox.claim import claim as outbox_claim
from tests.support.relay import (
    attempt_row,
    create_routestripe_source,
    post_routestripe,
    subscribe,
    visit_event,
)
from tests.support.relay import claim_now as claim

NOWHERE = "http://127.0.0.1:9"


async def succeed(
    session_factory: async_sessionmaker[AsyncSession], worker: str, claimed: list[ClaimedDelivery]
) -> None:
    async with session_factory() as session:
        await transitions.finish_attempts(
            session,
            [
                transitions.AttemptOutcome(
                    attempt_row(item.id, item.subscription_id), succeeded=True
                )
                for item in claimed
            ],
            worker=worker,
            now=datetime.now(UTC),
        )
        await session.commit()


async def parked_count(
    session_factory: async_sessionmaker[AsyncSession], subscription_id: str
) -> int:
    count: int = await scalar(
        session_factory,
        "SELECT count(*) FROM deliveries "
        "WHERE subscription_id = :id AND parked AND NOT held AND status = 'pending'",
        id=subscription_id,
    )
    return count


async def flagged_parked(
    session_factory: async_sessionmaker[AsyncSession], subscription_id: str
) -> bool:
    """The throttle's flag: the claim offers this subscription its parked deliveries."""
    return bool(
        await scalar(
            session_factory,
            "SELECT parked FROM subscription_throttles WHERE subscription_id = :id",
            id=subscription_id,
        )
    )


def per_subscription(batch: ClaimBatch, ids: dict[str, str]) -> dict[str, int]:
    counts = Counter(item.subscription_id for item in batch.deliveries)
    return {name: counts[id_] for name, id_ in ids.items()}


async def scalar(
    session_factory: async_sessionmaker[AsyncSession], sql: str, **params: object
) -> Any:
    async with session_factory() as session:
        return await session.scalar(text(sql), params)


async def execute(
    session_factory: async_sessionmaker[AsyncSession], sql: str, **params: object
) -> None:
    """A change made by hand, as an operator or a dead worker would leave it; committed."""
    async with session_factory() as session:
        await session.execute(text(sql), params)
        await session.commit()


async def narrow_and_other(client: httpx.AsyncClient) -> dict[str, str]:
    """A subscription allowed 2 at once for order.created, one with room for order.updated."""
    narrow = await subscribe(
        client, f"{NOWHERE}/narrow", max_concurrency=2, event_types=["order.created"]
    )
    other = await subscribe(client, f"{NOWHERE}/other", event_types=["order.updated"])
    return {"narrow": narrow["id"], "other": other["id"]}


async def test_each_subscription_gets_its_free_slots_and_its_tokens_whoever_claims(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    ids = {
        "narrow": (await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=4))["id"],
        "paced": (await subscribe(client, f"{NOWHERE}/paced", rate_limit_per_second=3))["id"],
        "wide": (await subscribe(client, f"{NOWHERE}/wide"))["id"],
    }
    assert (await post_routestripe(client, [visit_event() for _ in range(12)])).status_code == 200

    first = await claim(session_factory, "worker-a")
    # 4 slots; a bucket of 3 tokens; the default 10 slots.
    assert per_subscription(first, ids) == {"narrow": 4, "paced": 3, "wide": 10}
    assert first.parked == (12 - 4) + (12 - 3) + (12 - 10)
    # The bucket is empty: its next token comes in a third of a second.
    assert first.next_token_in is not None
    assert 0.2 < first.next_token_in <= 1 / 3

    # Another worker at once: the slots are held and the tokens spent, whoever asks.
    second = await claim(session_factory, "worker-b")
    again = per_subscription(second, ids)
    assert again["narrow"] == 0
    assert again["wide"] == 0
    assert again["paced"] <= 1  # at most what 3/s refilled since the first claim


async def test_a_saturated_backlog_is_parked_and_never_stands_before_another_subscription(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    ids = await narrow_and_other(client)
    for _ in range(3):
        assert (
            await post_routestripe(client, [visit_event() for _ in range(10)])
        ).status_code == 200
    # Due after the whole backlog of the narrow subscription.
    updated = [visit_event(event="visit.delivery_note.changed") for _ in range(3)]
    assert (await post_routestripe(client, updated)).status_code == 200

    # Each claim of 10 looks at the 10 oldest due rows: the narrow backlog is parked 10 at a
    # time, then the other subscription's deliveries come, though none of the backlog's did.
    taken = Counter[str]()
    claims = 0
    while taken["other"] < 3:
        claims += 1
        assert claims <= 5, taken
        taken.update(per_subscription(await claim(session_factory, "w", limit=10), ids))
    assert taken == {"narrow": 2, "other": 3}
    assert await parked_count(session_factory, ids["narrow"]) == 28
    assert await flagged_parked(session_factory, ids["narrow"])


async def test_parked_deliveries_go_oldest_first_as_slots_free_then_the_upkeep_lowers_the_flag(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    narrow = await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=3)
    assert (await post_routestripe(client, [visit_event() for _ in range(10)])).status_code == 200
    async with session_factory() as session:
        order = list(
            (
                await session.execute(
                    text(
                        "SELECT id FROM deliveries WHERE subscription_id = :id "
                        "ORDER BY next_attempt_at, id"
                    ),
                    {"id": narrow["id"]},
                )
            ).scalars()
        )

    sent: list[str] = []
    batch = await claim(session_factory, "w")
    assert batch.parked == 7
    # No rate limit: only a finished delivery makes room, and the worker wakes on that.
    assert batch.next_token_in is None
    while batch.deliveries:
        assert len(batch.deliveries) <= 3
        # Nothing is free until something finishes: a second claim takes nothing.
        assert (await claim(session_factory, "w")).deliveries == []
        sent.extend(item.id for item in batch.deliveries)
        await succeed(session_factory, "w", batch.deliveries)
        batch = await claim(session_factory, "w")

    assert sorted(sent) == sorted(order)
    # Oldest first, three at a time; within a claim, any order.
    assert [set(sent[i : i + 3]) for i in range(0, 10, 3)] == [
        set(order[i : i + 3]) for i in range(0, 10, 3)
    ]
    assert await parked_count(session_factory, narrow["id"]) == 0
    # The claim leaves the flag up (an ingest may be writing behind it); the upkeep lowers it.
    assert await flagged_parked(session_factory, narrow["id"])
    await tidy(session_factory, datetime.now(UTC))
    assert not await flagged_parked(session_factory, narrow["id"])


async def test_an_answered_delivery_frees_its_subscriptions_slot_before_its_outcome_is_written(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    narrow = await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=2)
    assert (await post_routestripe(client, [visit_event() for _ in range(5)])).status_code == 200
    first = (await claim(session_factory, "w")).deliveries
    assert len(first) == 2
    # Still leased, outcome unwritten: requests in flight for every other worker, and for
    # this one until it says they were answered.
    assert (await claim(session_factory, "w")).deliveries == []
    assert (await claim(session_factory, "other")).deliveries == []
    answered = [first[0].id]
    assert (await claim(session_factory, "other", answered=answered)).deliveries == []
    [second] = (await claim(session_factory, "w", answered=answered)).deliveries
    assert second.id not in {item.id for item in first}
    # The answered one is still leased to its worker: nobody else is handed it meanwhile.
    assert (
        await scalar(
            session_factory,
            "SELECT locked_by FROM deliveries WHERE id = :id",
            id=first[0].id,
        )
        == "w"
    )
    # Two requests in flight again (the unanswered first one and the second).
    assert (await claim(session_factory, "w", answered=answered)).deliveries == []
    assert await parked_count(session_factory, narrow["id"]) == 2


async def test_the_claim_commits_by_itself_and_holds_its_lock_only_while_it_runs(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, f"{NOWHERE}/wide", max_concurrency=100)
    assert (await post_routestripe(client, [visit_event() for _ in range(4)])).status_code == 200
    shares = WorkerShares(slots={}, default=100, strangers=100)
    async with session_factory() as first, session_factory() as second:
        # The first session stays open, never committed: its claim is committed anyway...
        taken = await claim_in(first, "first", limit=2, shares=shares)
        assert len(taken.deliveries) == 2
        # ...and the lock is free: a claim in another session neither waits nor retakes them.
        async with asyncio.timeout(10):
            rest = await claim_in(second, "second", limit=100, shares=shares)
        assert {item.id for item in rest.deliveries}.isdisjoint(
            item.id for item in taken.deliveries
        )
        assert len(rest.deliveries) == 2
    # Another writer that takes the claim's lock is not kept waiting either.
    async with session_factory() as session, asyncio.timeout(10):
        await session.execute(CLAIM_LOCK)
        await session.commit()


async def claim_in(
    session: AsyncSession, worker: str, *, limit: int, shares: WorkerShares
) -> ClaimBatch:
    return await outbox_claim(
        session,
        worker=worker,
        limit=limit,
        lease=timedelta(seconds=60),
        probe_interval=timedelta(minutes=1),
        shares=shares,
    )


async def tidy(session_factory: async_sessionmaker[AsyncSession], now: datetime) -> None:
    async with session_factory() as session:
        await transitions.raise_parked_flags(session)
        await transitions.lower_parked_flags(session, now=now)
        await session.commit()


async def test_a_saturated_subscriptions_new_deliveries_are_written_parked_and_never_lost(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    narrow = await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=1)
    assert (await post_routestripe(client, [visit_event() for _ in range(3)])).status_code == 200
    [first] = (batch := await claim(session_factory, "w")).deliveries
    assert batch.parked == 2
    # Written parked by the ingest, behind the backlog: no claim has to park it.
    assert (await post_routestripe(client, [visit_event()])).status_code == 200
    assert await parked_count(session_factory, narrow["id"]) == 3
    assert (await claim(session_factory, "w")).parked == 0

    # The flag lowered while such deliveries were being written (the race): the claims still
    # look behind a flag lowered a moment ago...
    await execute(
        session_factory,
        "UPDATE subscription_throttles SET parked = false, lowered_at = now() "
        "WHERE subscription_id = :id",
        id=narrow["id"],
    )
    await succeed(session_factory, "w", [first])
    [second] = (await claim(session_factory, "w")).deliveries
    # ...not behind one lowered long ago, where the upkeep raises the flag again.
    await execute(
        session_factory,
        "UPDATE subscription_throttles SET lowered_at = now() - interval '1 hour' "
        "WHERE subscription_id = :id",
        id=narrow["id"],
    )
    await succeed(session_factory, "w", [second])
    assert (await claim(session_factory, "w")).deliveries == []
    await tidy(session_factory, datetime.now(UTC))
    assert await flagged_parked(session_factory, narrow["id"])
    assert len((await claim(session_factory, "w")).deliveries) == 1


async def test_a_dead_workers_expired_lease_frees_its_slot(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, f"{NOWHERE}/one", max_concurrency=1)
    assert (await post_routestripe(client, [visit_event() for _ in range(2)])).status_code == 200
    [held] = (await claim(session_factory, "dead")).deliveries
    assert (await claim(session_factory, "alive")).deliveries == []

    await execute(
        session_factory,
        "UPDATE deliveries SET locked_until = now() - interval '1 second', "
        "next_attempt_at = now() - interval '1 second' WHERE id = :id",
        id=held.id,
    )
    [taken] = (await claim(session_factory, "alive")).deliveries
    # The dead worker's delivery is due again and the oldest: it goes first.
    assert taken.id == held.id


async def test_a_parked_delivery_retried_by_hand_comes_back_unparked(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    narrow = await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=1)
    assert (await post_routestripe(client, [visit_event() for _ in range(2)])).status_code == 200
    [first] = (await claim(session_factory, "w")).deliveries
    parked_id = await scalar(
        session_factory,
        "SELECT id FROM deliveries WHERE subscription_id = :id AND parked",
        id=narrow["id"],
    )
    assert parked_id is not None
    assert parked_id != first.id
    await succeed(session_factory, "w", [first])

    retried = await client.post(f"/v1/deliveries/{parked_id}/retry")
    assert retried.status_code == 200, retried.text
    assert (
        await scalar(session_factory, "SELECT parked FROM deliveries WHERE id = :id", id=parked_id)
        is False
    )
    [again] = (await claim(session_factory, "w")).deliveries
    assert again.id == parked_id


async def test_deleting_a_subscription_fails_its_parked_deliveries_but_not_the_one_in_flight(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    narrow = await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=1)
    assert (await post_routestripe(client, [visit_event() for _ in range(4)])).status_code == 200
    batch = await claim(session_factory, "w")
    assert batch.parked == 3
    [in_flight] = batch.deliveries
    assert (await client.delete(f"/v1/subscriptions/{narrow['id']}")).status_code == 204
    async with session_factory() as session:
        rows = await session.execute(
            text("SELECT id, status, parked FROM deliveries WHERE subscription_id = :id"),
            {"id": narrow["id"]},
        )
        states = {row.id: (row.status, row.parked) for row in rows}
    # The one in flight is its worker's to finish with what the subscriber answers.
    assert states.pop(in_flight.id) == ("pending", False)
    assert set(states.values()) == {("failed", False)}
    assert (await claim(session_factory, "w")).deliveries == []
    await succeed(session_factory, "w", [in_flight])
    assert (
        await scalar(
            session_factory, "SELECT status FROM deliveries WHERE id = :id", id=in_flight.id
        )
        == "succeeded"
    )


async def test_a_released_backlog_goes_parked_and_the_first_claim_serves_everyone(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    ids = await narrow_and_other(client)
    assert (await post_routestripe(client, [visit_event() for _ in range(20)])).status_code == 200
    # Held back, as by a pause or an open breaker.
    await execute(
        session_factory,
        "UPDATE deliveries SET held = true WHERE subscription_id = :id",
        id=ids["narrow"],
    )
    updated = [visit_event(event="visit.delivery_note.changed") for _ in range(3)]
    assert (await post_routestripe(client, updated)).status_code == 200

    resumed = await client.patch(f"/v1/subscriptions/{ids['narrow']}", json={"active": True})
    assert resumed.status_code == 200, resumed.text

    # All 20 came back at once, older than the other's 3; a claim of 5 still serves both.
    first = await claim(session_factory, "w", limit=5)
    assert per_subscription(first, ids) == {"narrow": 2, "other": 3}
    assert first.parked == 0
    assert await parked_count(session_factory, ids["narrow"]) == 18
    assert await flagged_parked(session_factory, ids["narrow"])


async def test_parking_a_row_whose_lease_ran_out_takes_the_lease_from_its_late_worker(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, f"{NOWHERE}/one", max_concurrency=1)
    assert (await post_routestripe(client, [visit_event() for _ in range(2)])).status_code == 200
    [late] = (await claim(session_factory, "slow")).deliveries
    # The slow worker's lease runs out; its delivery is due again, after the parked one.
    await execute(
        session_factory,
        "UPDATE deliveries SET locked_until = now() - interval '1 second', "
        "next_attempt_at = now() WHERE id = :id",
        id=late.id,
    )
    taken = await claim(session_factory, "other")
    assert [item.id for item in taken.deliveries] != [late.id]
    assert taken.parked == 1

    async with session_factory() as session:
        row = (
            await session.execute(
                text("SELECT parked, locked_by FROM deliveries WHERE id = :id"), {"id": late.id}
            )
        ).one()
        assert tuple(row) == (True, None)
        # The slow worker answers at last: its retry time must not land on a parked row that
        # the next claim would send at once.
        now = datetime.now(UTC)
        row = attempt_row(late.id, late.subscription_id, status=500, decision="retry in 5 min")
        await transitions.finish_attempts(
            session,
            [transitions.AttemptOutcome(row, succeeded=False, retry_at=now + timedelta(minutes=5))],
            worker="slow",
            now=now,
        )
        await session.commit()
        row = (
            await session.execute(
                text("SELECT parked, status, attempts FROM deliveries WHERE id = :id"),
                {"id": late.id},
            )
        ).one()
    assert tuple(row) == (True, "pending", 0)


async def test_a_paused_subscriptions_due_deliveries_are_held_by_the_claim_and_freed_by_resume(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    paused = await subscribe(client, f"{NOWHERE}/paused")
    other = await subscribe(client, f"{NOWHERE}/other")
    path = f"/v1/subscriptions/{paused['id']}"
    assert (await client.patch(path, json={"active": False})).status_code == 200
    assert (await post_routestripe(client, [visit_event() for _ in range(2)])).status_code == 200

    batch = await claim(session_factory, "w")
    # The other subscription's two go out; the paused one's two are held, not leased.
    assert {item.subscription_id for item in batch.deliveries} == {other["id"]}
    assert batch.held == 2
    assert (await claim(session_factory, "w")).deliveries == []

    assert (await client.patch(path, json={"active": True})).status_code == 200
    async with session_factory() as session:
        rows = await session.execute(
            text("SELECT held, parked, locked_by FROM deliveries WHERE subscription_id = :id"),
            {"id": paused["id"]},
        )
        assert [tuple(row) for row in rows] == [(False, True, None)] * 2
    again = await claim(session_factory, "w")
    assert [item.subscription_id for item in again.deliveries] == [paused["id"]] * 2


async def test_raising_max_concurrency_frees_parked_deliveries_at_the_next_claim(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    narrow = await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=1)
    assert (await post_routestripe(client, [visit_event() for _ in range(4)])).status_code == 200
    first = await claim(session_factory, "w")
    assert (len(first.deliveries), first.parked) == (1, 3)
    assert (await claim(session_factory, "w")).deliveries == []

    raised = await client.patch(f"/v1/subscriptions/{narrow['id']}", json={"max_concurrency": 3})
    assert raised.status_code == 200, raised.text
    # One still in flight, so two more of the three parked.
    assert len((await claim(session_factory, "w")).deliveries) == 2


async def test_the_claim_reaches_the_rows_it_writes_by_key_beside_a_history(
    client: httpx.AsyncClient, module_database_url: str, settings: Settings
) -> None:
    """The claim leases, parks and holds a handful of rows: it must find them by primary key
    however many finished deliveries lie beside them. With `FROM picked WHERE d.id = picked.id`
    its cached plan read all 26,877 rows of deliveries twice per claim (isolation's hanging
    subscribers, auto_explain), because the planner cannot know how few rows a LIMIT given as a
    parameter lets through."""
    await create_routestripe_source(client)
    narrow = await subscribe(client, f"{NOWHERE}/narrow", max_concurrency=2)
    wide = await subscribe(client, f"{NOWHERE}/wide")
    for _ in range(4):
        assert (
            await post_routestripe(client, [visit_event() for _ in range(25)])
        ).status_code == 200
    single = create_engine(
        module_database_url, settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    )
    plans: list[str] = []
    try:
        async with single.connect() as connection:
            # Finished deliveries of the wide subscription, and a due backlog of the narrow
            # one: what hanging subscribers leave.
            for subscription, rows, status in (
                (wide, 30_000, "succeeded"),
                (narrow, 3_000, "pending"),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO deliveries (id, event_id, subscription_id, status, "
                        "attempts, next_attempt_at, event_timestamp, created_at, updated_at, "
                        "completed_at) "
                        "SELECT 'dlv_' || :status || n, d.event_id, d.subscription_id, :status, "
                        "0, now(), now(), now(), now(), "
                        "CASE WHEN :status <> 'pending' THEN now() END "
                        "FROM generate_series(1, :rows) AS n, (SELECT event_id, subscription_id "
                        "FROM deliveries WHERE subscription_id = :subscription LIMIT 1) AS d"
                    ),
                    {"status": status, "rows": rows, "subscription": subscription["id"]},
                )
            await connection.exec_driver_sql("ANALYZE deliveries")
            await connection.commit()
        sessions = create_session_factory(single)
        # Past the plan cache's first five executions: what a long-running worker runs.
        for number in range(8):
            await claim(sessions, f"worker-{number}", limit=5)
        async with single.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            raw = (await autocommit.get_raw_connection()).driver_connection
            raw.add_log_listener(lambda _connection, message: plans.append(message.message))
            for statement in (
                "LOAD 'auto_explain'",
                "SET auto_explain.log_min_duration = 0",
                "SET auto_explain.log_nested_statements = on",
                "SET auto_explain.log_level = notice",
                "SET client_min_messages = notice",
            ):
                await autocommit.exec_driver_sql(statement)
        await claim(sessions, "worker-last", limit=5)
    finally:
        await single.dispose()

    [claim_plan] = [plan for plan in plans if "WITH due AS" in plan]
    assert "Update on deliveries" in claim_plan
    assert "Seq Scan on deliveries" not in claim_plan, claim_plan
