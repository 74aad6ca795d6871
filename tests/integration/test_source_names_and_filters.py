"""Sources are named by id or slug everywhere, filters included; a filter that names nothing
that exists is a 422 saying so, not an empty list."""

from __future__ import annotations

import httpx

from tests.support.relay import create_routestripe_source, post_routestripe, visit_event


async def test_a_source_by_slug_in_paths_and_filters(client: httpx.AsyncClient) -> None:
    source = await create_routestripe_source(client, slug="routestripe-nl")
    assert (
        await post_routestripe(client, [visit_event()], slug="routestripe-nl")
    ).status_code == 200

    assert (await client.get("/v1/sources/routestripe-nl")).json()["id"] == source["id"]
    patched = await client.patch("/v1/sources/routestripe-nl", json={"description": "NL"})
    assert patched.json()["description"] == "NL"
    for path in ("/v1/events", "/v1/requests"):
        by_slug = (await client.get(path, params={"source": "routestripe-nl"})).json()["data"]
        by_id = (await client.get(path, params={"source": source["id"]})).json()["data"]
        assert len(by_slug) == 1
        assert by_slug == by_id
    subscription = await client.post(
        "/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/hook", "source_ids": ["routestripe-nl"]},
    )
    assert subscription.status_code == 201, subscription.text
    assert subscription.json()["source_ids"] == [source["id"]]
    job = await client.post(
        "/v1/events/replay", json={"since": "2000-01-01T00:00:00Z", "source": "routestripe-nl"}
    )
    assert job.status_code == 202, job.text
    assert job.json()["params"]["source"] == source["id"]


async def test_unknown_filters_are_a_422_that_says_which(client: httpx.AsyncClient) -> None:
    for params, named in (
        ({"vendor": "fedex"}, "vendor"),
        ({"type": "order.teleported"}, "type"),
        ({"source": "routigo-nl"}, "source"),
    ):
        answer = await client.get("/v1/events", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["error"]["message"].startswith(f"{named}: ")
    refused = await client.get("/v1/requests", params={"source": "nope"})
    assert refused.status_code == 422
    assert (await client.get("/v1/requests", params={"verdict": "maybe"})).status_code == 422
