"""The batched writer of successful attempts, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.dispatcher.recorder import OutcomeRecorder
from relay.outbox.claim import ClaimedDelivery
from relay.outbox.health import BreakerPolicy
from relay.outbox.transitions import AttemptOutcome
from tests.support.relay import (
    attempt_row,
    claim_now,
    create_routestripe_source,
    post_routestripe,
    visit_event,
)

POLICY = BreakerPolicy(
    failures=20, probe_interval=timedelta(minutes=1), disable_after=timedelta(days=5)
)


def success(delivery_id: str, subscription_id: str) -> AttemptOutcome:
    return AttemptOutcome(attempt_row(delivery_id, subscription_id), succeeded=True)


async def test_one_bad_row_costs_only_its_own_outcome(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    created = await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"})
    subscription_id = created.json()["id"]
    posted = await post_routestripe(client, [visit_event() for _ in range(5)])
    assert posted.status_code == 200, posted.text
    claimed = (await claim_now(session_factory, "recorder-test", limit=10)).deliveries
    assert len(claimed) == 5

    recorder = OutcomeRecorder(
        session_factory, POLICY, worker="recorder-test", clock=lambda: datetime.now(UTC)
    )
    # The sixth names a delivery that does not exist (its event was purged, say).
    outcomes = await asyncio.gather(
        *(recorder.record(success(item.id, subscription_id)) for item in claimed),
        recorder.record(success("dlv_gone", subscription_id)),
        return_exceptions=True,
    )

    assert outcomes[:5] == ["succeeded"] * 5
    # A batch of successes is written by the driver itself (transitions.finish_successes).
    assert isinstance(outcomes[5], asyncpg.ForeignKeyViolationError)
    async with session_factory() as session:
        rows = await session.execute(
            text("SELECT status, locked_by, attempts FROM deliveries ORDER BY id")
        )
        assert [tuple(row) for row in rows] == [("succeeded", None, 1)] * 5
        attempts = await session.scalar(text("SELECT count(*) FROM delivery_attempts"))
    assert attempts == 5
    assert recorder.writer is None
    assert recorder.queue == []


async def test_a_cancelled_write_leaves_no_caller_waiting(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    recorder = OutcomeRecorder(
        session_factory, POLICY, worker="recorder-test", clock=lambda: datetime.now(UTC)
    )
    waiting = asyncio.ensure_future(recorder.record(success("dlv_never", "sub_never")))
    await asyncio.sleep(0)
    assert recorder.writer is not None
    recorder.writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await waiting


async def test_a_database_out_of_reach_fails_the_batch_once_not_row_by_row() -> None:
    opened = 0

    @contextlib.asynccontextmanager
    async def unreachable() -> AsyncIterator[AsyncSession]:
        nonlocal opened
        opened += 1
        raise ConnectionRefusedError("database down")
        yield  # pragma: no cover - never reached

    recorder = OutcomeRecorder(
        unreachable,  # type: ignore[arg-type]
        POLICY,
        worker="recorder-test",
        clock=lambda: datetime.now(UTC),
    )
    outcomes = await asyncio.gather(
        *(recorder.record(success(f"dlv_{n}", "sub_down")) for n in range(5)),
        return_exceptions=True,
    )

    assert all(isinstance(outcome, ConnectionRefusedError) for outcome in outcomes)
    # One batch, tried three times; not three more tries for each of its five rows.
    assert opened == 3


async def test_a_batch_of_failures_counts_per_subscription_and_logs_what_each_delivery_became(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    first = (await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/a"})).json()
    second = (await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/b"})).json()
    assert (await post_routestripe(client, [visit_event() for _ in range(3)])).status_code == 200
    claimed = (await claim_now(session_factory, "recorder-test", limit=10)).deliveries
    assert len(claimed) == 6
    # Three breaker failures open the breaker: the first subscription gets three at once.
    policy = BreakerPolicy(
        failures=3, probe_interval=timedelta(minutes=1), disable_after=timedelta(days=5)
    )
    recorder = OutcomeRecorder(
        session_factory, policy, worker="recorder-test", clock=lambda: datetime.now(UTC)
    )
    later = datetime.now(UTC) + timedelta(hours=1)

    def failure(item: ClaimedDelivery) -> AttemptOutcome:
        row = attempt_row(item.id, item.subscription_id, status=503, decision="retry later")
        if item.subscription_id == first["id"]:
            return AttemptOutcome(row, succeeded=False, retry_at=later)
        return AttemptOutcome(row, succeeded=False)  # no retry left

    statuses = await asyncio.gather(*(recorder.record(failure(item)) for item in claimed))

    by_subscription = {
        item.subscription_id: status for item, status in zip(claimed, statuses, strict=True)
    }
    assert by_subscription == {first["id"]: "pending", second["id"]: "failed"}
    async with session_factory() as session:
        rows = await session.execute(text("SELECT id, consecutive_failures FROM subscriptions"))
        states = {row.id: row.consecutive_failures for row in rows}
        disagreeing = await session.scalar(
            text(
                "SELECT count(*) FROM delivery_attempts AS a "
                "JOIN deliveries AS d ON d.id = a.delivery_id WHERE a.outcome <> d.status"
            )
        )
    assert states == {first["id"]: 3, second["id"]: 3}
    assert disagreeing == 0
    opened = (await client.get(f"/v1/subscriptions/{first['id']}")).json()
    assert opened["state"] == "degraded"


async def test_successes_are_logged_whole_and_close_a_counting_breaker_in_the_same_write(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    healthy = (await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/a"})).json()
    counting = (await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/b"})).json()
    assert (await post_routestripe(client, [visit_event() for _ in range(2)])).status_code == 200
    claimed = (await claim_now(session_factory, "recorder-test", limit=10)).deliveries
    assert len(claimed) == 4
    recorder = OutcomeRecorder(
        session_factory, POLICY, worker="recorder-test", clock=lambda: datetime.now(UTC)
    )

    def answered(item: ClaimedDelivery) -> AttemptOutcome:
        row = attempt_row(item.id, item.subscription_id, decision=f"ok for {item.id}") | {
            "request_url": f"http://127.0.0.1:9/{item.id}",
            "request_headers": {"webhook-id": item.event_id, "user-agent": "relay"},
            "response_headers": {"content-type": "text/plain"},
            "response_body": "thanks ✓",
            "duration_ms": 17,
        }
        return AttemptOutcome(row, succeeded=True)

    # Healthy subscriptions only: one statement (transitions.finish_successes).
    first = {item.id: answered(item) for item in claimed if item.subscription_id == healthy["id"]}
    statuses = await asyncio.gather(*(recorder.record(outcome) for outcome in first.values()))
    assert statuses == ["succeeded", "succeeded"]
    async with session_factory() as session:
        logged = (await session.execute(text("SELECT * FROM delivery_attempts"))).mappings().all()
        deliveries = (
            await session.execute(
                text(
                    "SELECT status, locked_by, completed_at IS NOT NULL AS done FROM deliveries "
                    "WHERE id = ANY(:ids)"
                ),
                {"ids": list(first)},
            )
        ).all()
    # Every column as the dispatcher gave it, and the status its delivery got.
    assert {row["delivery_id"]: dict(row) for row in logged} == {
        delivery_id: outcome.attempt | {"outcome": "succeeded"}
        for delivery_id, outcome in first.items()
    }
    assert [tuple(row) for row in deliveries] == [("succeeded", None, True)] * 2

    # Failures counted against the other: its successes reset the count as they are written.
    async with session_factory() as session:
        await session.execute(
            text(
                "UPDATE subscriptions SET consecutive_failures = 2, failing_since = now() "
                "WHERE id = :id"
            ),
            {"id": counting["id"]},
        )
        await session.commit()
    rest = [item for item in claimed if item.subscription_id == counting["id"]]
    statuses = await asyncio.gather(*(recorder.record(answered(item)) for item in rest))
    assert statuses == ["succeeded", "succeeded"]
    async with session_factory() as session:
        breaker = (
            await session.execute(
                text(
                    "SELECT consecutive_failures, failing_since FROM subscriptions WHERE id = :id"
                ),
                {"id": counting["id"]},
            )
        ).one()
        disagreeing = await session.scalar(
            text(
                "SELECT count(*) FROM delivery_attempts AS a "
                "JOIN deliveries AS d ON d.id = a.delivery_id WHERE a.outcome <> d.status"
            )
        )
        attempts = await session.scalar(text("SELECT count(*) FROM delivery_attempts"))
    assert tuple(breaker) == (0, None)
    assert (attempts, disagreeing) == (4, 0)
