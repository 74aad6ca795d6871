"""Fan-out end to end: a vendor posts, a real subscriber on 127.0.0.1 receives, signed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError

from relay.core.settings import Settings
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    running_dispatcher,
    subscribe,
    two_dispatchers,
    visit_event,
)
from tests.support.subscriber import Answer, Subscriber, eventually


def fast(settings: Settings, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "dispatcher_poll_interval": 30.0,
        "delivery_timeout": 5.0,
        "shutdown_grace": 2.0,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


async def delivery_of(client: httpx.AsyncClient, subscription_id: str) -> dict[str, Any]:
    page = await client.get("/v1/deliveries", params={"subscription_id": subscription_id})
    assert page.status_code == 200, page.text
    [summary] = page.json()["data"]
    detail = await client.get(f"/v1/deliveries/{summary['id']}")
    body: dict[str, Any] = detail.json()
    return body


async def test_subscriber_gets_the_signed_envelope_woken_by_notify(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, subscriber.url(), event_types=["order.*"])
    secret = subscription["secret"]

    # Polling every 30 s: only the NOTIFY sent with the ingest commit can deliver it in time.
    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        await asyncio.sleep(0.2)
        posted = await post_routestripe(client, [visit_event()])
        sent_at = time.monotonic()
        assert posted.status_code == 200, posted.text
        [received] = await subscriber.wait_for(1, within=10)
    latency_ms = (received.at - sent_at) * 1000

    [event_id] = posted.json()["event_ids"]
    stored = await client.get(f"/v1/events/{event_id}")
    assert received.body == stored.content
    assert orjson.loads(received.body)["type"] == "order.created"
    headers = received.headers
    assert headers["webhook-id"] == event_id
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("relay/")
    assert headers["x-relay-event-type"] == "order.created"
    assert headers["x-relay-attempt"] == "1"
    assert headers["x-relay-delivery-id"].startswith("dlv_")
    assert StandardWebhook(secret).verify(received.body, headers)["id"] == event_id
    SvixWebhook(secret).verify(received.body, headers)  # raises unless genuine
    # The promise; a poll (30 s here) could never meet it, only the NOTIFY wake-up.
    assert latency_ms < 100, f"ingest 200 -> subscriber received: {latency_ms:.1f} ms"


async def test_500_twice_then_200_is_three_attempts_with_one_webhook_id(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/flaky", Answer(500), Answer(500), then=Answer(200))
    subscription = await subscribe(client, subscriber.url("/flaky"), retry_schedule=[1, 1, 1])

    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        received = await subscriber.wait_for(3, path="/flaky")
        await eventually(lambda: _status_is(client, subscription["id"], "succeeded"), within=10)

    assert len({item.headers["webhook-id"] for item in received}) == 1
    assert [item.headers["x-relay-attempt"] for item in received] == ["1", "2", "3"]
    # Each attempt is signed afresh, and a subscriber's library accepts every one of them.
    timestamps = [int(item.headers["webhook-timestamp"]) for item in received]
    assert timestamps == sorted(timestamps)
    assert timestamps[-1] > timestamps[0]
    for item in received:
        StandardWebhook(subscription["secret"]).verify(item.body, item.headers)
    delivery = await delivery_of(client, subscription["id"])
    assert delivery["status"] == "succeeded"
    assert delivery["attempt_count"] == 3
    attempts = delivery["attempts"]
    assert [a["response_status"] for a in attempts] == [500, 500, 200]
    assert [a["outcome"] for a in attempts] == ["pending", "pending", "succeeded"]
    assert "retry" in attempts[0]["decision"]
    assert attempts[0]["request_headers"]["webhook-signature"].startswith("v1,")
    assert subscription["secret"] not in orjson.dumps(attempts).decode()

    log = f"/v1/subscriptions/{subscription['id']}/attempts"
    every = (await client.get(log)).json()["data"]
    errors = (await client.get(log, params={"errors_only": "true"})).json()["data"]
    assert len(every) == 3
    assert [attempt["response_status"] for attempt in errors] == [500, 500]


async def _status_is(client: httpx.AsyncClient, subscription_id: str, status: str) -> bool:
    page = await client.get(
        "/v1/deliveries", params={"subscription_id": subscription_id, "status": status}
    )
    return bool(page.json()["data"])


async def test_404_fails_at_once_and_410_disables_the_subscription(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/missing", then=Answer(404))
    subscriber.script("/gone", then=Answer(410))
    missing = await subscribe(client, subscriber.url("/missing"))
    gone = await subscribe(client, subscriber.url("/gone"))

    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        await eventually(lambda: _status_is(client, missing["id"], "failed"), within=10)
        await eventually(lambda: _status_is(client, gone["id"], "failed"), within=10)
        # The disabled subscription gets no new deliveries.
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        await eventually(lambda: len(subscriber.on("/missing")) == 2, within=10)

    failed = await delivery_of_first(client, missing["id"])
    assert failed["attempt_count"] == 1
    assert "404" in failed["last_error"]
    assert len(subscriber.on("/gone")) == 1
    state = (await client.get(f"/v1/subscriptions/{gone['id']}")).json()
    assert state["state"] == "disabled"
    assert "410" in state["state_reason"]
    gone_deliveries = await client.get("/v1/deliveries", params={"subscription_id": gone["id"]})
    assert len(gone_deliveries.json()["data"]) == 1


async def test_deleting_a_subscription_fails_its_pending_deliveries_and_stops_new_ones(
    client: httpx.AsyncClient, subscriber: Subscriber
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, subscriber.url("/deleted"))
    # No dispatcher runs: the delivery stays pending until the subscription goes.
    assert (await post_routestripe(client, [visit_event()])).status_code == 200
    assert await _status_is(client, subscription["id"], "pending")

    deleted = await client.delete(f"/v1/subscriptions/{subscription['id']}")
    assert deleted.status_code == 204, deleted.text

    failed = await delivery_of(client, subscription["id"])
    assert failed["status"] == "failed"
    assert "deleted" in failed["last_error"]
    assert (await client.get(f"/v1/subscriptions/{subscription['id']}")).status_code == 404
    assert (await post_routestripe(client, [visit_event()])).status_code == 200
    page = await client.get("/v1/deliveries", params={"subscription_id": subscription["id"]})
    assert len(page.json()["data"]) == 1


async def delivery_of_first(client: httpx.AsyncClient, subscription_id: str) -> dict[str, Any]:
    page = await client.get("/v1/deliveries", params={"subscription_id": subscription_id})
    oldest = page.json()["data"][-1]
    body: dict[str, Any] = (await client.get(f"/v1/deliveries/{oldest['id']}")).json()
    return body


async def test_a_hanging_subscriber_does_not_slow_the_others(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/hang", then=Answer(200, delay=600))
    await subscribe(client, subscriber.url("/hang"))
    await subscribe(client, subscriber.url("/fast"))
    batches = [[visit_event() for _ in range(50)] for _ in range(10)]
    for batch in batches:
        assert (await post_routestripe(client, batch)).status_code == 200

    # Every request to /hang is still hanging when /fast has all 500. The attempt timeout is
    # far longer than 500 deliveries take even on a loaded machine, so that holds however slow.
    async with running_dispatcher(
        fast(settings, delivery_timeout=300.0, shutdown_grace=0.5),
        session_factory,
        module_database_url,
    ):
        await subscriber.wait_for(500, path="/fast", within=240)
        hanging = len(subscriber.on("/hang"))

    assert len({item.headers["webhook-id"] for item in subscriber.on("/fast")}) == 500
    # The hanging one is held to its max_concurrency (10) requests at once.
    assert 1 <= hanging <= 10


async def test_two_dispatchers_share_the_queue_without_double_delivery(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, subscriber.url(), max_concurrency=50)
    for _ in range(6):
        batch = [visit_event() for _ in range(50)]
        assert (await post_routestripe(client, batch)).status_code == 200
    config = fast(settings, dispatcher_batch_size=20)

    async with two_dispatchers(config, session_factory, module_database_url) as (one, two):
        await subscriber.wait_for(300, within=30)
        await eventually(lambda: one.delivered + two.delivered == 300, within=10)

    ids = [item.headers["webhook-id"] for item in subscriber.received]
    assert len(ids) == len(set(ids)) == 300
    assert one.delivered > 0
    assert two.delivered > 0


async def test_rotated_secret_signs_with_both_for_the_overlap(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, subscriber.url())
    old_secret = subscription["secret"]
    rotated = await client.post(f"/v1/subscriptions/{subscription['id']}/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret
    assert rotated.json()["previous_secret_expires_at"] is not None

    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        [received] = await subscriber.wait_for(1, within=10)

    assert len(received.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, new_secret):
        StandardWebhook(secret).verify(received.body, received.headers)
        SvixWebhook(secret).verify(received.body, received.headers)
    with pytest.raises(WebhookVerificationError):
        SvixWebhook("whsec_" + "A" * 43 + "=").verify(received.body, received.headers)
    shown = (await client.get(f"/v1/subscriptions/{subscription['id']}")).json()
    assert new_secret not in orjson.dumps(shown).decode()


async def test_ordered_subscription_waits_for_the_earlier_event_of_a_subject(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    # The first attempt fails; an unordered subscription would deliver the later event first.
    subscriber.script("/ordered", Answer(503), then=Answer(200))
    await subscribe(client, subscriber.url("/ordered"), ordered=True, retry_schedule=[1])
    first = visit_event(visit_id=42, status=3, event="visit.status.changed", second=1)
    second = visit_event(visit_id=42, status=4, event="visit.status.changed", second=2)

    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, [first])).status_code == 200
        await subscriber.wait_for(1, path="/ordered", within=10)
        assert (await post_routestripe(client, [second])).status_code == 200
        received = await subscriber.wait_for(3, path="/ordered", within=15)

    types = [orjson.loads(item.body)["type"] for item in received]
    assert types == ["order.scheduled", "order.scheduled", "order.completed"]


async def test_what_a_finished_delivery_held_back_goes_out_without_waiting_for_the_poll(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/ordered", then=Answer(200, delay=0.3))
    await subscribe(client, subscriber.url("/ordered"), ordered=True)
    # One webhook, so no later ingest wakes the dispatcher: the second event of the subject
    # waits for the first, then for the claim its end starts, not for the 30 s poll.
    events = [
        visit_event(visit_id=7, status=3, event="visit.status.changed", second=1),
        visit_event(visit_id=7, status=4, event="visit.status.changed", second=2),
    ]

    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, events)).status_code == 200
        received = await subscriber.wait_for(2, path="/ordered", within=10)

    types = [orjson.loads(item.body)["type"] for item in received]
    assert types == ["order.scheduled", "order.completed"]


async def test_subscription_test_endpoint_reports_the_outcome(
    client: httpx.AsyncClient, subscriber: Subscriber
) -> None:
    subscriber.script("/down", then=Answer(503, body=b"maintenance"))
    good = await subscribe(client, subscriber.url("/up"))
    bad = await subscribe(client, subscriber.url("/down"))

    ok = (await client.post(f"/v1/subscriptions/{good['id']}/test")).json()
    failed = (await client.post(f"/v1/subscriptions/{bad['id']}/test")).json()

    assert ok["succeeded"] is True
    assert ok["status_code"] == 200
    [ping] = subscriber.on("/up")
    assert orjson.loads(ping.body)["type"] == "relay.ping"
    StandardWebhook(good["secret"]).verify(ping.body, ping.headers)
    assert failed["succeeded"] is False
    assert failed["status_code"] == 503
    assert failed["response_excerpt"] == "maintenance"


async def test_graceful_shutdown_records_in_flight_and_releases_the_rest(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/slow", then=Answer(200, delay=0.5))
    subscriber.script("/stuck", then=Answer(200, delay=30))
    slow = await subscribe(client, subscriber.url("/slow"))
    stuck = await subscribe(client, subscriber.url("/stuck"))

    async with running_dispatcher(
        fast(settings, shutdown_grace=1.5), session_factory, module_database_url
    ):
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        await subscriber.wait_for(1, path="/stuck", within=10)
        await subscriber.wait_for(1, path="/slow", within=10)

    finished = await delivery_of(client, slow["id"])
    assert finished["status"] == "succeeded"
    released = await delivery_of(client, stuck["id"])
    assert released["status"] == "pending"
    assert released["attempt_count"] == 0
    async with session_factory() as session:
        locked = await session.scalar(
            text("SELECT count(*) FROM deliveries WHERE locked_by IS NOT NULL")
        )
    assert locked == 0


async def test_retry_endpoint_requeues_a_failed_delivery(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/later", Answer(404), then=Answer(200))
    subscription = await subscribe(client, subscriber.url("/later"))

    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        await eventually(lambda: _status_is(client, subscription["id"], "failed"), within=10)
        failed = await delivery_of(client, subscription["id"])
        again = await client.post(f"/v1/deliveries/{failed['id']}/retry")
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "pending"
        await eventually(lambda: _status_is(client, subscription["id"], "succeeded"), within=10)

    done = await delivery_of(client, subscription["id"])
    assert [a["response_status"] for a in done["attempts"]] == [404, 200]
    # With no dispatcher running, a resent delivery stays pending; retrying it again is
    # harmless: it is one delivery, due now.
    assert (await client.post(f"/v1/deliveries/{failed['id']}/retry")).status_code == 200
    twice = await client.post(f"/v1/deliveries/{failed['id']}/retry")
    assert twice.status_code == 200, twice.text
    assert twice.json()["status"] == "pending"
    assert twice.json()["id"] == failed["id"]
    missing = await client.post("/v1/deliveries/dlv_01JAAAAAAAAAAAAAAAAAAAAAAA/retry")
    assert missing.status_code == 404


async def test_a_paused_subscription_holds_its_deliveries_until_resumed(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscription = await subscribe(client, subscriber.url("/paused"))
    assert (await post_routestripe(client, [visit_event()])).status_code == 200
    paused = await client.patch(f"/v1/subscriptions/{subscription['id']}", json={"active": False})
    assert paused.json()["active"] is False

    async with running_dispatcher(
        fast(settings, dispatcher_poll_interval=0.2), session_factory, module_database_url
    ):
        await eventually(lambda: _held(session_factory), within=10)
        assert subscriber.on("/paused") == []
        resumed = await client.patch(
            f"/v1/subscriptions/{subscription['id']}", json={"active": True}
        )
        assert resumed.status_code == 200
        await subscriber.wait_for(1, path="/paused", within=10)

    assert (await delivery_of(client, subscription["id"]))["status"] == "succeeded"


async def _held(session_factory: async_sessionmaker[AsyncSession]) -> bool:
    async with session_factory() as session:
        held = await session.scalar(text("SELECT count(*) FROM deliveries WHERE held"))
    return held == 1


async def _listener_pids(session_factory: async_sessionmaker[AsyncSession]) -> list[int]:
    async with session_factory() as session:
        rows = await session.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
            )
        )
        return [int(pid) for pid in rows.scalars()]


async def test_the_listener_reconnects_when_its_connection_is_killed(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, subscriber.url("/after-kill"))
    # Polling every 30 s: a delivery within seconds proves the NOTIFY reached a new LISTEN.
    async with running_dispatcher(fast(settings), session_factory, module_database_url):
        await eventually(lambda: _listener_pids(session_factory), within=10)
        [killed] = await _listener_pids(session_factory)
        async with session_factory() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
        await eventually(lambda: _has_new_listener(session_factory, than=killed), within=15)
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        await subscriber.wait_for(1, path="/after-kill", within=5)


async def _has_new_listener(
    session_factory: async_sessionmaker[AsyncSession], *, than: int
) -> bool:
    pids = await _listener_pids(session_factory)
    return bool(pids) and than not in pids


async def test_a_subscription_rate_limit_spaces_its_deliveries(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, subscriber.url("/paced"), rate_limit_per_second=2)
    async with running_dispatcher(
        fast(settings, dispatcher_poll_interval=0.2), session_factory, module_database_url
    ):
        assert (
            await post_routestripe(client, [visit_event() for _ in range(6)])
        ).status_code == 200
        received = await subscriber.wait_for(6, path="/paced", within=30)
    arrivals = sorted(item.at for item in received)
    # A bucket of 2 tokens refilled at 2/s: the last 4 take at least 2 s. Never faster; a
    # slow machine only spreads them more.
    assert arrivals[-1] - arrivals[0] >= 1.6, arrivals
    assert len({item.headers["webhook-id"] for item in received}) == 6


def _most_at_once(arrivals: list[float], busy_for: float) -> int:
    """The most requests a subscriber was busy with at one moment."""
    edges = sorted([(at, 1) for at in arrivals] + [(at + busy_for, -1) for at in arrivals])
    busy = most = 0
    for _, step in edges:
        busy += step
        most = max(most, busy)
    return most


async def test_max_concurrency_holds_across_dispatchers_and_a_backlog_does_not_block_others(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/narrow", then=Answer(200, delay=0.5))
    await subscribe(
        client, subscriber.url("/narrow"), max_concurrency=2, event_types=["order.created"]
    )
    await subscribe(client, subscriber.url("/other"), event_types=["order.updated"])
    assert (await post_routestripe(client, [visit_event() for _ in range(8)])).status_code == 200
    config = fast(settings, dispatcher_poll_interval=0.2)
    async with two_dispatchers(config, session_factory, module_database_url):
        await asyncio.sleep(0.3)
        # Posted behind the narrow subscription's backlog, for a subscription with room.
        updated = [visit_event(event="visit.delivery_note.changed") for _ in range(3)]
        assert (await post_routestripe(client, updated)).status_code == 200
        others = await subscriber.wait_for(3, path="/other", within=10)
        narrow = await subscriber.wait_for(8, path="/narrow", within=30)

    # Each request keeps the subscriber busy for at least 0.5 s: never more than 2 at once,
    # though two dispatchers each had room for 100.
    assert _most_at_once([item.at for item in narrow], busy_for=0.49) == 2
    assert len({item.headers["webhook-id"] for item in narrow}) == 8
    # The other subscription did not wait for the narrow one's backlog to drain.
    assert max(item.at for item in others) < max(item.at for item in narrow)


async def test_a_rate_limit_holds_across_dispatchers(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    await subscribe(client, subscriber.url("/paced"), rate_limit_per_second=2)
    assert (await post_routestripe(client, [visit_event() for _ in range(8)])).status_code == 200
    config = fast(settings, dispatcher_poll_interval=0.2)
    async with two_dispatchers(config, session_factory, module_database_url):
        received = await subscriber.wait_for(8, path="/paced", within=30)
    arrivals = sorted(item.at for item in received)
    # One bucket of 2 tokens at 2/s for both: the last 6 take at least 3 s. Two buckets, one
    # per worker, would have sent them all in about 1 s.
    assert arrivals[-1] - arrivals[0] >= 2.6, arrivals
    # The bucket's 2 and one refill in any window of just under a second, and one more for the
    # network's jitter; a bucket per worker would have let 6 through in the first one.
    assert all(
        sum(1 for other in arrivals if start <= other < start + 0.9) <= 4 for start in arrivals
    ), arrivals
