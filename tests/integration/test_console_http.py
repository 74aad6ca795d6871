"""The console's guard, cookies and headers at the HTTP level (the browser tests in
tests/browser drive the same pages through Chromium)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from html import unescape

import httpx
import orjson
import pytest
from fastapi.routing import APIRoute
from pydantic import SecretStr

from relay.console import router as console_router
from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    relay_client,
    visit_event,
)

# Every console route but the sign-in form: derived from the router, so a new page is
# guarded (and tested) without anyone remembering to list it.
GUARDED = sorted(
    (method, route.path)
    for route in console_router.routes
    if isinstance(route, APIRoute) and route.path != "/console/login"
    for method in route.methods
    if method != "HEAD"
)
_PARAM = re.compile(r"\{[^}]+\}")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


async def _sign_in(http: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await http.get("/console/login")
    return await http.post("/console/login", data={"token": token, "csrf": _csrf(form.text)})


async def test_every_page_needs_a_session_and_the_assets_do_not(
    client: httpx.AsyncClient,
) -> None:
    client.headers.pop("Authorization")
    assert len(GUARDED) >= 30
    for method, template in GUARDED:
        path = _PARAM.sub("x_01JQ2V9N4P5Q6R7S8T9V0W1X2Y", template)
        answer = await client.request(method, path)
        assert answer.status_code == 303, (method, path)
        assert answer.headers["location"] == "/console/login"
    # A bearer token is for the API: it opens no console page.
    assert (await client.get("/console", headers=ADMIN)).status_code == 303
    css = await client.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert (await client.get("/console/static/console.js")).status_code == 200


async def test_the_session_cookie_is_httponly_strict_and_lasts_the_configured_ttl(
    client: httpx.AsyncClient,
) -> None:
    client.headers.pop("Authorization")
    signed_in = await _sign_in(client, ADMIN_TOKEN)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/console"
    cookie = next(
        value
        for value in signed_in.headers.get_list("set-cookie")
        if value.startswith("relay_console=")
    )
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=strict"
    assert attributes["path"].strip() == "Path=/console"
    assert attributes["max-age"].strip() == f"Max-Age={8 * 3600}"
    assert "secure" not in attributes, "plain http: a Secure cookie would never come back"
    page = await client.get("/console")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["cache-control"] == "no-store"


async def test_over_https_the_cookie_is_secure(
    settings: Settings, module_database_url: str
) -> None:
    from relay.app import create_app

    app = create_app(settings, database_url=module_database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://relay.test"
        ) as http,
    ):
        signed_in = await _sign_in(http, ADMIN_TOKEN)
        assert signed_in.status_code == 303
        cookie = next(
            value
            for value in signed_in.headers.get_list("set-cookie")
            if value.startswith("relay_console=")
        )
        assert "secure" in cookie.lower()


async def test_a_session_ends_after_its_ttl(settings: Settings, module_database_url: str) -> None:
    short = settings.model_copy(update={"console_session_ttl": timedelta(seconds=1)})
    async with relay_client(short, module_database_url) as http:
        await _sign_in(http, ADMIN_TOKEN)
        assert (await http.get("/console")).status_code == 200
        await asyncio.sleep(2.2)
        expired = await http.get("/console")
        assert expired.status_code == 303
        assert expired.headers["location"] == "/console/login"


async def test_changing_the_admin_token_ends_every_session(
    settings: Settings, module_database_url: str
) -> None:
    async with relay_client(settings, module_database_url) as http:
        await _sign_in(http, ADMIN_TOKEN)
        assert (await http.get("/console")).status_code == 200
        cookies = http.cookies
    changed = settings.model_copy(update={"admin_token": SecretStr("a-new-admin-token-9876543210")})
    async with relay_client(changed, module_database_url) as http:
        http.cookies = cookies
        assert (await http.get("/console")).status_code == 303


async def test_a_wrong_token_is_answered_on_the_form(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    refused = await _sign_in(client, "not-a-token")
    assert refused.status_code == 401
    assert "not RELAY_ADMIN_TOKEN nor a known API key" in refused.text
    assert 'name="token"' in refused.text
    assert "relay_console" not in refused.cookies


@pytest.mark.parametrize("scope", ["read", "ops"])
async def test_the_server_refuses_what_a_scope_does_not_allow_whatever_the_page_shows(
    client: httpx.AsyncClient, scope: str
) -> None:
    key = (await client.post("/v1/api-keys", json={"name": scope, "scope": scope})).json()
    created = await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/x"})
    subscription_id = created.json()["id"]
    client.headers.pop("Authorization")
    await _sign_in(client, key["key"])
    page = await client.get(f"/console/subscriptions/{subscription_id}")
    token = _csrf(page.text)
    paused = await client.post(
        f"/console/subscriptions/{subscription_id}/pause", data={"csrf": token}
    )
    assert paused.status_code == 403
    assert f"needs the 'admin' scope; you signed in with the '{scope}' scope" in unescape(
        paused.text
    )
    still = await client.get(f"/v1/subscriptions/{subscription_id}", headers=ADMIN)
    assert still.json()["active"] is True
    if scope == "read":
        retried = await client.post(
            "/console/deliveries/dlv_01JQ2V9N4P5Q6R7S8T9V0W1X2Y/retry", data={"csrf": token}
        )
        assert retried.status_code == 403


async def test_the_console_can_be_switched_off(
    settings: Settings, module_database_url: str
) -> None:
    off = settings.model_copy(update={"console_enabled": False})
    async with relay_client(off, module_database_url) as http:
        assert (await http.get("/console")).status_code == 404
        assert (await http.get("/console/login")).status_code == 404
        assert (await http.get("/console/static/console.css")).status_code == 404


async def test_an_unknown_id_is_a_page_saying_so(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    await _sign_in(client, ADMIN_TOKEN)
    missing = await client.get("/console/deliveries/dlv_01JQ2V9N4P5Q6R7S8T9V0W1X2Y")
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]
    assert "no delivery with id" in missing.text
    bad_filter = await client.get("/console/deliveries?status=lost")
    assert bad_filter.status_code == 422
    assert "status: use one of pending, succeeded, failed" in bad_filter.text


async def test_v1_events_by_subject_and_by_data_containment(client: httpx.AsyncClient) -> None:
    await create_routestripe_source(client)
    late, on_time = visit_event(visit_id=31337, status=4), visit_event(visit_id=4242, status=2)
    assert (await post_routestripe(client, [late, on_time])).status_code == 200

    by_subject = (await client.get("/v1/events", params={"subject_id": "31337"})).json()["data"]
    assert [event["subject"]["id"] for event in by_subject] == ["31337"]

    data = by_subject[0]["data"]
    key, value = next((k, v) for k, v in data.items() if isinstance(v, str | int))
    found = await client.get("/v1/events", params={"data": orjson.dumps({key: value}).decode()})
    assert by_subject[0]["id"] in [event["id"] for event in found.json()["data"]]
    none = await client.get("/v1/events", params={"data": '{"no such field": 1}'})
    assert none.json()["data"] == []

    for bad in ("{not json", "[1, 2]"):
        refused = await client.get("/v1/events", params={"data": bad})
        assert refused.status_code == 422
        assert refused.json()["error"]["message"].startswith("data: ")
