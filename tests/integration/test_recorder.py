"""The batched writer of successful attempts, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.ids import new_id
from relay.deliveries.repository import DeliveryRepository
from relay.dispatcher.health import BreakerPolicy
from relay.dispatcher.recorder import AttemptRow, SuccessRecorder
from tests.support.relay import create_routestripe_source, post_routestripe, visit_event

POLICY = BreakerPolicy(
    failures=20, probe_interval=timedelta(minutes=1), disable_after=timedelta(days=5)
)


def success(delivery_id: str, subscription_id: str) -> AttemptRow:
    return {
        "id": new_id("att"),
        "delivery_id": delivery_id,
        "subscription_id": subscription_id,
        "attempt_number": 1,
        "started_at": datetime.now(UTC),
        "duration_ms": 3,
        "request_url": "http://127.0.0.1:9/hook",
        "request_headers": {},
        "response_status": 200,
        "response_headers": {},
        "response_body": "ok",
        "error_class": None,
        "error_message": None,
        "outcome": "succeeded",
        "decision": "succeeded",
    }


async def test_one_bad_row_costs_only_its_own_outcome(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    created = await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"})
    subscription_id = created.json()["id"]
    posted = await post_routestripe(client, [visit_event() for _ in range(5)])
    assert posted.status_code == 200, posted.text
    async with session_factory() as session:
        batch = await DeliveryRepository(session).claim(
            worker="recorder-test", limit=10, lease=timedelta(seconds=60)
        )
        await session.commit()
    claimed = batch.deliveries
    assert len(claimed) == 5

    recorder = SuccessRecorder(
        session_factory, POLICY, worker="recorder-test", clock=lambda: datetime.now(UTC)
    )
    # The sixth names a delivery that does not exist (its event was purged, say).
    outcomes = await asyncio.gather(
        *(recorder.record(success(item.id, subscription_id)) for item in claimed),
        recorder.record(success("dlv_gone", subscription_id)),
        return_exceptions=True,
    )

    assert outcomes[:5] == [None] * 5
    assert isinstance(outcomes[5], IntegrityError)
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
    recorder = SuccessRecorder(
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

    recorder = SuccessRecorder(
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
