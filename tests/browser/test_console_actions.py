"""What operators do in the console, in a real browser against a real relay and subscriber:
retry a failed delivery, recover a window, pause and resume; and what an attacker cannot do
(a payload's <script> stays text, a form without this session's token is refused)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.async_api import expect

from tests.conftest import ADMIN_TOKEN
from tests.support.console import ConsolePage, create_key, create_source, post_webhook
from tests.support.processes import RelayServer
from tests.support.relay import ROUTESTRIPE_SECRET, visit_event
from tests.support.subscriber import Answer, Subscriber, eventually


async def _statuses(api: httpx.AsyncClient) -> dict[str, str]:
    data = (await api.get("/v1/deliveries", params={"limit": 500})).json()["data"]
    return {row["id"]: row["status"] for row in data}


async def _all_failed(api: httpx.AsyncClient, count: int) -> list[str]:
    ids: list[str] = []

    async def done() -> bool:
        statuses = await _statuses(api)
        ids[:] = [i for i, status in statuses.items() if status == "failed"]
        return len(ids) == count

    await eventually(done, within=30)
    return ids


async def test_ops_retries_a_failed_delivery_and_sees_the_new_attempt_succeed(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    await create_source(api)
    await api.post(
        "/v1/subscriptions", json={"url": subscriber.url("/hook"), "retry_schedule": [1]}
    )
    subscriber.script(
        "/hook", Answer(503), Answer(503, body=b"down for maintenance"), then=Answer(200)
    )
    await post_webhook(api, [visit_event()])
    [delivery_id] = await _all_failed(api, 1)

    key = await create_key(api, "ops")
    tab: ConsolePage = await console()
    await tab.sign_in(key["key"])
    await tab.goto(f"/console/deliveries/{delivery_id}")
    attempts = tab.page.locator("li.attempt")
    await expect(attempts).to_have_count(2)
    assert "down for maintenance" in await attempts.nth(1).inner_text()

    await tab.page.get_by_role("button", name="Retry").click()
    await expect(tab.page.locator(".notice")).to_contain_text("Retry queued")
    # The page follows the pending delivery until the third attempt is in its timeline.
    await expect(attempts).to_have_count(3, timeout=20_000)
    await expect(attempts.nth(2)).to_contain_text("succeeded")
    await expect(attempts.nth(2)).to_contain_text("HTTP 200")
    await tab.screenshot("delivery-detail")
    assert (await _statuses(api))[delivery_id] == "succeeded"
    assert tab.errors == []


async def test_ops_recovers_a_window_and_the_progress_bar_reaches_100(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    subscriber.script("/down", then=Answer(500))
    await create_source(api)
    subscription = (
        await api.post(
            "/v1/subscriptions", json={"url": subscriber.url("/down"), "retry_schedule": [1]}
        )
    ).json()
    await post_webhook(api, [visit_event() for _ in range(5)])
    failed = await _all_failed(api, 5)
    subscriber.script("/down", then=Answer(200))

    key = await create_key(api, "ops")
    tab: ConsolePage = await console()
    await tab.sign_in(key["key"])
    await tab.goto(f"/console/subscriptions/{subscription['id']}")
    await tab.page.get_by_text("Recover a time window").click()
    await tab.page.get_by_role("button", name="Recover").click()
    await tab.page.wait_for_url(re.compile(r".*\?job=job_"))
    bar = tab.page.locator("progress[data-job]")
    await expect(bar).to_have_attribute("data-percent", "100", timeout=30_000)
    assert await bar.evaluate("bar => bar.value") == 100
    await expect(tab.page.locator("[data-job-status]")).to_contain_text("succeeded")
    await tab.screenshot("subscription-recover")

    async def delivered() -> bool:
        statuses = await _statuses(api)
        return all(statuses[i] == "succeeded" for i in failed)

    await eventually(delivered, within=30)
    assert tab.errors == []


async def test_admin_pauses_posts_a_webhook_resumes_and_sees_it_delivered(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    await create_source(api)
    subscription = (await api.post("/v1/subscriptions", json={"url": subscriber.url("/p")})).json()
    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    await tab.goto(f"/console/subscriptions/{subscription['id']}")
    await tab.page.get_by_role("button", name="Pause").click()
    await expect(tab.page.locator(".badge.state-paused")).to_be_visible()

    await post_webhook(api, [visit_event()])
    await asyncio.sleep(2)  # several dispatcher polls: nothing may go out while paused
    assert subscriber.on("/p") == []

    await tab.page.get_by_role("button", name="Resume").click()
    await expect(tab.page.locator(".badge.state-active")).to_be_visible()
    await subscriber.wait_for(1, path="/p", within=20)

    async def listed_as_succeeded() -> bool:
        # The subscriber has answered; the relay records the outcome a moment later.
        await tab.goto("/console/deliveries?status=succeeded")
        return await tab.page.locator("tbody tr").count() == 1

    await eventually(listed_as_succeeded, within=10)
    await expect(tab.page.locator("tbody tr")).to_contain_text("succeeded")
    assert tab.errors == []


# No double quote: JSON shown pretty-printed escapes it, and the text is compared whole.
XSS = "<script>window.__owned = 1</script><img src=x onerror=window.__owned=2>"


async def test_a_script_in_a_payload_or_a_response_is_shown_as_text_and_never_runs(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    subscriber.script("/x", then=Answer(200, body=XSS.encode(), headers={"X-Evil": XSS}))
    await create_source(api)
    await api.post("/v1/subscriptions", json={"url": subscriber.url("/x")})
    event = visit_event()
    event["object"]["name"] = XSS
    await post_webhook(api, [event])
    await subscriber.wait_for(1, path="/x")
    event_id = (await api.get("/v1/events")).json()["data"][0]["id"]

    async def delivered() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = (await api.get("/v1/deliveries")).json()["data"]
        return [row for row in rows if row["status"] == "succeeded"]

    await eventually(delivered, within=20)
    delivery_id = (await delivered())[0]["id"]

    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    for path in (f"/console/events/{event_id}", f"/console/deliveries/{delivery_id}"):
        await tab.goto(path)
        assert XSS in await tab.page.inner_text("main"), "the markup is shown as text"
        assert await tab.page.evaluate("window.__owned") is None
        assert await tab.page.locator("main script, main img").count() == 0


async def test_a_form_without_this_sessions_csrf_token_is_refused(
    api: httpx.AsyncClient, relay: RelayServer, subscriber: Subscriber
) -> None:
    subscriber.script("/c", then=Answer(500))
    await create_source(api)
    subscription = (
        await api.post(
            "/v1/subscriptions", json={"url": subscriber.url("/c"), "retry_schedule": [1]}
        )
    ).json()
    await post_webhook(api, [visit_event()])
    [delivery_id] = await _all_failed(api, 1)

    async with httpx.AsyncClient(base_url=relay.base_url) as browser:
        form = (await browser.get("/console/login")).text
        login_csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert login_csrf is not None
        signed_in = await browser.post(
            "/console/login", data={"token": ADMIN_TOKEN, "csrf": login_csrf.group(1)}
        )
        assert signed_in.status_code == 303
        page = (await browser.get(f"/console/deliveries/{delivery_id}")).text
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None

        for data in ({}, {"csrf": "forged"}, {"csrf": token.group(1)[:-1] + "x"}):
            refused = await browser.post(f"/console/deliveries/{delivery_id}/retry", data=data)
            assert refused.status_code == 403
            assert "CSRF" in refused.text
        paused = await browser.post(
            f"/console/subscriptions/{subscription['id']}/pause", data={"csrf": "forged"}
        )
        assert paused.status_code == 403
        assert (await _statuses(api))[delivery_id] == "failed"
        assert (await api.get(f"/v1/subscriptions/{subscription['id']}")).json()["active"]

        accepted = await browser.post(
            f"/console/deliveries/{delivery_id}/retry", data={"csrf": token.group(1)}
        )
        assert accepted.status_code == 303
        assert (await _statuses(api))[delivery_id] == "pending"

    async with httpx.AsyncClient(base_url=relay.base_url) as stranger:
        # A login form posted without the form's own cookie (another site's form) is refused.
        forged = await stranger.post("/console/login", data={"token": ADMIN_TOKEN, "csrf": "x"})
        assert forged.status_code == 403
        assert "relay_console" not in forged.cookies


async def test_admin_creates_a_source_rotates_its_credentials_and_creates_a_subscription(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    await tab.goto("/console/sources")
    await tab.page.get_by_text("Create a source").click()
    await tab.page.fill("input[name=slug]", "rs")
    await tab.page.select_option("select[name=vendor]", "routestripe")
    await tab.page.fill(
        "textarea[name=verification]", f'{{"type": "hmac", "secret": "{ROUTESTRIPE_SECRET}"}}'
    )
    await tab.page.get_by_role("button", name="Create source").click()
    await expect(tab.page.locator(".notice")).to_contain_text("/ingest/rs")
    page_text = await tab.page.inner_text("main")
    assert ROUTESTRIPE_SECRET not in page_text, "credentials are shown masked"
    assert ROUTESTRIPE_SECRET[-4:] in page_text

    await tab.page.get_by_text("Rotate credentials").click()
    await tab.page.fill(
        "textarea[name=verification]", '{"type": "hmac", "secret": "the-new-secret-of-2027-abcd"}'
    )
    await tab.page.get_by_role("button", name="Rotate").click()
    await expect(tab.page.locator(".notice")).to_contain_text("Credentials rotated")
    # Signed with the old secret: still accepted for the 24 hours the form kept it.
    await post_webhook(api, [visit_event()])

    await tab.goto("/console/subscriptions")
    await tab.page.get_by_text("Create a subscription").click()
    await tab.page.fill("input[name=url]", "ftp://nowhere")
    await tab.page.get_by_role("button", name="Create subscription").click()
    await expect(tab.page.locator(".notice-error")).to_contain_text("url")

    await tab.page.get_by_text("Create a subscription").click()
    await tab.page.fill("input[name=url]", subscriber.url("/made-in-console"))
    await tab.page.fill("input[name=event_types]", "order.*")
    await tab.page.get_by_role("button", name="Create subscription").click()
    await expect(tab.page.locator("h1")).to_have_text("New subscription")
    copy = tab.page.get_by_role("button", name=re.compile(r"^Copy whsec_"))
    secret = await copy.get_attribute("data-copy")
    assert secret is not None
    assert secret in await tab.page.inner_text("main")
    [made] = (await api.get("/v1/subscriptions")).json()["data"]
    assert made["url"] == subscriber.url("/made-in-console")
    assert made["event_types"] == ["order.*"]
    assert made["secret"].endswith(secret[-4:])
    assert made["secret"] != secret, "the API shows it masked; only that answer showed it whole"
    assert tab.errors == []


async def test_admin_edits_every_setting_of_a_subscription_and_a_refused_edit_says_why(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    source = await create_source(api)
    subscription = (
        await api.post(
            "/v1/subscriptions",
            json={"url": subscriber.url("/before"), "headers": {"X-Partner-Cred": "kept-secret"}},
        )
    ).json()
    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    await tab.goto(f"/console/subscriptions/{subscription['id']}")
    await tab.page.get_by_text("Edit", exact=True).click()
    form = tab.page.locator("form[action$='/edit']")

    async def fill(**fields: str) -> None:
        for name, value in fields.items():
            await form.locator(f"[name={name}]").fill(value)

    # A refused edit is answered on the form, as it was sent, with the reason: nothing saved.
    await fill(description="typed before the mistake", max_concurrency="0")
    await form.get_by_role("button", name="Save").click()
    await expect(tab.page.locator("#edit-error")).to_contain_text("max_concurrency")
    assert await form.locator("[name=description]").input_value() == "typed before the mistake"
    assert "Traceback" not in await tab.page.content()
    await tab.screenshot("subscription-edit-refused")
    await fill(max_concurrency="10", source_ids="no-such-source")
    await form.get_by_role("button", name="Save").click()
    await expect(tab.page.locator("#edit-error")).to_contain_text("no-such-source")
    assert (await api.get(f"/v1/subscriptions/{subscription['id']}")).json()["description"] == ""

    headers = await form.locator("[name=headers]").input_value()
    assert "kept-secret" not in headers, "header values are shown masked"
    await fill(
        url=subscriber.url("/after"),
        event_types="order.*, route.completed",
        source_ids="rs",
        filter='{"data.status": "delivered"}',
        headers=headers + "\nX-Extra: one",
        description="edited in the console",
        max_concurrency="3",
        rate_limit_per_second="2.5",
        retry_schedule="5, 30",
    )
    await form.locator("[name=vendor-routestripe]").check()
    await form.locator("[name=ordered]").check()
    await form.get_by_role("button", name="Save").click()
    await expect(tab.page.locator(".notice")).to_contain_text("Saved")

    saved = (await api.get(f"/v1/subscriptions/{subscription['id']}")).json()
    assert {key: saved[key] for key in _EDITED} == {
        "url": subscriber.url("/after"),
        "event_types": ["order.*", "route.completed"],
        "vendors": ["routestripe"],
        "source_ids": [source["id"]],
        "filter": {"data.status": "delivered"},
        "description": "edited in the console",
        "ordered": True,
        "max_concurrency": 3,
        "rate_limit_per_second": 2.5,
        "retry_schedule": [5.0, 30.0],
    }
    assert sorted(saved["headers"]) == ["X-Extra", "X-Partner-Cred"]
    assert saved["active"] is True
    # The masked value sent back kept the stored one: the subscriber gets it.
    subscriber.script("/after", then=Answer(200))
    await tab.page.get_by_role("button", name="Send test").click()
    await expect(tab.page.locator(".notice")).to_contain_text("answered 200")
    [ping] = subscriber.on("/after")
    assert ping.headers["x-partner-cred"] == "kept-secret"
    assert ping.headers["x-extra"] == "one"

    # Saved again unchanged, nothing moves; emptied, the optional settings go back to none.
    await tab.page.get_by_text("Edit", exact=True).click()
    await form.get_by_role("button", name="Save").click()
    await expect(tab.page.locator(".notice")).to_contain_text("Saved")
    again = (await api.get(f"/v1/subscriptions/{subscription['id']}")).json()
    assert again | {"updated_at": saved["updated_at"]} == saved
    await tab.page.get_by_text("Edit", exact=True).click()
    await fill(source_ids="", filter="", headers="", rate_limit_per_second="", retry_schedule="")
    await form.locator("[name=vendor-routestripe]").uncheck()
    await form.locator("[name=ordered]").uncheck()
    await form.get_by_role("button", name="Save").click()
    await expect(tab.page.locator(".notice")).to_contain_text("Saved")
    cleared = (await api.get(f"/v1/subscriptions/{subscription['id']}")).json()
    assert {
        key: cleared[key]
        for key in ("vendors", "source_ids", "filter", "headers", "ordered", "retry_schedule")
    } == {
        "vendors": None,
        "source_ids": None,
        "filter": None,
        "headers": {},
        "ordered": False,
        "retry_schedule": None,
    }
    assert cleared["rate_limit_per_second"] is None
    assert tab.errors == []


_EDITED = (
    "url",
    "event_types",
    "vendors",
    "source_ids",
    "filter",
    "description",
    "ordered",
    "max_concurrency",
    "rate_limit_per_second",
    "retry_schedule",
)


async def test_admin_edits_every_setting_of_a_source_and_a_refused_edit_says_why(
    api: httpx.AsyncClient, console: Callable[..., Any]
) -> None:
    source = await create_source(api)
    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    await tab.goto(f"/console/sources/{source['id']}")
    await tab.page.get_by_text("Edit", exact=True).click()
    form = tab.page.locator("form[action$='/edit']")
    await form.locator("[name=description]").fill("Dutch fleet")
    await form.locator("[name=type_map]").fill('{"visit.rescheduled": "Not A Type"}')
    await form.get_by_role("button", name="Save").click()
    await expect(tab.page.locator("#edit-error")).to_contain_text("not a unified type")
    assert await form.locator("[name=description]").input_value() == "Dutch fleet"
    assert (await api.get(f"/v1/sources/{source['id']}")).json()["description"] == ""

    await form.locator("[name=type_map]").fill('{"visit.rescheduled": "order.updated"}')
    await form.locator("[name=event_id_pointer]").fill("/id")
    await form.locator("[name=entity_id_pointer]").fill("/object/id")
    await form.locator("[name=rate_limit_per_second]").fill("5")
    await form.locator("[name=active]").uncheck()
    await form.get_by_role("button", name="Save").click()
    await expect(tab.page.locator(".notice")).to_contain_text("Saved")
    saved = (await api.get(f"/v1/sources/{source['id']}")).json()
    assert saved["description"] == "Dutch fleet"
    assert saved["active"] is False
    assert saved["rate_limit_per_second"] == 5
    assert saved["mapping"] == {
        "event_name_pointer": None,
        "event_id_pointer": "/id",
        "entity_id_pointer": "/object/id",
        "event_time_pointer": None,
        "type_map": {"visit.rescheduled": "order.updated"},
    }
    assert saved["verification"] == source["verification"], "credentials are rotated apart"
    assert tab.errors == []


async def test_admin_deletes_a_subscription_and_a_source_after_confirming(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    source = await create_source(api)
    subscription = (await api.post("/v1/subscriptions", json={"url": subscriber.url("/d")})).json()
    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    await tab.goto(f"/console/subscriptions/{subscription['id']}")
    delete = tab.page.get_by_role("button", name=f"Delete subscription {subscription['id']}")
    # Behind a second step, with no script: the button shows once its section is opened.
    await expect(delete).to_be_hidden()
    await tab.page.get_by_text("Delete this subscription").click()
    await delete.click()
    await tab.page.wait_for_url(tab.base_url + "/console/subscriptions")
    await expect(tab.page.locator(".notice")).to_contain_text("deleted")
    assert await tab.page.locator("table").get_by_text(subscription["id"]).count() == 0
    assert (await api.get(f"/v1/subscriptions/{subscription['id']}")).status_code == 404

    await tab.goto(f"/console/sources/{source['id']}")
    await tab.page.get_by_text("Delete this source").click()
    await tab.page.get_by_role("button", name="Delete source rs").click()
    await tab.page.wait_for_url(tab.base_url + "/console/sources")
    await expect(tab.page.locator(".notice")).to_contain_text("Source rs deleted")
    assert (await api.get(f"/v1/sources/{source['id']}")).status_code == 404
    assert tab.errors == []
