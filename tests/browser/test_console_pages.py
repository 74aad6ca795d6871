"""Every console page in a real browser, at a desktop's and a phone's width: it renders with
data in it, logs no error, and leaves a screenshot in build/screenshots for docs/console.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from playwright.async_api import expect

from tests.conftest import ADMIN_TOKEN
from tests.support.console import PHONE, ConsolePage, create_source, post_webhook
from tests.support.relay import visit_event
from tests.support.subscriber import Answer, Subscriber, eventually


async def _seed(api: httpx.AsyncClient, subscriber: Subscriber) -> dict[str, str]:
    """A source, a healthy and a failing subscription, events, deliveries and a job."""
    subscriber.script("/erp", then=Answer(200, body=b'{"received": true}'))
    subscriber.script("/legacy", then=Answer(502, body=b"Bad Gateway"))
    source = await create_source(api, "routestripe-nl")
    healthy = (
        await api.post(
            "/v1/subscriptions",
            json={"url": subscriber.url("/erp"), "description": "ERP order sync"},
        )
    ).json()
    failing = (
        await api.post(
            "/v1/subscriptions",
            json={
                "url": subscriber.url("/legacy"),
                "event_types": ["order.*"],
                "retry_schedule": [1],
            },
        )
    ).json()
    await post_webhook(api, [visit_event(status=s) for s in (1, 2, 3)], slug="routestripe-nl")
    await post_webhook(api, [visit_event(event="visit.updated")], slug="routestripe-nl")
    rejected = await api.post("/ingest/routestripe-nl", content=b"{}", headers={"X-Signature": "0"})
    assert rejected.status_code == 401

    async def settled() -> bool:
        rows = (await api.get("/v1/deliveries")).json()["data"]
        # The failing subscription wants order.* only: the three visit.created (order.created).
        return len(rows) == 7 and all(row["status"] != "pending" for row in rows)

    await eventually(settled, within=30)
    deliveries = (await api.get("/v1/deliveries")).json()["data"]
    failed = next(row for row in deliveries if row["status"] == "failed")
    event = (await api.get("/v1/events")).json()["data"][0]
    job = await api.post(
        f"/v1/subscriptions/{failing['id']}/recover", json={"since": "2026-01-01T00:00:00Z"}
    )
    assert job.status_code == 202
    return {
        "source": source["id"],
        "subscription": failing["id"],
        "healthy": healthy["id"],
        "delivery": failed["id"],
        "event": event["id"],
    }


async def test_every_page_renders_without_a_browser_error_at_both_widths(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    ids = await _seed(api, subscriber)
    for name, scope in (("grafana", "read"), ("on-call", "ops")):
        await api.post("/v1/api-keys", json={"name": name, "scope": scope})
    pages = {
        "dashboard": ("/console", "Overview"),
        "subscriptions": ("/console/subscriptions", "Subscriptions"),
        "subscription": (f"/console/subscriptions/{ids['subscription']}", "Subscription"),
        "deliveries": ("/console/deliveries", "Deliveries"),
        "delivery": (f"/console/deliveries/{ids['delivery']}", "Delivery"),
        "events": ("/console/events", "Events"),
        "event": (f"/console/events/{ids['event']}", "Event"),
        "sources": ("/console/sources", "Sources"),
        "source": (f"/console/sources/{ids['source']}", "Source routestripe-nl"),
        "requests": ("/console/requests", "Inbound requests"),
        "jobs": ("/console/jobs", "Jobs"),
        "live": ("/console/live", "Live"),
        "keys": ("/console/keys", "API keys"),
    }
    desktop: ConsolePage = await console()
    await desktop.sign_in(ADMIN_TOKEN)
    phone: ConsolePage = await console(PHONE)
    await phone.sign_in(ADMIN_TOKEN)
    for name, (path, heading) in pages.items():
        for tab, width in ((desktop, "1280"), (phone, "390")):
            await tab.goto(path)
            await expect(tab.page.locator("h1")).to_contain_text(heading)
            if name == "live":
                await expect(tab.page.locator("#live-status")).to_contain_text("Following")
            await tab.screenshot(f"{name}-{width}")
    await desktop.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await desktop.goto(f"/console/deliveries/{ids['delivery']}")
    await desktop.page.get_by_role("button", name=f"Copy {ids['delivery']}").click()
    assert await desktop.page.evaluate("navigator.clipboard.readText()") == ids["delivery"]
    await desktop.goto("/console/login")
    await desktop.screenshot("login-1280")
    assert desktop.errors == []
    assert phone.errors == []


async def test_live_shows_events_and_attempts_as_they_happen(
    api: httpx.AsyncClient, console: Callable[..., Any], subscriber: Subscriber
) -> None:
    await create_source(api)
    await api.post("/v1/subscriptions", json={"url": subscriber.url("/live")})
    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    await tab.goto("/console/live")
    await expect(tab.page.locator("#live-status")).to_contain_text("Following")
    await post_webhook(api, [visit_event()])
    rows = tab.page.locator("#live tbody tr")
    await expect(rows.filter(has_text="event")).to_have_count(1, timeout=15_000)
    await expect(rows.filter(has_text="succeeded")).to_have_count(1, timeout=15_000)
    await tab.screenshot("live-following-1280")
    assert tab.errors == []


async def test_event_search_by_subject_and_data_containment(
    api: httpx.AsyncClient, console: Callable[..., Any]
) -> None:
    await create_source(api)
    await post_webhook(api, [visit_event(visit_id=424242, status=2), visit_event(visit_id=7)])
    tab: ConsolePage = await console()
    await tab.sign_in(ADMIN_TOKEN)
    await tab.goto("/console/events?subject_id=424242")
    await expect(tab.page.locator("tbody tr")).to_have_count(1)
    await expect(tab.page.locator("tbody tr")).to_contain_text("424242")

    event = (await api.get("/v1/events")).json()["data"][0]
    needle = {key: value for key, value in event["data"].items() if isinstance(value, str)}
    assert needle, event["data"]
    key, value = next(iter(needle.items()))
    await tab.page.fill("input[name=subject_id]", "")
    await tab.page.fill("input[name=data]", f'{{"{key}": "{value}"}}')
    await tab.page.get_by_role("button", name="Search").click()
    await expect(tab.page.locator("tbody tr").first).to_contain_text(event["id"])

    await tab.page.fill("input[name=data]", "{not json")
    await tab.page.get_by_role("button", name="Search").click()
    await expect(tab.page.locator(".error")).to_contain_text("data: not JSON")
    assert tab.errors == []
