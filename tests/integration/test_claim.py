"""The claim statement's share per subscription: its free slots and its rate tokens, across
workers."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.deliveries.repository import ClaimedDelivery, DeliveryRepository
from tests.support.relay import create_routestripe_source, post_routestripe, visit_event

LEASE = timedelta(seconds=60)


async def claim(
    session_factory: async_sessionmaker[AsyncSession], worker: str
) -> list[ClaimedDelivery]:
    async with session_factory() as session:
        claimed = await DeliveryRepository(session).claim(worker=worker, limit=100, lease=LEASE)
        await session.commit()
    return claimed


async def test_each_subscription_gets_its_free_slots_and_its_tokens_whoever_claims(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await create_routestripe_source(client)
    narrow = await client.post(
        "/v1/subscriptions", json={"url": "http://127.0.0.1:9/narrow", "max_concurrency": 4}
    )
    paced = await client.post(
        "/v1/subscriptions", json={"url": "http://127.0.0.1:9/paced", "rate_limit_per_second": 3}
    )
    wide = await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/wide"})
    ids = {
        name: answer.json()["id"]
        for name, answer in (("narrow", narrow), ("paced", paced), ("wide", wide))
    }
    assert (await post_routestripe(client, [visit_event() for _ in range(12)])).status_code == 200

    first = await claim(session_factory, "worker-a")
    taken = {
        name: sum(1 for item in first if item.subscription_id == id_) for name, id_ in ids.items()
    }
    # 4 slots; a bucket of 3 tokens; the default 10 slots.
    assert taken == {"narrow": 4, "paced": 3, "wide": 10}

    # Another worker at once: the slots are held and the tokens spent, whoever asks.
    second = await claim(session_factory, "worker-b")
    again = {
        name: sum(1 for item in second if item.subscription_id == id_) for name, id_ in ids.items()
    }
    assert again["narrow"] == 0
    assert again["wide"] == 0
    assert again["paced"] <= 1  # at most what 3/s refilled since the first claim
