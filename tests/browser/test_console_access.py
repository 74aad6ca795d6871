"""Who may use the console, in a real browser: sign-in, sign-out, a wrong token, scopes,
revocation."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.async_api import expect

from tests.conftest import ADMIN_TOKEN
from tests.support.console import ConsolePage, create_key, create_source, post_webhook
from tests.support.relay import visit_event
from tests.support.subscriber import Answer, Subscriber, eventually

ACTION_BUTTONS = (
    "Retry",
    "Replay",
    "Recover",
    "Pause",
    "Resume",
    "Send test",
    "Rotate secret",
    "Save",
    "Delete",
)


async def test_sign_in_sign_out_and_a_wrong_token(console: Callable[..., Any]) -> None:
    tab: ConsolePage = await console()
    await tab.goto("/console/deliveries")
    assert tab.page.url.endswith("/console/login"), "no session: the guard sends to the form"
    fields = tab.page.locator("form input:not([type=hidden])")
    assert await fields.count() == 1
    assert await fields.get_attribute("name") == "token"

    await tab.page.fill("input[name=token]", "rk_0123456789ab_not-a-real-key")
    await tab.page.click("button[type=submit]")
    assert "not RELAY_ADMIN_TOKEN nor a known API key" in await tab.page.inner_text("#login-error")
    assert tab.page.url.endswith("/console/login")
    # The refused sign-in is answered 401, which Chromium logs; nothing else may be logged.
    assert [e for e in tab.errors if "401" not in e] == []
    tab.errors.clear()

    await tab.sign_in(ADMIN_TOKEN)
    assert await tab.page.inner_text("h1") == "Overview"
    cookie = next(c for c in await tab.context.cookies() if c["name"] == "relay_console")
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"

    await tab.page.get_by_role("button", name="Sign out").click()
    await tab.page.wait_for_url("**/console/login")
    await tab.goto("/console")
    assert tab.page.url.endswith("/console/login"), "signed out: the session is gone"
    assert tab.errors == []


async def test_a_read_key_sees_everything_and_no_action_button(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    subscriber.script("/hook", Answer(500))
    source = await create_source(api)
    created = await api.post(
        "/v1/subscriptions", json={"url": subscriber.url("/hook"), "retry_schedule": [1]}
    )
    subscription = created.json()
    await post_webhook(api, [visit_event()])
    deliveries = await _deliveries(api)
    delivery = deliveries[0]
    key = await create_key(api, "read")

    tab: ConsolePage = await console()
    await tab.sign_in(key["key"])
    event = (await api.get("/v1/events")).json()["data"][0]
    for path in (
        f"/console/deliveries/{delivery['id']}",
        f"/console/subscriptions/{subscription['id']}",
        f"/console/events/{event['id']}",
        f"/console/sources/{source['id']}",
    ):
        await tab.goto(path)
        shown = source["slug"] if path.startswith("/console/sources/") else subscription["id"]
        assert shown in await tab.page.content()
        for name in ACTION_BUTTONS:
            assert (
                await tab.page.get_by_role("button", name=name, include_hidden=True).count() == 0
            ), (path, name)
        assert (
            await tab.page.locator(
                "form[action*='/retry'], form[action*='/recover'], form[action*='/delete'], "
                "form[action*='/edit']"
            ).count()
            == 0
        )
    assert tab.errors == []


async def test_an_ops_key_sees_retry_and_recover_but_not_pause(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    source = await create_source(api)
    created = await api.post("/v1/subscriptions", json={"url": subscriber.url("/hook")})
    subscription = created.json()
    key = await create_key(api, "ops")
    tab: ConsolePage = await console()
    await tab.sign_in(key["key"])
    await tab.goto(f"/console/subscriptions/{subscription['id']}")
    assert await tab.page.get_by_role("button", name="Send test").count() == 1
    assert await tab.page.get_by_role("button", name="Recover", include_hidden=True).count() == 1
    assert await tab.page.get_by_role("button", name="Pause", include_hidden=True).count() == 0
    assert await tab.page.get_by_role("button", name="Rotate secret").count() == 0
    for path in (
        f"/console/subscriptions/{subscription['id']}",
        f"/console/sources/{source['id']}",
    ):
        await tab.goto(path)
        for name in ("Delete", "Save"):
            buttons = tab.page.get_by_role("button", name=name, include_hidden=True)
            assert await buttons.count() == 0, (path, name)


async def test_a_revoked_keys_session_ends_at_its_next_request(
    api: httpx.AsyncClient, console: Callable[..., Any]
) -> None:
    key = await create_key(api, "ops")
    tab: ConsolePage = await console()
    await tab.sign_in(key["key"])
    await tab.goto("/console/subscriptions")
    assert await tab.page.inner_text("h1") == "Subscriptions"

    assert (await api.delete(f"/v1/api-keys/{key['id']}")).status_code == 204
    await tab.goto("/console/subscriptions")
    assert tab.page.url.endswith("/console/login")


async def _deliveries(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def some() -> bool:
        found[:] = (await api.get("/v1/deliveries")).json()["data"]
        return bool(found)

    await eventually(some, within=20)
    return found


async def test_admin_creates_a_key_that_signs_in_and_revokes_it(
    console: Callable[..., Any],
) -> None:
    admin: ConsolePage = await console()
    await admin.sign_in(ADMIN_TOKEN)
    await admin.page.get_by_role("link", name="Keys").click()
    await admin.page.get_by_text("Create a key").click()
    await admin.page.fill("input[name=name]", "night shift")
    await admin.page.select_option("select[name=scope]", "read")
    await admin.page.get_by_role("button", name="Create key").click()
    await expect(admin.page.locator("h1")).to_have_text("New API key")
    copy = admin.page.get_by_role("button", name=re.compile(r"^Copy rk_"))
    key = await copy.get_attribute("data-copy")
    assert key is not None

    operator: ConsolePage = await console()
    await operator.sign_in(key)
    assert await operator.page.get_by_role("link", name="Keys").count() == 0
    await operator.goto("/console/keys")
    assert "needs the 'admin' scope" in await operator.page.inner_text("main")

    await admin.goto("/console/keys")
    await admin.page.get_by_role("button", name="Revoke night shift").click()
    await expect(admin.page.locator(".notice")).to_contain_text("revoked")
    await operator.goto("/console")
    assert operator.page.url.endswith("/console/login")
    assert admin.errors == []
