"""The admin API reads its body as JSON whatever the Content-Type says (`curl -d` sends
application/x-www-form-urlencoded), and a body that is not JSON is a 422 that says so."""

from __future__ import annotations

import httpx
import pytest

SOURCE = (
    b'{"slug": "form-labelled", "vendor": "routestripe",'
    b' "verification": {"type": "hmac", "secret": "s3cret-s3cret"}}'
)


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
async def test_a_json_body_is_read_whatever_its_content_type(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/v1/sources", content=SOURCE, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["slug"] == "form-labelled"


async def test_a_body_that_is_not_json_is_a_422_that_says_so(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/sources",
        content=b"slug=x&vendor=bringg",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "not JSON" in message
    assert "dictionary" not in message
