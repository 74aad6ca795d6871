"""The feed behind `relay tail`: GET /v1/activity and its filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.support.relay import create_routestripe_source, post_routestripe, visit_event


async def subscribe(client: httpx.AsyncClient, **fields: object) -> str:
    response = await client.post(
        "/v1/subscriptions", json={"url": "http://127.0.0.1:9/x", **fields}
    )
    assert response.status_code == 201, response.text
    subscription_id: str = response.json()["id"]
    return subscription_id


async def test_a_subscription_filter_keeps_only_the_events_it_was_sent(
    client: httpx.AsyncClient,
) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    await create_routestripe_source(client)
    created_only = await subscribe(client, event_types=["order.created"])
    await subscribe(client, event_types=["order.updated"])
    [created] = (await post_routestripe(client, [visit_event()])).json()["event_ids"]
    [updated] = (await post_routestripe(client, [visit_event(event="visit.updated")])).json()[
        "event_ids"
    ]

    everything = await client.get("/v1/activity", params={"since": since})
    assert [event["id"] for event in everything.json()["events"]] == [created, updated]

    filtered = await client.get(
        "/v1/activity", params={"since": since, "subscription_id": created_only}
    )
    assert filtered.status_code == 200, filtered.text
    assert [event["id"] for event in filtered.json()["events"]] == [created]
    assert filtered.json()["attempts"] == []


async def test_the_earliest_since_is_an_answer_not_a_500(client: httpx.AsyncClient) -> None:
    # Found by schemathesis: a moment with no moment five minutes before it.
    for since in ("0001-01-01T00:01:01Z", "1969-12-31T23:59:59Z"):
        response = await client.get("/v1/activity", params={"since": since})
        assert response.status_code == 200, (since, response.text)
        assert response.json()["events"] == []
