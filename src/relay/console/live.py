"""/console/live: events and attempts as they happen, as server-sent events.

The stream polls the repository behind GET /v1/activity and `relay tail`, with the same
filters, and re-checks the session on every poll so a revoked key's stream stops too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import orjson
from fastapi import Query, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response, StreamingResponse

from relay.console.endpoints import SignedIn, router
from relay.console.rendering import render
from relay.console.security import LoginRequired, current_viewer
from relay.observability.repository import ActivityFilter, ActivityRepository

POLL_SECONDS = 1.0
# Rows an attempt may be written after it started: looked back over so none is missed.
LOOK_BACK = timedelta(seconds=5)
# The browser's EventSource reconnects by itself; a bounded stream frees the connection.
STREAM_SECONDS = 300
BATCH = 200


@router.get("/live")
async def live_page(
    request: Request,
    viewer: SignedIn,
    type: str | None = Query(None),
    source: str | None = Query(None),
    subscription_id: str | None = Query(None),
) -> Response:
    filters = {"type": type or "", "source": source or "", "subscription_id": subscription_id or ""}
    return render(request, "live.html", viewer, {"title": "Live", "filters": filters})


@router.get("/live/stream")
async def live_stream(
    request: Request,
    viewer: SignedIn,
    type: str | None = Query(None),
    source: str | None = Query(None),
    subscription_id: str | None = Query(None),
) -> Response:
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    start = datetime.now(UTC)

    async def stream() -> AsyncIterator[bytes]:
        seen: set[str] = set()
        since = start - LOOK_BACK
        yield b"retry: 2000\n\n"
        while (datetime.now(UTC) - start).total_seconds() < STREAM_SECONDS:
            if await request.is_disconnected():
                return
            try:
                await current_viewer(request)
            except LoginRequired:
                yield b"event: signed-out\ndata: {}\n\n"
                return
            query = ActivityFilter(
                since=since,
                type=type or None,
                source=source or None,
                subscription_id=subscription_id or None,
            )
            polled_at = datetime.now(UTC)
            async with factory() as session:
                repository = ActivityRepository(session)
                events = await repository.events(query, limit=BATCH)
                attempts = await repository.attempts(query, limit=BATCH)
            for kind, rows in (("event", events), ("attempt", attempts)):
                for row in rows:
                    if row["id"] not in seen:
                        yield f"event: {kind}\ndata: ".encode() + orjson.dumps(row) + b"\n\n"
            # The next poll looks back less far than this one did, so what it can see again is
            # among this poll's rows: only those need remembering.
            seen = {row["id"] for row in (*events, *attempts)}
            since = polled_at - LOOK_BACK
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
