"""`POST /v1/sources/{source_id}/test`: the relay sends a source a webhook as its vendor would,
signed with the source's own credentials, through the real ingest: verified, stored, fanned out
and written to the request log like any other."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relay.vendors.registry import VENDORS
from tests.support.relay import subscribe

# Each verification scheme, on a vendor that can use it.
SCHEMES: list[tuple[str, dict[str, Any]]] = [
    ("routestripe", {"type": "hmac", "secret": "hmac-secret-0123456789"}),
    (
        "routestripe",
        {
            "type": "hmac",
            "secret": "hmac-secret-0123456789",
            "algorithm": "sha512",
            "encoding": "base64",
            "prefix": "sha512=",
            "header": "X-Hub-Signature",
            "partner_id": "partner-7",
        },
    ),
    ("antsroute", {"type": "basic", "username": "ants", "password": "basic-password-1"}),
    ("routigo", {"type": "header_token", "token": "routigo-token-0123456789"}),
    ("routigo", {"type": "query_token", "param": "key", "token": "routigo-token-0123456789"}),
    (
        "bringg",
        {
            "type": "jwt",
            "secret": "jwt-secret-0123456789-0123456789-0123456789-0123456789-0123",
            "algorithms": ["HS384"],
            "header": "X-Bringg-Token",
            "audience": "relay",
            "issuer": "bringg",
        },
    ),
    (
        "bringg",
        {
            "type": "oauth2",
            "client_id": "bringg-client",
            "client_secret": "oauth-secret-0123456789-0123456789",
        },
    ),
    ("bringg", {"type": "none"}),
]


async def _source(client: httpx.AsyncClient, slug: str, vendor: str, verification: Any) -> str:
    response = await client.post(
        "/v1/sources", json={"slug": slug, "vendor": vendor, "verification": verification}
    )
    assert response.status_code == 201, response.text
    source_id: str = response.json()["id"]
    return source_id


@pytest.mark.parametrize(("vendor", "verification"), SCHEMES)
async def test_a_test_webhook_passes_the_real_verification_and_is_stored_as_an_order(
    client: httpx.AsyncClient, vendor: str, verification: dict[str, Any]
) -> None:
    slug = f"t-{vendor}-{verification['type'].replace('_', '-')}-{len(verification)}"
    source_id = await _source(client, slug, vendor, verification)

    first = await client.post(f"/v1/sources/{slug}/test")
    second = await client.post(f"/v1/sources/{source_id}/test", json={})

    for answer in (first, second):
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["status_code"], result["verdict"], result["accepted"]) == (
            200,
            "accepted",
            1,
        ), result
        [event_id] = result["event_ids"]
        event = (await client.get(f"/v1/events/{event_id}")).json()
        assert event["type"] in set(VENDORS[vendor].event_types.values())
        assert event["type"].startswith("order."), event["type"]
        assert event["source"]["id"] == source_id
        logged = (await client.get(f"/v1/requests/{result['request_id']}")).json()
        assert logged["verdict"] == "accepted"
        assert logged["source_id"] == source_id
        assert logged["remote_addr"] == "relay-test"
    # Every test is a new event, never a duplicate of the one before.
    assert first.json()["event_ids"] != second.json()["event_ids"]


async def test_the_secret_is_not_written_to_the_request_log(client: httpx.AsyncClient) -> None:
    await _source(client, "t-secret", "antsroute", SCHEMES[2][1])
    result = (await client.post("/v1/sources/t-secret/test")).json()
    logged = await client.get(f"/v1/requests/{result['request_id']}")
    assert "basic-password-1" not in logged.text
    assert logged.json()["headers"]["authorization"] == "[redacted]"
    assert "YW50czpiYXNpYy1wYXNzd29yZC0x" not in logged.text  # base64 of ants:basic-password-1


async def test_a_test_webhook_is_delivered_to_matching_subscriptions(
    client: httpx.AsyncClient,
) -> None:
    source_id = await _source(client, "t-fanout", "routestripe", SCHEMES[0][1])
    orders = await subscribe(client, "https://orders.example.com/h", event_types=["order.*"])
    await subscribe(client, "https://routes.example.com/h", event_types=["route.*"])
    result = (await client.post(f"/v1/sources/{source_id}/test")).json()
    [event_id] = result["event_ids"]
    deliveries = (await client.get("/v1/deliveries", params={"event_id": event_id})).json()
    assert [item["subscription_id"] for item in deliveries["data"]] == [orders["id"]]


async def test_a_body_of_ones_own_is_signed_and_parsed_as_the_vendor_sends_it(
    client: httpx.AsyncClient,
) -> None:
    await _source(client, "t-body", "bringg", SCHEMES[3][1])
    body = {"webhook_type": "task_done", "id": 4411, "external_id": "o-4411", "status": 4}
    done = await client.post("/v1/sources/t-body/test", json={"body": body})
    not_bringg = await client.post("/v1/sources/t-body/test", json={"body": [1, 2]})

    assert done.status_code == 200, done.text
    [event_id] = done.json()["event_ids"]
    event = (await client.get(f"/v1/events/{event_id}")).json()
    assert event["type"] == "order.completed"
    assert event["raw"] == body
    # What the vendor would have got is in the answer; the call itself did what it was asked.
    assert not_bringg.status_code == 200
    assert not_bringg.json()["status_code"] == 400
    assert not_bringg.json()["verdict"] == "invalid"
    assert not_bringg.json()["reason"]


async def test_an_inactive_or_unknown_source_is_refused_with_what_to_do(
    client: httpx.AsyncClient,
) -> None:
    await _source(client, "t-off", "routestripe", SCHEMES[0][1])
    assert (await client.patch("/v1/sources/t-off", json={"active": False})).status_code == 200

    inactive = await client.post("/v1/sources/t-off/test")
    unknown = await client.post("/v1/sources/no-such-source/test")
    extra = await client.post("/v1/sources/t-off/test", json={"event": "x"})

    assert inactive.status_code == 409
    assert "relay sources update t-off --active" in inactive.json()["error"]["message"]
    assert unknown.status_code == 404
    assert extra.status_code == 422
