"""The ingest floor: a minimal ASGI endpoint on the relay's server stack (uvicorn, started the
way `relay serve` starts it) that inserts the raw body into one table with one statement, which
commits, then answers 200. Whatever the relay does beyond this is its own cost."""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg
import uvicorn

TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_floor "
    "(id bigserial PRIMARY KEY, received_at timestamptz NOT NULL DEFAULT now(), "
    "body bytea NOT NULL)"
)
INSERT = "INSERT INTO bench_floor (body) VALUES ($1)"


def build_app(database_url: str, pool_size: int) -> Any:
    pool: asyncpg.Pool | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal pool
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    pool = await asyncpg.create_pool(
                        database_url, min_size=pool_size, max_size=pool_size
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if pool is not None:
                        await pool.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        assert pool is not None
        await pool.execute(INSERT, b"".join(chunks))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"accepted":1}'})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()
    # The same uvicorn.run options as `relay serve` (relay/cli.py), so the stack is the same.
    uvicorn.run(
        build_app(args.database_url, args.pool_size),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
