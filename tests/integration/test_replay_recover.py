"""Replay and recovery end to end: a subscriber down for a while gets everything back."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.jobs.repository import JobRepository
from relay.jobs.runner import JobRunner
from relay.jobs.service import JobBatches, Progress
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    running_dispatcher,
    subscribe,
    visit_event,
)
from tests.support.subscriber import Answer, Subscriber, eventually


def configured(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "dispatcher_poll_interval": 0.5,
        "delivery_timeout": 5.0,
        "shutdown_grace": 2.0,
        # Two hundred 404s in a row must not open the breaker: this test is about recovery.
        "breaker_failures": 100_000,
        "job_poll_interval": 0.2,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


async def post_events(client: httpx.AsyncClient, batches: int, size: int) -> list[str]:
    event_ids: list[str] = []
    for _ in range(batches):
        posted = await post_routestripe(client, [visit_event() for _ in range(size)])
        assert posted.status_code == 200, posted.text
        event_ids.extend(posted.json()["event_ids"])
    return event_ids


async def count(session_factory: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> int:
    async with session_factory() as session:
        return int((await session.execute(text(sql), params)).scalar_one())


async def fail_all_deliveries(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with session_factory() as session:
        await session.execute(
            text(
                "UPDATE deliveries SET status = 'failed', completed_at = now(), attempts = 1, "
                "last_error = '404 Not Found'"
            )
        )
        await session.commit()


async def recover_the_last_hour(client: httpx.AsyncClient, subscription_id: str) -> httpx.Response:
    """Asks for a recovery of the subscription's failed deliveries of the last hour."""
    return await client.post(
        f"/v1/subscriptions/{subscription_id}/recover",
        json={"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
    )


async def test_recover_after_an_outage_delivers_all_200_events(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=5)
    await create_routestripe_source(client)
    # Down: its 404 answers fail each delivery at once.
    subscriber.script("/hook", then=Answer(404))
    # Room for a whole batch at once keeps the test short; the dispatcher's limits still apply.
    subscription = await subscribe(client, subscriber.url("/hook"), max_concurrency=50)
    config = configured(settings, job_batch_size=50, job_max_backlog=50)

    async with running_dispatcher(config, session_factory, module_database_url):
        # 200 webhooks of one event each, as the issue tells it.
        event_ids = await post_events(client, batches=200, size=1)
        assert len(set(event_ids)) == 200
        await eventually(lambda: _failed_count(session_factory, subscription["id"], 200), within=60)
        # Back up.
        subscriber.script("/hook", then=Answer(200))
        before_recovery = len(subscriber.received)

        recovered = await client.post(
            f"/v1/subscriptions/{subscription['id']}/recover",
            json={"since": started.isoformat(), "status": "failed"},
        )
        assert recovered.status_code == 202, recovered.text
        job_id = recovered.json()["job_id"]
        assert recovered.headers["location"] == f"/v1/jobs/{job_id}"
        assert recovered.json()["status"] == "queued"

        seen: list[int] = []

        async def finished() -> bool:
            job = (await client.get(f"/v1/jobs/{job_id}")).json()
            seen.append(job["done"])
            return bool(job["status"] == "succeeded")

        await eventually(finished, within=90)
        await eventually(lambda: len(subscriber.received) - before_recovery >= 200, within=60)

    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["kind"] == "recover"
    assert (job["done"], job["total"]) == (200, 200)
    assert job["result"] == {"requeued": 200, "batches": 4}
    assert job["params"]["subscription_id"] == subscription["id"]
    assert job["error"] is None
    assert job["started_at"] is not None
    assert job["finished_at"] >= job["started_at"]
    assert seen == sorted(seen)
    assert seen[-1] == 200
    after = subscriber.received[before_recovery:]
    assert {item.headers["webhook-id"] for item in after} == set(event_ids)
    assert all(item.headers["x-relay-attempt"] == "2" for item in after)
    succeeded = await count(
        session_factory, "SELECT count(*) FROM deliveries WHERE status = 'succeeded'"
    )
    assert succeeded == 200


async def _failed_count(
    session_factory: async_sessionmaker[AsyncSession], subscription_id: str, expected: int
) -> bool:
    failed = await count(
        session_factory,
        "SELECT count(*) FROM deliveries WHERE subscription_id = :id AND status = 'failed'",
        id=subscription_id,
    )
    return failed == expected


async def test_a_job_whose_worker_died_is_resumed_from_its_cursor(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    await create_routestripe_source(client)
    subscription = await subscribe(client, "http://127.0.0.1:9/hook")
    await post_events(client, batches=1, size=25)
    await fail_all_deliveries(session_factory)
    queued = await client.post(
        f"/v1/subscriptions/{subscription['id']}/recover", json={"since": since.isoformat()}
    )
    job_id = queued.json()["job_id"]

    # A worker claims the job, finishes one batch of 10, and dies holding a 1 s lease.
    async with session_factory() as session:
        job = await JobRepository(session).claim(worker="dead", lease=timedelta(seconds=1))
        assert job is not None
        assert job.id == job_id
        progress = Progress.of(job)
        progress.total = await JobBatches(session, job).count(now=since)
        complete = await JobBatches(session, job).run_batch(progress, limit=10, now=since)
        assert not complete
        stored = await JobRepository(session).progress(
            job.id,
            worker="dead",
            lease=timedelta(seconds=1),
            cursor=progress.cursor,
            done=progress.done,
            total=progress.total,
            result=progress.result,
        )
        assert stored
        await session.commit()
    half = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert (half["status"], half["done"], half["total"]) == ("running", 10, 25)

    runner = JobRunner(configured(settings, job_batch_size=10), session_factory, worker="next")
    # Nothing to take while the dead worker's lease lasts; then the job is taken over.
    await eventually(runner.run_next, within=20)

    job_out = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert (job_out["status"], job_out["done"], job_out["total"]) == ("succeeded", 25, 25)
    assert job_out["result"] == {"requeued": 25, "batches": 3}
    pending = await count(
        session_factory, "SELECT count(*) FROM deliveries WHERE status = 'pending'"
    )
    assert pending == 25
    runs = await count(session_factory, "SELECT runs FROM jobs WHERE id = :id", id=job_id)
    assert runs == 2


async def test_recover_comes_back_for_a_delivery_that_was_locked_when_its_batch_ran(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, "http://127.0.0.1:9/hook")
    await post_events(client, batches=1, size=15)
    await fail_all_deliveries(session_factory)
    queued = await recover_the_last_hour(client, subscription["id"])
    assert queued.status_code == 202, queued.text
    now = datetime.now(UTC)

    async with session_factory() as holder, session_factory() as session:
        # A hand retry, say, holds the oldest failed delivery while the first pass runs.
        locked = (
            await holder.execute(
                text("SELECT id FROM deliveries ORDER BY created_at, id LIMIT 1 FOR UPDATE")
            )
        ).scalar_one()
        job = await JobRepository(session).claim(worker="sweeper", lease=timedelta(seconds=30))
        assert job is not None
        progress = Progress.of(job)
        batches = JobBatches(session, job)
        assert not await batches.run_batch(progress, limit=10, now=now)
        # The window's end: one delivery is still failed, so the job starts over.
        assert not await batches.run_batch(progress, limit=10, now=now)
        assert (progress.done, progress.cursor, progress.result["passes"]) == (14, None, 2)
        await session.commit()
        await holder.rollback()

        # The second pass finds it free: requeued, and nothing failed is left.
        assert await batches.run_batch(progress, limit=10, now=now)
        await session.commit()

    assert progress.done == 15
    status = await count(
        session_factory,
        "SELECT count(*) FROM deliveries WHERE id = :id AND status = 'pending'",
        id=locked,
    )
    assert status == 1
    failed = await count(session_factory, "SELECT count(*) FROM deliveries WHERE status = 'failed'")
    assert failed == 0


async def test_a_job_waits_while_the_deliveries_it_fed_are_still_queued(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, "http://127.0.0.1:9/hook")
    await post_events(client, batches=1, size=30)
    await fail_all_deliveries(session_factory)
    queued = await recover_the_last_hour(client, subscription["id"])
    job_id = queued.json()["job_id"]
    config = configured(settings, job_batch_size=10, job_max_backlog=10)
    runner = JobRunner(config, session_factory, worker="paced")
    task = asyncio.create_task(runner.run_next())
    try:

        async def done_is(value: int) -> bool:
            return bool((await client.get(f"/v1/jobs/{job_id}")).json()["done"] == value)

        await eventually(lambda: done_is(10), within=20)
        # No dispatcher drains the 10 re-queued deliveries: the job holds back the rest.
        await asyncio.sleep(1.5)
        assert await done_is(10)
        assert not task.done()

        await _deliver_pending(session_factory)
        await eventually(lambda: done_is(20), within=20)
        await _deliver_pending(session_factory)
        await eventually(lambda: done_is(30), within=20)
        # A full last batch: the job looks once more, after the backlog drains, and finds none.
        await _deliver_pending(session_factory)
        await asyncio.wait_for(asyncio.shield(task), timeout=20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert (job["status"], job["done"], job["total"]) == ("succeeded", 30, 30)


async def _deliver_pending(session_factory: async_sessionmaker[AsyncSession]) -> None:
    async with session_factory() as session:
        await session.execute(
            text(
                "UPDATE deliveries SET status = 'succeeded', completed_at = now(), "
                "locked_by = NULL, locked_until = NULL WHERE status = 'pending'"
            )
        )
        await session.commit()


async def test_a_cancelled_runner_hands_its_job_back(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, "http://127.0.0.1:9/hook")
    await post_events(client, batches=1, size=5)
    await fail_all_deliveries(session_factory)
    queued = await recover_the_last_hour(client, subscription["id"])
    job_id = queued.json()["job_id"]
    config = configured(settings, job_batch_size=1, job_max_backlog=1, job_lease=timedelta(hours=1))
    task = asyncio.create_task(JobRunner(config, session_factory, worker="leaving").run())

    async def started() -> bool:
        return bool((await client.get(f"/v1/jobs/{job_id}")).json()["done"] == 1)

    await eventually(started, within=20)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    async with session_factory() as session:
        row = (
            await session.execute(
                text("SELECT status, locked_by, locked_until <= now() FROM jobs WHERE id = :id"),
                {"id": job_id},
            )
        ).one()
    # Still running, but free for any runner now rather than after its hour-long lease.
    assert tuple(row) == ("running", None, True)


async def test_replay_one_event_to_all_or_named_subscriptions(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    everything = await subscribe(client, subscriber.url("/all"))
    routes_only = await subscribe(client, subscriber.url("/routes"), event_types=["route.*"])
    paused = await subscribe(client, subscriber.url("/paused"), active=False)
    [event_id] = await post_events(client, batches=1, size=1)

    to_all = await client.post(f"/v1/events/{event_id}/replay")
    assert to_all.status_code == 201, to_all.text
    deliveries = to_all.json()["deliveries"]
    assert to_all.json()["event_id"] == event_id
    assert to_all.json()["delivery_ids"] == [delivery["id"] for delivery in deliveries]
    # The paused subscription gets its delivery too: it waits for the resume.
    assert sorted((d["subscription_id"], d["status"]) for d in deliveries) == sorted(
        [(everything["id"], "pending"), (paused["id"], "pending")]
    )

    named = await client.post(
        f"/v1/events/{event_id}/replay", json={"subscription_ids": [everything["id"]]}
    )
    assert named.status_code == 201, named.text
    assert len(named.json()["delivery_ids"]) == 1

    for subscription_ids, expected in (
        ([routes_only["id"]], "does not match this order.created event"),
        (["sub_01J00000000000000000000000"], "does not exist"),
        ([everything["id"], "sub_nope"], "'sub_nope' does not exist"),
    ):
        refused = await client.post(
            f"/v1/events/{event_id}/replay", json={"subscription_ids": subscription_ids}
        )
        assert refused.status_code == 422, refused.text
        assert expected in refused.json()["error"]["message"]
    empty = await client.post(f"/v1/events/{event_id}/replay", json={"subscription_ids": []})
    assert empty.status_code == 422
    unknown = await client.post("/v1/events/evt_01J00000000000000000000000/replay")
    assert unknown.status_code == 404
    assert "no event" in unknown.json()["error"]["message"]

    # The original and both replays arrive, as the same event (one webhook-id).
    async with running_dispatcher(configured(settings), session_factory, module_database_url):
        received = await subscriber.wait_for(3, path="/all", within=20)
    assert {item.headers["webhook-id"] for item in received} == {event_id}
    assert len({item.headers["x-relay-delivery-id"] for item in received}) == 3
    assert subscriber.on("/routes") == []
    assert subscriber.on("/paused") == []


async def test_bulk_replay_filters_events_and_subscriptions(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    source = await create_routestripe_source(client)
    first = await subscribe(client, "http://127.0.0.1:9/first")
    second = await subscribe(client, "http://127.0.0.1:9/second", event_types=["order.*"])
    created = await post_events(client, batches=1, size=3)
    done_events = [visit_event(event="visit.status.changed", status=3) for _ in range(2)]
    posted = await post_routestripe(client, done_events)
    assert posted.status_code == 200, posted.text
    types = {
        (await client.get(f"/v1/events/{event_id}")).json()["type"]
        for event_id in posted.json()["event_ids"]
    }
    assert "order.created" not in types
    runner = JobRunner(configured(settings, job_batch_size=2), session_factory, worker="bulk")

    async def replay(body: dict[str, Any]) -> dict[str, Any]:
        accepted = await client.post("/v1/events/replay", json=body)
        assert accepted.status_code == 202, accepted.text
        assert await runner.run_next() is not None
        job: dict[str, Any] = (await client.get(f"/v1/jobs/{accepted.json()['job_id']}")).json()
        assert job["status"] == "succeeded", job
        return job

    by_type = await replay(
        {"since": since.isoformat(), "type": "order.created", "source": source["id"]}
    )
    assert (by_type["done"], by_type["total"]) == (3, 3)
    # Three events, each to both subscriptions, in two batches of at most two.
    assert by_type["result"] == {"events": 3, "deliveries": 6, "batches": 2}
    assert by_type["params"]["type"] == "order.created"

    to_one = await replay(
        {"since": since.isoformat(), "vendor": "routestripe", "subscription_ids": [first["id"]]}
    )
    assert to_one["result"] == {"events": 5, "deliveries": 5, "batches": 3}

    later = await replay({"since": datetime.now(UTC).isoformat()})
    assert (later["done"], later["total"]) == (0, 0)

    per_subscription = {
        row[0]: row[1]
        for row in await _rows(
            session_factory, "SELECT subscription_id, count(*) FROM deliveries GROUP BY 1"
        )
    }
    # Originals: 5 + 5; replays: 3 + 3, then 5 to the first only.
    assert per_subscription == {first["id"]: 13, second["id"]: 8}
    per_event = await _rows(
        session_factory,
        "SELECT event_id, count(*) FROM deliveries WHERE subscription_id = :id GROUP BY 1",
        id=second["id"],
    )
    assert {event_id: n for event_id, n in per_event if event_id in created} == {
        event_id: 2 for event_id in created
    }

    listed = await client.get("/v1/jobs", params={"kind": "replay", "limit": 2})
    assert listed.status_code == 200
    assert [job["id"] for job in listed.json()["data"]] == [later["id"], to_one["id"]]
    assert listed.json()["next_cursor"] == to_one["id"]


async def _rows(
    session_factory: async_sessionmaker[AsyncSession], sql: str, **params: Any
) -> list[tuple[Any, ...]]:
    async with session_factory() as session:
        return [tuple(row) for row in await session.execute(text(sql), params)]


async def test_bad_replay_and_recover_requests_say_what_to_fix(client: httpx.AsyncClient) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, "http://127.0.0.1:9/hook")
    now = datetime.now(UTC)
    since = (now - timedelta(hours=1)).isoformat()

    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/v1/events/replay", {}, 422, "since"),
        ("/v1/events/replay", {"since": since, "until": since}, 422, "must be later than since"),
        ("/v1/events/replay", {"since": since, "vendor": "fedex"}, 422, "unknown vendor 'fedex'"),
        ("/v1/events/replay", {"since": since, "type": "order.eaten"}, 422, "unknown event type"),
        ("/v1/events/replay", {"since": since, "source": "src_nope"}, 422, "no source"),
        ("/v1/events/replay", {"since": "yesterday"}, 422, "since"),
        ("/v1/events/replay", {"since": since, "colour": "red"}, 422, "colour"),
        (
            "/v1/events/replay",
            {"since": since, "subscription_ids": ["sub_nope"]},
            422,
            "'sub_nope' does not exist",
        ),
        ("/v1/subscriptions/sub_nope/recover", {"since": since}, 404, "no subscription"),
        (f"/v1/subscriptions/{subscription['id']}/recover", {}, 422, "since"),
        (
            f"/v1/subscriptions/{subscription['id']}/recover",
            {"since": now.isoformat(), "until": since},
            422,
            "must be later than since",
        ),
        (
            f"/v1/subscriptions/{subscription['id']}/recover",
            {"since": since, "status": "succeeded"},
            422,
            "status",
        ),
    ]
    for path, body, status, message in cases:
        response = await client.post(path, json=body)
        assert response.status_code == status, (path, body, response.text)
        assert message in response.json()["error"]["message"], (body, response.text)

    assert (await client.get("/v1/jobs/job_nope")).status_code == 404
    assert (await client.get("/v1/jobs", params={"status": "done"})).status_code == 422
    # Nothing bad was queued.
    assert (await client.get("/v1/jobs")).json()["data"] == []


async def test_recover_refuses_a_disabled_subscription(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    subscription = await subscribe(client, "http://127.0.0.1:9/hook")
    async with session_factory() as session:
        await session.execute(
            text("UPDATE subscriptions SET state = 'disabled', state_reason = 'answered 410'")
        )
        await session.commit()

    refused = await client.post(
        f"/v1/subscriptions/{subscription['id']}/recover",
        json={"since": datetime.now(UTC).isoformat()},
    )

    assert refused.status_code == 409
    assert "answered 410" in refused.json()["error"]["message"]
    assert 'PATCH {"active": true}' in refused.json()["error"]["message"]
