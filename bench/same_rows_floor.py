"""The same-rows ingest floor: a bare ASGI endpoint on the relay's server stack (uvicorn, started
as `relay serve` starts it) that, per POST, writes exactly the rows the relay writes for one
webhook with 3 matching subscriptions, into the relay's own migrated tables with their indexes
and constraints, with one statement: the request log row (headers as jsonb, the body), the
dedupe key, the event (with an envelope the relay itself wrote), 3 deliveries, and `pg_notify`
on the dispatchers' channel (unless --no-notify). No verification, parsing, lookup or
normalization: the values come from a sample file the run took from the relay's own rows.
Whatever the relay does beyond this is Python work above the cost of its writes.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import uvicorn

from relay.outbox.transitions import NOTIFY_CHANNEL

# One statement, one implicit transaction, as the relay's ingest (autocommit). The deliveries
# take their subject key and event timestamp from the sample; no throttle lookup.
_STORE = """
WITH dedupe AS (
    INSERT INTO dedupe_keys (source_id, key, event_id, created_at)
    VALUES ($1, $2, $3, $4)
), event AS (
    INSERT INTO events (id, source_id, request_id, type, vendor, vendor_event_name,
                        vendor_event_id, subject_kind, subject_id, occurred_at, received_at,
                        envelope)
    VALUES ($3, $1, $5, $6, $7, $8, $9, $10, $11, $12, $4, $13)
), planned AS (
    INSERT INTO deliveries (id, event_id, subscription_id, status, held, parked, attempts,
                            next_attempt_at, subject_key, event_timestamp, created_at,
                            updated_at)
    SELECT $14 || s.n, $3, s.subscription_id, 'pending', false, false, 0, $4, $15, $16, $4, $4
    FROM unnest($17::text[]) WITH ORDINALITY AS s(subscription_id, n)
)
INSERT INTO inbound_requests (id, source_id, slug, received_at, verdict, reason, status_code,
                              body_size, content_type, remote_addr, headers, body,
                              accepted_count, duplicate_count, event_ids)
VALUES ($5, $1, $18, $4, 'accepted', '', 200, $19, $20, $21, $22::jsonb, $23, 1, 0,
        ARRAY[$3])
"""
_NOTIFY = f"RETURNING (SELECT pg_notify('{NOTIFY_CHANNEL}', ''))"


def build_app(database_url: str, pool_size: int, sample: dict[str, Any], notify: bool) -> Any:
    pool: asyncpg.Pool | None = None
    statement = _STORE + (_NOTIFY if notify else "")
    # Unique across the processes and runs sharing one database: a random prefix, a counter.
    prefix = f"{os.getpid():x}{secrets.token_hex(3)}"
    numbers = itertools.count()
    event = sample["event"]
    subscriptions = sample["subscription_ids"]

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
        body = b"".join(chunks)
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        client = scope.get("client")
        number = next(numbers)
        request_id = f"req_sr{prefix}{number:012d}"
        event_id = f"evt_sr{prefix}{number:012d}"
        assert pool is not None
        await pool.execute(
            statement,
            sample["source_id"],
            f"sr{prefix}{number}",
            event_id,
            datetime.now(UTC),
            request_id,
            event["type"],
            event["vendor"],
            event["vendor_event_name"],
            event["vendor_event_id"],
            event["subject_kind"],
            event["subject_id"],
            event["occurred_at"],
            event["envelope"],
            f"dlv_sr{prefix}{number:012d}_",
            sample["subject_key"],
            event["occurred_at"],
            subscriptions,
            sample["slug"],
            len(body),
            headers.get("content-type"),
            client[0] if client else None,
            orjson.dumps(headers).decode(),
            body,
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"accepted":1}'})

    return app


def load_sample(path: Path) -> dict[str, Any]:
    sample: dict[str, Any] = orjson.loads(path.read_bytes())
    sample["event"]["occurred_at"] = datetime.fromisoformat(sample["event"]["occurred_at"])
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument(
        "--sample",
        type=Path,
        required=True,
        help="JSON of the relay's own rows for one webhook (bench/run.py writes it).",
    )
    parser.add_argument(
        "--no-notify", action="store_true", help="Leave pg_notify out of the statement."
    )
    args = parser.parse_args()
    # The same uvicorn.run options as `relay serve` (relay/cli.py), so the stack is the same.
    uvicorn.run(
        build_app(args.database_url, args.pool_size, load_sample(args.sample), not args.no_notify),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
