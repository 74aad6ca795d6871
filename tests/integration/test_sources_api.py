from __future__ import annotations

import httpx
import pytest

HMAC_SECRET = "rs-secret-value-0123456789abcdef"


async def create_source(client: httpx.AsyncClient, **overrides: object) -> httpx.Response:
    payload: dict[str, object] = {
        "slug": "routestripe-nl",
        "vendor": "routestripe",
        "verification": {"type": "hmac", "secret": HMAC_SECRET},
        "description": "RouteStripe NL account",
    }
    payload.update(overrides)
    return await client.post("/v1/sources", json=payload)


async def test_create_source_returns_ingest_path_and_masks_secret(
    client: httpx.AsyncClient,
) -> None:
    response = await create_source(client)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"].startswith("src_")
    assert body["slug"] == "routestripe-nl"
    assert body["vendor"] == "routestripe"
    assert body["ingest_path"] == "/ingest/routestripe-nl"
    assert body["active"] is True
    assert body["created_at"]
    assert HMAC_SECRET not in response.text
    assert body["verification"]["current"]["type"] == "hmac"
    assert body["verification"]["current"]["header"] == "X-Signature"


async def test_vendor_default_verification_type_is_used(client: httpx.AsyncClient) -> None:
    response = await create_source(
        client,
        slug="ants",
        vendor="antsroute",
        verification={"username": "ants", "password": "correct-horse-battery"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["verification"]["current"]["type"] == "basic"
    assert "correct-horse-battery" not in response.text


async def test_admin_api_requires_the_bearer_token(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/sources", headers={"Authorization": ""})
    wrong = await client.get("/v1/sources", headers={"Authorization": "Bearer nope"})

    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "Bearer" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("overrides", "status", "fragment"),
    [
        ({"vendor": "fedex"}, 422, "unknown vendor 'fedex'"),
        ({"slug": "Bad Slug!"}, 422, "slug 'Bad Slug!' is not valid"),
        ({"slug": "-leading"}, 422, "is not valid"),
        ({"verification": {"type": "hmac"}}, 422, "secret"),
        ({"verification": {"type": "carrier-pigeon", "secret": "x"}}, 422, "verification"),
        ({"unexpected": 1}, 422, "unexpected"),
        ({"mapping": {"type_map": {"x": "Not A Type"}}}, 422, "is not a unified type"),
        ({"mapping": {"event_id_pointer": "task/id"}}, 422, "starts with '/'"),
    ],
)
async def test_invalid_sources_are_refused_with_a_reason(
    client: httpx.AsyncClient, overrides: dict[str, object], status: int, fragment: str
) -> None:
    response = await create_source(client, **overrides)

    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]


async def test_duplicate_slug_is_a_conflict(client: httpx.AsyncClient) -> None:
    assert (await create_source(client)).status_code == 201

    response = await create_source(client)

    assert response.status_code == 409
    assert "slug 'routestripe-nl' is taken" in response.json()["error"]["message"]


async def test_get_list_patch_delete(client: httpx.AsyncClient) -> None:
    created = (await create_source(client)).json()
    second = (await create_source(client, slug="second")).json()

    fetched = await client.get(f"/v1/sources/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["slug"] == "routestripe-nl"

    page = await client.get("/v1/sources", params={"limit": 1})
    assert page.status_code == 200
    assert [item["id"] for item in page.json()["data"]] == [second["id"]]
    rest = await client.get("/v1/sources", params={"cursor": page.json()["next_cursor"]})
    assert [item["id"] for item in rest.json()["data"]] == [created["id"]]

    patched = await client.patch(
        f"/v1/sources/{created['id']}", json={"active": False, "description": "paused"}
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is False
    assert patched.json()["description"] == "paused"

    assert (await client.delete(f"/v1/sources/{created['id']}")).status_code == 204
    assert (await client.get(f"/v1/sources/{created['id']}")).status_code == 404


async def test_unknown_source_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sources/src_01JAAAAAAAAAAAAAAAAAAAAAAA")

    assert response.status_code == 404
    assert "no source" in response.json()["error"]["message"]


async def test_bad_cursor_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/sources", params={"cursor": "'; drop table"})

    assert response.status_code == 422
    assert "cursor" in response.json()["error"]["message"]
