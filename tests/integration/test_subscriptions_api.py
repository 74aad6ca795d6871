"""The subscriptions admin API: validation, secrets shown once, matching on save."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.subscriptions.models import Subscription
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    running_dispatcher,
    visit_event,
)
from tests.support.subscriber import Subscriber


async def test_create_shows_the_secret_once_then_masks_it(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/subscriptions",
        json={"url": "https://example.com/hooks", "event_types": ["route.*", "order.completed"]},
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("sub_")
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert body["state"] == "active"
    assert body["max_concurrency"] == 10
    shown = await client.get(f"/v1/subscriptions/{body['id']}")
    listed = await client.get("/v1/subscriptions")
    assert secret not in shown.text
    assert secret not in listed.text
    assert shown.json()["secret"].startswith("whsec_")


async def test_header_values_are_shown_once_then_masked_for_every_scope_and_kept_on_patch(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    module_database_url: str,
    subscriber: Subscriber,
) -> None:
    # A credential under a name that does not look like one, and a short plain value.
    headers = {
        "Authorization": "Bearer subscriber-token-9876",
        "X-Partner-Cred": "partner-api-key-5555",
        "X-Tenant": "acme",
    }
    created = await client.post(
        "/v1/subscriptions", json={"url": subscriber.url("/in"), "headers": headers}
    )
    assert created.status_code == 201, created.text
    assert created.json()["headers"] == headers
    subscription_id = created.json()["id"]

    masked = {
        "Authorization": "********9876",
        "X-Partner-Cred": "********5555",
        "X-Tenant": "********",
    }
    for scope in ("read", "ops", "admin"):
        key = await client.post("/v1/api-keys", json={"name": scope, "scope": scope})
        auth = {"Authorization": f"Bearer {key.json()['key']}"}
        shown = await client.get(f"/v1/subscriptions/{subscription_id}", headers=auth)
        assert shown.json()["headers"] == masked, scope
        listed = await client.get("/v1/subscriptions", headers=auth)
        assert "partner-api-key" not in listed.text
        assert "acme" not in listed.text

    # What GET showed, sent back with one change: no value is replaced by its mask.
    patched = await client.patch(
        f"/v1/subscriptions/{subscription_id}",
        json={"headers": {**masked, "X-Tenant": "globex"}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["headers"] == {**masked, "X-Tenant": "********"}
    async with session_factory() as session:
        stored = await session.scalar(
            select(Subscription.headers).where(Subscription.id == subscription_id)
        )
    assert stored == {**headers, "X-Tenant": "globex"}

    # The subscriber gets the values; the attempt log shows none of them.
    await create_routestripe_source(client)
    assert (await post_routestripe(client, [visit_event()])).status_code == 200
    fast = settings.model_copy(update={"dispatcher_poll_interval": 0.2, "shutdown_grace": 1.0})
    async with running_dispatcher(fast, session_factory, module_database_url):
        [request] = await subscriber.wait_for(1, within=20)
    assert request.headers["x-partner-cred"] == "partner-api-key-5555"
    deliveries = await client.get("/v1/deliveries", params={"subscription_id": subscription_id})
    [summary] = deliveries.json()["data"]
    detail = await client.get(f"/v1/deliveries/{summary['id']}")
    [attempt] = detail.json()["attempts"]
    logged = {name.lower(): value for name, value in attempt["request_headers"].items()}
    assert logged["x-partner-cred"] == logged["x-tenant"] == "[redacted]"
    assert "partner-api-key" not in detail.text
    assert "globex" not in detail.text

    replaced = await client.patch(
        f"/v1/subscriptions/{subscription_id}",
        json={"headers": {"X-Partner-Cred": "a-new-partner-key-0000"}},
    )
    assert replaced.json()["headers"] == {"X-Partner-Cred": "********0000"}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "/relative/path"}, "http:// or https://"),
        ({"url": "https://user:pw@example.com/x"}, "credentials"),
        ({"url": "https://example.com/x#frag"}, "fragment"),
        ({"url": "not a url at all"}, "url"),
        ({"event_types": []}, "event_types"),
        ({"event_types": ["Route.Started"]}, "event_types"),
        ({"event_types": ["route*"]}, "event_types"),
        ({"vendors": ["fedex"]}, "unknown vendor"),
        ({"filter": {"data.status": {"$regex": "x"}}}, "$regex"),
        ({"filter": {"data.status": {"$in": "done"}}}, "$in"),
        ({"headers": {"webhook-signature": "x"}}, "set by the relay"),
        ({"headers": {"X-Ok": "a\r\nb"}}, "line breaks"),
        ({"retry_schedule": [0]}, "retry_schedule"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
async def test_invalid_subscriptions_are_422_with_a_reason(
    client: httpx.AsyncClient, fields: dict[str, object], fragment: str
) -> None:
    payload: dict[str, object] = {"url": "https://example.com/hooks", **fields}

    response = await client.post("/v1/subscriptions", json=payload)

    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]["message"]


async def test_patch_validates_and_delete_hides(client: httpx.AsyncClient) -> None:
    created = (await client.post("/v1/subscriptions", json={"url": "https://a.example/h"})).json()
    path = f"/v1/subscriptions/{created['id']}"

    bad = await client.patch(path, json={"url": "gopher://x"})
    good = await client.patch(path, json={"event_types": ["order.*"], "rate_limit_per_second": 5})
    cleared = await client.patch(path, json={"rate_limit_per_second": None})

    assert bad.status_code == 422
    assert good.status_code == 200
    assert good.json()["event_types"] == ["order.*"]
    assert good.json()["rate_limit_per_second"] == 5
    assert cleared.json()["rate_limit_per_second"] is None
    assert (await client.delete(path)).status_code == 204
    assert (await client.get(path)).status_code == 404
    assert (await client.delete(path)).status_code == 404
    assert created["id"] not in (await client.get("/v1/subscriptions")).text


async def test_liveness_says_what_the_subscription_does_in_the_api_and_in_stats(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    created = (await client.post("/v1/subscriptions", json={"url": "https://l.example/h"})).json()
    path = f"/v1/subscriptions/{created['id']}"

    async def liveness_after(**columns: object) -> tuple[str, str]:
        async with session_factory() as session:
            row = await session.get(Subscription, created["id"])
            assert row is not None
            for name, value in columns.items():
                setattr(row, name, value)
            await session.commit()
        shown = (await client.get(path)).json()["liveness"]
        stats = (await client.get("/v1/stats")).json()["subscriptions"]
        [in_stats] = [item for item in stats if item["subscription_id"] == created["id"]]
        return shown, in_stats["liveness"]

    assert created["liveness"] == "active"
    assert (await client.patch(path, json={"active": False})).json()["liveness"] == "paused"
    # A paused subscription whose breaker is open is paused: resuming is what is needed.
    assert await liveness_after(state="degraded") == ("paused", "paused")
    assert await liveness_after(active=True) == ("degraded", "degraded")
    assert await liveness_after(state="disabled", active=False) == ("disabled", "disabled")
    assert await liveness_after(state="active", active=True) == ("active", "active")


async def test_deliveries_are_written_only_for_matching_subscriptions(
    client: httpx.AsyncClient,
) -> None:
    source = await create_routestripe_source(client)
    wanted = {
        "all": {"event_types": ["*"]},
        "orders": {"event_types": ["order.*"]},
        "completed": {"event_types": ["order.completed"]},
        "routes": {"event_types": ["route.*"]},
        "bringg_only": {"vendors": ["bringg"]},
        "this_source": {"source_ids": [source["id"]]},
        "other_source": {"source_ids": ["src_01JAAAAAAAAAAAAAAAAAAAAAAA"]},
        "done_filter": {"filter": {"data.status": {"$in": ["done", "completed"]}}},
        "failed_filter": {"filter": {"data.status": "failed"}},
        "paused": {"active": False},
    }
    ids = {}
    for name, fields in wanted.items():
        created = await client.post(
            "/v1/subscriptions",
            json={"url": f"https://{name.replace('_', '-')}.example/h", **fields},
        )
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]

    posted = await post_routestripe(client, [visit_event(status=4, event="visit.status.changed")])
    assert posted.status_code == 200

    [event_id] = posted.json()["event_ids"]
    event = (await client.get(f"/v1/events/{event_id}")).json()
    assert event["type"] == "order.completed"
    deliveries = (await client.get("/v1/deliveries", params={"event_id": event_id})).json()["data"]
    got = {name for name, sid in ids.items() if sid in {d["subscription_id"] for d in deliveries}}
    assert event["data"]["status"] == "done"
    # A paused subscription's deliveries are written too; they wait for its resume.
    assert got == {"all", "orders", "completed", "this_source", "done_filter", "paused"}
    assert {d["status"] for d in deliveries} == {"pending"}


async def test_duplicates_and_rejections_create_no_deliveries(client: httpx.AsyncClient) -> None:
    await create_routestripe_source(client)
    await client.post("/v1/subscriptions", json={"url": "https://a.example/h"})
    event = visit_event()

    first = await post_routestripe(client, [event])
    again = await post_routestripe(client, [event])
    forged = await client.post(
        "/ingest/rs", content=b'{"event": "batch"}', headers={"X-Signature": "00" * 32}
    )

    assert first.json()["accepted"] == 1
    assert again.json()["duplicates"] == 1
    assert forged.status_code == 401
    assert len((await client.get("/v1/deliveries")).json()["data"]) == 1


async def test_unknown_ids_are_404(client: httpx.AsyncClient) -> None:
    missing = "sub_01JAAAAAAAAAAAAAAAAAAAAAAA"
    for method, path in [
        ("GET", f"/v1/subscriptions/{missing}"),
        ("PATCH", f"/v1/subscriptions/{missing}"),
        ("POST", f"/v1/subscriptions/{missing}/rotate-secret"),
        ("POST", f"/v1/subscriptions/{missing}/test"),
        ("GET", f"/v1/subscriptions/{missing}/attempts"),
        ("GET", "/v1/deliveries/dlv_01JAAAAAAAAAAAAAAAAAAAAAAA"),
    ]:
        response = await client.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
        assert "no " in response.json()["error"]["message"]
    bad_status = await client.get("/v1/deliveries", params={"status": "lost"})
    assert bad_status.status_code == 422
