"""Helpers of the console's browser tests: a tab that records page errors, and the API calls
that set up what the pages show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import BrowserContext, ConsoleMessage, Page

from tests.support.relay import ROUTESTRIPE_SECRET, routestripe_batch, routestripe_signature

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


class ConsolePage:
    """A browser tab on the console that records every error the page logs or throws."""

    def __init__(self, context: BrowserContext, page: Page, base_url: str) -> None:
        self.context = context
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"{page.url}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    async def sign_in(self, token: str) -> None:
        await self.goto("/console/login")
        await self.page.fill("input[name=token]", token)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_url(self.base_url + "/console")

    async def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def create_key(api: httpx.AsyncClient, scope: str) -> dict[str, Any]:
    created = await api.post("/v1/api-keys", json={"name": f"{scope}-operator", "scope": scope})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def create_source(api: httpx.AsyncClient, slug: str = "rs") -> dict[str, Any]:
    created = await api.post(
        "/v1/sources",
        json={
            "slug": slug,
            "vendor": "routestripe",
            "verification": {"type": "hmac", "secret": ROUTESTRIPE_SECRET},
        },
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def post_webhook(
    api: httpx.AsyncClient, events: list[dict[str, Any]], slug: str = "rs"
) -> None:
    body = routestripe_batch(events)
    answer = await api.post(
        f"/ingest/{slug}",
        content=body,
        headers={"X-Signature": routestripe_signature(body), "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
