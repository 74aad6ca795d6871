"""The peer: what a Python team would build instead of the relay in an afternoon, made a fair
competitor at its best. FastAPI + procrastinate (psycopg 3): one endpoint checks one header
token and, in one transaction, stores the webhook and defers one job per subscriber; a
procrastinate worker whose task reads the webhook and POSTs its body to the subscriber with
httpx. No normalization, dedupe, request log, limits or attempt log.

At its best: uvloop and httptools (uvicorn's defaults when installed, as for `relay serve`),
the same uvicorn options as `relay serve`, answers as ready bytes, the subscribers read once
at start, the 3 jobs deferred with one statement, pools sized for the concurrency.

    python -m bench.peer_procrastinate serve --database-url=... --port=...
    python -m bench.peer_procrastinate worker --database-url=... --concurrency=...
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import hmac
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import uvicorn
import uvloop
from fastapi import FastAPI, Request
from fastapi.responses import Response
from procrastinate import App, PsycopgConnector

from bench.payloads import BRINGG_TOKEN

TABLES = """
CREATE TABLE IF NOT EXISTS webhooks (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    body bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS subscribers (id serial PRIMARY KEY, url text NOT NULL);
"""

# The request's connection, so the jobs are deferred inside the request's transaction:
# procrastinate's psycopg connector otherwise takes a connection of its own from the pool.
_CURRENT: contextvars.ContextVar[psycopg.AsyncConnection[Any] | None] = contextvars.ContextVar(
    "current_connection", default=None
)


class TransactionalConnector(PsycopgConnector):
    def _get_cursor(self, connection: Any = None) -> Any:
        return super()._get_cursor(connection or _CURRENT.get())


def make_app(database_url: str, pool_size: int) -> App:
    connector = TransactionalConnector(
        conninfo=database_url, min_size=pool_size, max_size=pool_size
    )
    return App(connector=connector)


def register_task(app: App, client_limit: int) -> Any:
    client: httpx.AsyncClient | None = None

    @app.task(name="deliver", queue="deliveries")
    async def deliver(webhook_id: int, url: str) -> None:
        nonlocal client
        if client is None:
            limits = httpx.Limits(
                max_connections=client_limit, max_keepalive_connections=client_limit
            )
            client = httpx.AsyncClient(limits=limits, timeout=15.0, trust_env=False)
        async with app.connector.pool.connection() as connection:  # type: ignore[attr-defined]
            row = await (
                await connection.execute("SELECT body FROM webhooks WHERE id = %s", (webhook_id,))
            ).fetchone()
        response = await client.post(
            url, content=row[0], headers={"Content-Type": "application/json"}
        )
        # A failed job is retried by procrastinate only if the task says so; the peer keeps
        # it simple: an error status is an exception, the job ends failed.
        response.raise_for_status()

    return deliver


def build_api(database_url: str, pool_size: int) -> FastAPI:
    queue = make_app(database_url, pool_size)
    deliver = register_task(queue, 1)
    expected = f"Bearer {BRINGG_TOKEN}".encode()
    subscribers: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        async with queue.open_async():
            async with queue.connector.pool.connection() as connection:  # type: ignore[attr-defined]
                rows = await (
                    await connection.execute("SELECT url FROM subscribers ORDER BY id")
                ).fetchall()
            subscribers.extend(row[0] for row in rows)
            yield

    api = FastAPI(lifespan=lifespan)

    @api.post("/ingest/bringg")
    async def ingest(request: Request) -> Response:
        token = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(token, expected):
            return Response(b'{"error":"unauthorized"}', 401, media_type="application/json")
        body = await request.body()
        pool = queue.connector.pool  # type: ignore[attr-defined]
        async with pool.connection() as connection, connection.transaction():
            row = await (
                await connection.execute(
                    "INSERT INTO webhooks (body) VALUES (%s) RETURNING id", (body,)
                )
            ).fetchone()
            reset = _CURRENT.set(connection)
            try:
                await deliver.batch_defer_async(
                    *({"webhook_id": row[0], "url": url} for url in subscribers)
                )
            finally:
                _CURRENT.reset(reset)
        return Response(b'{"accepted":1}', media_type="application/json")

    return api


async def prepare(database_url: str, subscriber_urls: list[str]) -> None:
    """Procrastinate's schema (its Python API, as `procrastinate schema --apply` does), the
    peer's two tables and its subscribers."""
    queue = make_app(database_url, 2)
    async with queue.open_async():
        await queue.schema_manager.apply_schema_async()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        await connection.execute(TABLES)
        for url in subscriber_urls:
            await connection.execute("INSERT INTO subscribers (url) VALUES (%s)", (url,))


async def defer_backlog(database_url: str, url: str, count: int) -> None:
    """`count` jobs of already stored webhooks, deferred in batches of 1,000 in one transaction
    (so no worker sees a partial backlog)."""
    queue = make_app(database_url, 2)
    deliver = register_task(queue, 1)
    async with queue.open_async():
        pool = queue.connector.pool  # type: ignore[attr-defined]
        async with pool.connection() as connection, connection.transaction():
            ids = [
                row[0]
                for row in await (
                    await connection.execute("SELECT id FROM webhooks ORDER BY id LIMIT 5000")
                ).fetchall()
            ]
            if not ids:
                body = b'{"run": {"id": 0}}'
                row = await (
                    await connection.execute(
                        "INSERT INTO webhooks (body) VALUES (%s) RETURNING id", (body,)
                    )
                ).fetchone()
                ids = [row[0]]
            reset = _CURRENT.set(connection)
            try:
                for start in range(0, count, 1000):
                    await deliver.batch_defer_async(
                        *(
                            {"webhook_id": ids[number % len(ids)], "url": url}
                            for number in range(start, min(count, start + 1000))
                        )
                    )
            finally:
                _CURRENT.reset(reset)


def run_worker(database_url: str, concurrency: int) -> None:
    queue = make_app(database_url, concurrency + 4)
    register_task(queue, concurrency)

    async def work() -> None:
        async with queue.open_async():
            await queue.run_worker_async(
                queues=["deliveries"], concurrency=concurrency, wait=True, listen_notify=True
            )

    uvloop.run(work())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["serve", "worker"])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.command == "worker":
        run_worker(args.database_url, args.concurrency)
        return
    # The same uvicorn.run options as `relay serve` (relay/cli.py).
    uvicorn.run(
        build_api(args.database_url, args.pool_size),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
