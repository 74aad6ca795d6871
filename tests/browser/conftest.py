"""A real `relay serve` process with its dispatcher, a real subscriber on 127.0.0.1, and
Debian's Chromium driven by Playwright. These tests never skip: a machine without
/usr/bin/chromium fails them (`make test` installs it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, async_playwright

from tests.support.console import CHROMIUM, DESKTOP, ConsolePage
from tests.support.processes import RelayServer, relay_env


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def relay(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RelayServer]:
    tmp = tmp_path_factory.mktemp("console-relay")
    env = relay_env(
        module_database_url,
        tmp / "data",
        # Retries and job batches come round in a test's time; failures never open the breaker.
        RELAY_JOB_POLL_INTERVAL="0.3",
        RELAY_BREAKER_FAILURES="1000",
        RELAY_DELIVERY_TIMEOUT="2",
    )
    async with RelayServer(env, tmp / "relay.log", dispatcher=True).running() as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def api(relay: RelayServer, engine: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The admin API of the running relay, on tables emptied for this test (`engine`)."""
    async with relay.admin(timeout=10) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def console(browser: Browser, relay: RelayServer) -> AsyncIterator[Callable[..., Any]]:
    """Opens console tabs (each in its own browser context: its own cookies)."""
    contexts: list[BrowserContext] = []

    async def open_tab(viewport: dict[str, int] = DESKTOP) -> ConsolePage:
        context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        contexts.append(context)
        return ConsolePage(context, await context.new_page(), relay.base_url)

    try:
        yield open_tab
    finally:
        for context in contexts:
            await context.close()
