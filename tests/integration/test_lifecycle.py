"""The delivery lifecycle in the cases where it used to go wrong: outcomes racing a delete or a
410, the breaker's probe timing, fixing a failing subscription, retrying now, pausing, and
switching `ordered` on a backlog. Real subscribers on 127.0.0.1, real dispatchers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.outbox.states import Liveness, SubscriptionState, liveness, liveness_sql
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    running_dispatcher,
    subscribe,
    visit_event,
)
from tests.support.subscriber import Answer, Subscriber, eventually


def quick(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "dispatcher_poll_interval": 0.5,
        "delivery_timeout": 10.0,
        "shutdown_grace": 2.0,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


async def deliveries_of(client: httpx.AsyncClient, subscription_id: str) -> list[dict[str, Any]]:
    page = await client.get("/v1/deliveries", params={"subscription_id": subscription_id})
    assert page.status_code == 200, page.text
    found: list[dict[str, Any]] = []
    for summary in page.json()["data"]:
        found.append((await client.get(f"/v1/deliveries/{summary['id']}")).json())
    return found


async def statuses(client: httpx.AsyncClient, subscription_id: str) -> list[str]:
    return sorted(d["status"] for d in await deliveries_of(client, subscription_id))


def assert_attempts_agree(delivery: dict[str, Any]) -> None:
    """The attempt log and the delivery's status tell the same story."""
    last = delivery["attempts"][-1]
    assert last["outcome"] == delivery["status"], delivery


async def test_a_2xx_in_flight_when_the_subscription_is_deleted_ends_succeeded(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/slow", Answer(200, delay=2.0))
    subscription = await subscribe(client, subscriber.url("/slow"))
    async with running_dispatcher(quick(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        await subscriber.wait_for(1, path="/slow")
        # Deleted while the subscriber is still answering.
        deleted = await client.delete(f"/v1/subscriptions/{subscription['id']}")
        assert deleted.status_code == 204
        await eventually(lambda: _all_have(client, subscription["id"], {"succeeded"}), within=15)
    [delivery] = await deliveries_of(client, subscription["id"])
    assert delivery["status"] == "succeeded"
    assert_attempts_agree(delivery)
    # The deleted subscription's attempts stay readable, like its deliveries.
    attempts = await client.get(f"/v1/subscriptions/{subscription['id']}/attempts")
    assert attempts.status_code == 200, attempts.text
    assert [a["outcome"] for a in attempts.json()["data"]] == ["succeeded"]


async def test_a_2xx_in_flight_when_another_410_disables_the_subscription_ends_succeeded(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    # The first request is answered 200 after 4 s; the second, sent meanwhile, gets 410.
    subscriber.script("/gone", Answer(200, delay=4.0), Answer(410))
    subscription = await subscribe(client, subscriber.url("/gone"))
    async with running_dispatcher(quick(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, [visit_event(), visit_event()])).status_code == 200
        await subscriber.wait_for(2, path="/gone", within=15)
        await eventually(
            lambda: _all_have(client, subscription["id"], {"succeeded", "failed"}), within=15
        )
    found = await deliveries_of(client, subscription["id"])
    assert sorted(d["status"] for d in found) == ["failed", "succeeded"]
    for delivery in found:
        assert_attempts_agree(delivery)
    state = (await client.get(f"/v1/subscriptions/{subscription['id']}")).json()
    assert state["state"] == "disabled"


async def _all_have(client: httpx.AsyncClient, subscription_id: str, wanted: set[str]) -> bool:
    found = await statuses(client, subscription_id)
    return bool(found) and set(found) == wanted


def _breaker(settings: Settings, probe_seconds: float, **overrides: Any) -> Settings:
    return quick(
        settings,
        breaker_failures=2,
        breaker_probe_interval=timedelta(seconds=probe_seconds),
        **overrides,
    )


async def _degrade(client: httpx.AsyncClient, subscriber: Subscriber, path: str) -> dict[str, Any]:
    """A subscription whose subscriber answers 500 to three deliveries, once its breaker is
    open (a dispatcher must be running)."""
    subscriber.script(path, then=Answer(500))
    subscription = await subscribe(client, subscriber.url(path), retry_schedule=[1] * 20)
    posted = await post_routestripe(client, [visit_event() for _ in range(3)])
    assert posted.status_code == 200

    async def degraded() -> bool:
        return await _state(client, subscription["id"]) == "degraded"

    await eventually(degraded, within=20)
    return subscription


async def _state(client: httpx.AsyncClient, subscription_id: str) -> str:
    body = (await client.get(f"/v1/subscriptions/{subscription_id}")).json()
    state: str = body["state"]
    return state


async def test_a_degraded_subscription_is_probed_once_per_probe_interval(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    interval = 2.0
    config = _breaker(settings, interval)
    async with running_dispatcher(config, session_factory, module_database_url):
        await _degrade(client, subscriber, "/probed")
        opened = len(subscriber.on("/probed"))
        # Four probe intervals: four probes, not two (every 2x) and not a stream of retries.
        await subscriber.wait_for(opened + 4, path="/probed", within=4 * interval + 6)
        arrivals = [item.at for item in subscriber.on("/probed")[opened:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps, arrivals
    for gap in gaps:
        assert interval * 0.8 <= gap <= interval * 1.5, gaps


async def test_fixing_a_degraded_subscriptions_url_sends_what_it_held_at_once(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    # The next probe is an hour away: only the fix can explain a prompt delivery.
    config = _breaker(settings, 3600)
    async with running_dispatcher(config, session_factory, module_database_url):
        subscription = await _degrade(client, subscriber, "/broken")
        fixed = await client.patch(
            f"/v1/subscriptions/{subscription['id']}", json={"url": subscriber.url("/fixed")}
        )
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["state"] == "active"
        assert fixed.json()["consecutive_failures"] == 0
        await subscriber.wait_for(3, path="/fixed", within=10)
    assert await statuses(client, subscription["id"]) == ["succeeded"] * 3


async def test_recover_on_a_degraded_subscription_probes_at_once(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    config = _breaker(settings, 3600, job_poll_interval=0.2)
    async with running_dispatcher(config, session_factory, module_database_url):
        subscription = await _degrade(client, subscriber, "/recovering")
        subscriber.script("/recovering", then=Answer(200))
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        started = await client.post(
            f"/v1/subscriptions/{subscription['id']}/recover", json={"since": since}
        )
        assert started.status_code == 202, started.text

        async def all_succeeded() -> bool:
            return await statuses(client, subscription["id"]) == ["succeeded"] * 3

        await eventually(all_succeeded, within=15)
    assert await _state(client, subscription["id"]) == "active"


async def test_retry_and_recover_make_a_waiting_delivery_due_now(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/later", Answer(503), Answer(503), Answer(503), then=Answer(200))
    # The retry after a failure is an hour away.
    subscription = await subscribe(client, subscriber.url("/later"), retry_schedule=[3600])
    config = quick(settings, job_poll_interval=0.2)
    async with running_dispatcher(config, session_factory, module_database_url):
        assert (
            await post_routestripe(client, [visit_event() for _ in range(3)])
        ).status_code == 200
        await subscriber.wait_for(3, path="/later")

        async def waiting() -> bool:
            found = await deliveries_of(client, subscription["id"])
            return len(found) == 3 and all(len(d["attempts"]) == 1 for d in found)

        await eventually(waiting, within=10)
        [first, *rest] = await deliveries_of(client, subscription["id"])
        retried = await client.post(f"/v1/deliveries/{first['id']}/retry")
        assert retried.status_code == 200, retried.text
        await subscriber.wait_for(4, path="/later", within=10)

        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        recovered = await client.post(
            f"/v1/subscriptions/{subscription['id']}/recover",
            json={"since": since, "status": "pending"},
        )
        assert recovered.status_code == 202, recovered.text
        await subscriber.wait_for(6, path="/later", within=10)

        async def all_succeeded() -> bool:
            return await statuses(client, subscription["id"]) == ["succeeded"] * 3

        await eventually(all_succeeded, within=10)
    job = (await client.get(f"/v1/jobs/{recovered.json()['job_id']}")).json()
    assert job["status"] == "succeeded"
    assert job["result"]["requeued"] == len(rest)


async def test_events_posted_while_paused_are_delivered_on_resume_in_order(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, subscriber.url("/paused"), ordered=True)
    path = f"/v1/subscriptions/{subscription['id']}"
    assert (await client.patch(path, json={"active": False})).status_code == 200
    events = [visit_event(visit_id=77, event="visit.status.changed", second=s) for s in range(5)]
    async with running_dispatcher(quick(settings), session_factory, module_database_url):
        for event in events:
            assert (await post_routestripe(client, [event])).status_code == 200
        assert await statuses(client, subscription["id"]) == ["pending"] * 5
        # Nothing goes out while paused, however long it lasts.
        with pytest.raises(TimeoutError):
            await subscriber.wait_for(1, path="/paused", within=2)
        assert (await client.patch(path, json={"active": True})).status_code == 200
        received = await subscriber.wait_for(5, path="/paused", within=15)
    sent = [item.headers["x-relay-event-type"] for item in received]
    assert len(sent) == 5
    stamps = [_timestamp(item.body) for item in received]
    assert stamps == sorted(stamps)


def _timestamp(body: bytes) -> str:
    stamp: str = orjson.loads(body)["timestamp"]
    return stamp


async def test_switching_ordered_on_applies_to_the_pending_backlog(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    # The first delivery fails once; ordered, the others wait for its retry.
    subscriber.script("/orders", Answer(500), then=Answer(200))
    subscription = await subscribe(client, subscriber.url("/orders"), retry_schedule=[1])
    path = f"/v1/subscriptions/{subscription['id']}"
    assert (await client.patch(path, json={"active": False})).status_code == 200
    events = [visit_event(visit_id=91, event="visit.status.changed", second=s) for s in range(4)]
    for event in events:
        assert (await post_routestripe(client, [event])).status_code == 200
    switched = await client.patch(path, json={"ordered": True, "active": True})
    assert switched.status_code == 200, switched.text
    async with running_dispatcher(quick(settings), session_factory, module_database_url):
        received = await subscriber.wait_for(5, path="/orders", within=20)
    stamps = [_timestamp(item.body) for item in received]
    # The head twice (500, then 200), then the rest in order: none overtook the failing head.
    assert stamps == [stamps[0], *sorted(set(stamps))]


async def test_switching_ordered_off_frees_a_backlog_blocked_behind_a_failing_head(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/blocked", Answer(500), then=Answer(200))
    # The head's retry is an hour away: ordered, the rest would wait an hour.
    subscription = await subscribe(
        client, subscriber.url("/blocked"), ordered=True, retry_schedule=[3600]
    )
    events = [visit_event(visit_id=92, event="visit.status.changed", second=s) for s in range(4)]
    async with running_dispatcher(quick(settings), session_factory, module_database_url):
        for event in events:
            assert (await post_routestripe(client, [event])).status_code == 200
        await subscriber.wait_for(1, path="/blocked")
        with pytest.raises(TimeoutError):
            await subscriber.wait_for(2, path="/blocked", within=2)
        unordered = await client.patch(
            f"/v1/subscriptions/{subscription['id']}", json={"ordered": False}
        )
        assert unordered.status_code == 200, unordered.text
        await subscriber.wait_for(4, path="/blocked", within=10)


async def test_liveness_in_sql_and_in_python_agree(
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    cases = [
        (deleted, state, active)
        for deleted in (None, datetime(2026, 1, 1, tzinfo=UTC))
        for state in SubscriptionState
        for active in (True, False)
    ]
    expression = liveness_sql("s")
    query = text(
        f"SELECT {expression} FROM (SELECT CAST(:deleted AS timestamptz) AS deleted_at, "  # noqa: S608
        "CAST(:state AS text) AS state, CAST(:active AS boolean) AS active) AS s"
    )
    async with session_factory() as session:
        for deleted, state, active in cases:
            in_sql = await session.scalar(
                query, {"deleted": deleted, "state": state.value, "active": active}
            )
            in_python = liveness(deleted_at=deleted, state=state, active=active)
            assert Liveness(in_sql) is in_python, (deleted, state, active)
    # Every liveness is reachable, so the table is really exercised.
    assert {liveness(deleted_at=d, state=s, active=a) for d, s, a in cases} == set(Liveness)


@pytest.mark.parametrize(
    ("change", "constraint"),
    [
        ("status = 'lost', completed_at = now()", "status"),
        ("locked_by = 'w'", "lease_whole"),
        (
            "status = 'succeeded', completed_at = now(), locked_by = 'w', locked_until = now()",
            "lease_pending",
        ),
        ("held = true, locked_by = 'w', locked_until = now()", "held_waiting"),
        ("parked = true, held = true", "parked_waiting"),
        ("status = 'failed'", "completed_when_finished"),
        ("completed_at = now()", "completed_when_finished"),
        ("attempts = -1", "attempts_counted"),
    ],
)
async def test_the_database_refuses_a_delivery_in_an_impossible_state(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    change: str,
    constraint: str,
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, "http://127.0.0.1:9/hook")
    assert (await post_routestripe(client, [visit_event()])).status_code == 200
    async with session_factory() as session:
        with pytest.raises(IntegrityError, match=f"ck_deliveries_{constraint}"):
            await session.execute(text(f"UPDATE deliveries SET {change}"))  # noqa: S608
