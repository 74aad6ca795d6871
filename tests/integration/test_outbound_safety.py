"""SSRF over real sockets: a subscriber on 127.0.0.1 is a loopback destination, refused unless
RELAY_ALLOWED_DESTINATION_NETWORKS opens 127.0.0.0/8 (the test settings do; `strict` does not)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    relay_client,
    running_dispatcher,
    visit_event,
)
from tests.support.subscriber import Answer, Subscriber, eventually


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "allowed_destination_networks": [],
            "dispatcher_poll_interval": 0.2,
            "shutdown_grace": 1.0,
        }
    )


@pytest.fixture
async def strict(
    strict_settings: Settings, module_database_url: str, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A second relay on the same database with the default policy (public addresses only)."""
    async with relay_client(strict_settings, module_database_url, admin_token=ADMIN_TOKEN) as http:
        yield http


async def _attempts(client: httpx.AsyncClient, subscription_id: str) -> list[dict[str, Any]]:
    page = await client.get("/v1/deliveries", params={"subscription_id": subscription_id})
    [summary] = page.json()["data"]
    detail = await client.get(f"/v1/deliveries/{summary['id']}")
    attempts: list[dict[str, Any]] = detail.json()["attempts"]
    return attempts


async def test_a_loopback_subscriber_is_refused_at_creation_and_on_update(
    strict: httpx.AsyncClient, client: httpx.AsyncClient, subscriber: Subscriber
) -> None:
    created = await strict.post("/v1/subscriptions", json={"url": subscriber.url()})
    assert created.status_code == 422, created.text
    message = created.json()["error"]["message"]
    assert message.startswith("url: destination 127.0.0.1 is a loopback address")
    assert "RELAY_ALLOWED_DESTINATION_NETWORKS (e.g. 127.0.0.0/8)" in message

    public = await strict.post("/v1/subscriptions", json={"url": "https://93.184.215.14/hook"})
    assert public.status_code == 201, public.text
    for url in (subscriber.url(), "http://169.254.169.254/latest/meta-data", "http://[::1]/"):
        patched = await strict.patch(f"/v1/subscriptions/{public.json()['id']}", json={"url": url})
        assert patched.status_code == 422, patched.text
        assert "RELAY_ALLOWED_DESTINATION_NETWORKS" in patched.json()["error"]["message"]
    unchanged = await strict.get(f"/v1/subscriptions/{public.json()['id']}")
    assert unchanged.json()["url"] == "https://93.184.215.14/hook"

    # Where 127.0.0.0/8 is allowed, the same URL is accepted.
    allowed = await client.post("/v1/subscriptions", json={"url": subscriber.url()})
    assert allowed.status_code == 201, allowed.text
    assert subscriber.received == []


async def test_the_check_at_send_time_blocks_without_connecting_and_allows_when_opened(
    strict: httpx.AsyncClient,
    client: httpx.AsyncClient,
    subscriber: Subscriber,
    settings: Settings,
    strict_settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
) -> None:
    await create_routestripe_source(client)
    # Created while 127.0.0.0/8 was allowed; the operator has since closed it.
    created = await client.post(
        "/v1/subscriptions", json={"url": subscriber.url(), "retry_schedule": [1, 1]}
    )
    subscription = created.json()
    assert (await post_routestripe(client, [visit_event()])).status_code == 200

    async with running_dispatcher(strict_settings, session_factory, module_database_url):
        await eventually(lambda: _attempts(client, subscription["id"]), within=20)
    [blocked] = await _attempts(client, subscription["id"])
    assert blocked["error_class"] == "destination_blocked"
    assert "127.0.0.1 is a loopback address" in blocked["error_message"]
    assert blocked["response_status"] is None
    assert subscriber.received == []

    tested = (await strict.post(f"/v1/subscriptions/{subscription['id']}/test")).json()
    assert tested["succeeded"] is False
    assert "loopback" in tested["error"]
    assert subscriber.received == []

    # Blocked attempts are retried on the schedule, so reopening the network lets it through.
    opened = settings.model_copy(update={"dispatcher_poll_interval": 0.2, "shutdown_grace": 1.0})
    async with running_dispatcher(opened, session_factory, module_database_url):
        await subscriber.wait_for(1, within=20)
    [request] = subscriber.received
    assert request.headers["x-relay-attempt"] == "2"


async def test_a_redirect_is_recorded_not_followed(
    client: httpx.AsyncClient, subscriber: Subscriber
) -> None:
    subscriber.script(
        "/moved", then=Answer(302, headers={"location": subscriber.url("/elsewhere")}, body=b"")
    )
    created = await client.post("/v1/subscriptions", json={"url": subscriber.url("/moved")})
    tested = (await client.post(f"/v1/subscriptions/{created.json()['id']}/test")).json()
    assert tested["status_code"] == 302
    assert tested["succeeded"] is False
    assert len(subscriber.on("/moved")) == 1
    assert subscriber.on("/elsewhere") == []
