"""The circuit breaker: a failing subscription is held back, probed, and reopened or disabled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.outbox.health import BreakerPolicy, SubscriptionHealth
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    running_dispatcher,
    visit_event,
)
from tests.support.subscriber import Answer, Subscriber, eventually


async def subscription_state(client: httpx.AsyncClient, subscription_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/subscriptions/{subscription_id}")).json()
    return body


async def test_breaker_opens_holds_probes_and_closes_on_success(
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    subscriber.script("/down", then=Answer(500))
    created = await client.post(
        "/v1/subscriptions",
        json={"url": subscriber.url("/down"), "retry_schedule": [1] * 20},
    )
    subscription = created.json()
    config = settings.model_copy(
        update={
            "breaker_failures": 3,
            "breaker_probe_interval": timedelta(seconds=2),
            "dispatcher_poll_interval": 0.5,
        }
    )

    async with running_dispatcher(config, session_factory, module_database_url):
        posted = await post_routestripe(client, [visit_event() for _ in range(3)])
        assert posted.status_code == 200
        await eventually(lambda: _state_is(client, subscription["id"], "degraded"), within=20)
        degraded = await subscription_state(client, subscription["id"])
        assert degraded["consecutive_failures"] >= 3
        assert "circuit breaker open" in degraded["state_reason"]
        attempts_when_opened = len(subscriber.on("/down"))

        subscriber.script("/down", then=Answer(200))
        await eventually(lambda: _state_is(client, subscription["id"], "active"), within=30)
        await eventually(lambda: _succeeded(client, subscription["id"]), within=20)

    # While open, deliveries were held: far fewer attempts than three deliveries retrying
    # every second would have made.
    assert len(subscriber.on("/down")) - attempts_when_opened <= 6
    assert len({r.headers["webhook-id"] for r in subscriber.on("/down")}) == 3


async def _succeeded(client: httpx.AsyncClient, subscription_id: str) -> bool:
    page = await client.get(
        "/v1/deliveries", params={"subscription_id": subscription_id, "status": "succeeded"}
    )
    return len(page.json()["data"]) == 3


async def _state_is(client: httpx.AsyncClient, subscription_id: str, state: str) -> bool:
    return (await subscription_state(client, subscription_id))["state"] == state


async def test_failing_past_disable_after_disables_and_fails_pending(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    created = await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/x"})
    subscription_id = created.json()["id"]
    assert (await post_routestripe(client, [visit_event()])).status_code == 200
    now = datetime.now(UTC)
    policy = BreakerPolicy(
        failures=20, probe_interval=timedelta(minutes=1), disable_after=timedelta(days=5)
    )
    async with session_factory() as session:
        await session.execute(
            text("UPDATE subscriptions SET failing_since = :since, consecutive_failures = 7"),
            {"since": now - timedelta(days=6)},
        )
        await SubscriptionHealth(session, policy).record_failures(
            {subscription_id: (1, "503 Service Unavailable")}, now=now
        )
        await session.commit()

    state = await subscription_state(client, subscription_id)
    assert state["state"] == "disabled"
    assert "failing with no success since" in state["state_reason"]
    deliveries = (
        await client.get("/v1/deliveries", params={"subscription_id": subscription_id})
    ).json()["data"]
    assert [d["status"] for d in deliveries] == ["failed"]
    assert "disabled" in deliveries[0]["last_error"]

    reenabled = await client.patch(f"/v1/subscriptions/{subscription_id}", json={"active": True})
    assert reenabled.json()["state"] == "active"
    assert reenabled.json()["consecutive_failures"] == 0
