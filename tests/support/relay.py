"""Helpers for driving the relay in tests: sources, signed vendor posts, dispatchers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.app import create_app
from relay.background import BackgroundWork
from relay.core.ids import new_id
from relay.core.settings import Settings
from relay.dispatcher.worker import Dispatcher
from relay.outbox.claim import ClaimBatch, WorkerShares, claim

ROUTESTRIPE_SECRET = "routestripe-test-secret-0123456789"
_visit_ids = itertools.count(500_000)


async def create_routestripe_source(client: httpx.AsyncClient, slug: str = "rs") -> dict[str, Any]:
    response = await client.post(
        "/v1/sources",
        json={
            "slug": slug,
            "vendor": "routestripe",
            "verification": {"type": "hmac", "secret": ROUTESTRIPE_SECRET},
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def visit_event(
    *, status: int = 1, event: str = "visit.created", visit_id: int | None = None, second: int = 0
) -> dict[str, Any]:
    visit = next(_visit_ids) if visit_id is None else visit_id
    stamp = f"2026-02-04T16:{second // 60:02d}:{second % 60:02d}Z"
    return {
        "entity": "visit",
        "event": event,
        "id": f"evt_{visit}_{event}_{second}",
        "timestamp": stamp,
        "object": {
            "id": visit,
            "external_id": None,
            "route_id": 0,
            "name": f"Visit {visit}",
            "lat": "52.030187",
            "lng": "4.307636",
            "status": status,
            "updated_at": stamp,
            "created_at": stamp,
        },
    }


def routestripe_batch(events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {
            "event": "batch",
            "id": f"bth_{events[0]['id']}",
            "timestamp": "2026-02-04T16:05:08Z",
            "provider": "ROUTESTRIPE",
            "api_version": "v1",
            "event_count": len(events),
            "data": {"events": events},
        }
    )


def routestripe_signature(body: bytes, secret: str = ROUTESTRIPE_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_routestripe(
    client: httpx.AsyncClient, events: list[dict[str, Any]], *, slug: str = "rs"
) -> httpx.Response:
    body = routestripe_batch(events)
    return await client.post(
        f"/ingest/{slug}",
        content=body,
        headers={"X-Signature": routestripe_signature(body), "Content-Type": "application/json"},
    )


async def subscribe(client: httpx.AsyncClient, url: str, **fields: Any) -> dict[str, Any]:
    """Creates a subscription through the admin API; the answer, secret included."""
    response = await client.post("/v1/subscriptions", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@contextlib.asynccontextmanager
async def relay_client(
    settings: Settings,
    database_url: str,
    *,
    admin_token: str | None = None,
    remote: tuple[str, int] = ("127.0.0.1", 123),
    run_dispatcher: bool = False,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (with its own dispatcher if `run_dispatcher`, as `relay serve`);
    requests carry the admin token when one is given, and come from `remote` as the server
    sees it."""
    app = create_app(settings, database_url=database_url, run_dispatcher=run_dispatcher)
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=remote),
            base_url="http://relay.test",
            headers=headers,
        ) as http,
    ):
        yield http


@contextlib.asynccontextmanager
async def running_dispatcher(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    database_url: str,
    *,
    name: str | None = None,
) -> AsyncIterator[Dispatcher]:
    """A worker's background work (dispatcher, job runner, purge); yields its dispatcher."""
    background = BackgroundWork(settings, session_factory, database_url, name=name)
    task = asyncio.create_task(background.run())
    try:
        yield background.dispatcher
    finally:
        background.stop()
        async with asyncio.timeout(settings.shutdown_grace + 10):
            await task


@contextlib.asynccontextmanager
async def two_dispatchers(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession], database_url: str
) -> AsyncIterator[tuple[Dispatcher, Dispatcher]]:
    """Two dispatchers, "one" and "two", sharing one database as two workers would."""
    async with (
        running_dispatcher(settings, session_factory, database_url, name="one") as one,
        running_dispatcher(settings, session_factory, database_url, name="two") as two,
    ):
        yield one, two


# A worker share that never binds: claim-level tests see the subscriptions' own limits only.
NO_WORKER_SHARE = WorkerShares(slots={}, default=1_000, strangers=1_000)
CLAIM_LEASE = timedelta(seconds=60)


async def claim_now(
    session_factory: async_sessionmaker[AsyncSession],
    worker: str,
    *,
    limit: int = 100,
    shares: WorkerShares = NO_WORKER_SHARE,
    probe_interval: timedelta = timedelta(minutes=1),
    answered: Collection[str] = (),
) -> ClaimBatch:
    """One claim (it commits by itself), as a dispatcher named `worker` makes it."""
    async with session_factory() as session:
        batch = await claim(
            session,
            worker=worker,
            limit=limit,
            lease=CLAIM_LEASE,
            probe_interval=probe_interval,
            shares=shares,
            answered=answered,
        )
    return batch


def attempt_row(
    delivery_id: str, subscription_id: str, *, status: int | None = 200, decision: str = "ok"
) -> dict[str, Any]:
    """A delivery_attempts row as the dispatcher writes it after an answer."""
    return {
        "id": new_id("att"),
        "delivery_id": delivery_id,
        "subscription_id": subscription_id,
        "attempt_number": 1,
        "started_at": datetime.now(UTC),
        "duration_ms": 3,
        "request_url": "http://127.0.0.1:9/hook",
        "request_headers": {},
        "response_status": status,
        "response_headers": {},
        "response_body": "ok",
        "error_class": None,
        "error_message": None,
        "outcome": "succeeded" if status is not None and 200 <= status < 300 else "pending",
        "decision": decision,
    }
