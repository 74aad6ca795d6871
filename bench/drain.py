"""One subscription's backlog against its own limits, and what another subscription waits
meanwhile: `python -m bench.drain [--backlog N] [--max-concurrency C]`.

Not one of the six figures (it runs for minutes at a large backlog): it measures the claim's
per-subscription limits. A fresh database gets `backlog` deliveries, due at once, for one
subscription with `max_concurrency` C; a `relay worker` drains them into `bench/subscriber.py`.
Two seconds in, five webhooks arrive for a second subscription: the time until all five were
delivered is how long one subscription's backlog holds up another's fresh events. With
`--released` the backlog starts held (as by a pause) and is released by `PATCH {"active":
true}` as the worker starts: the way a paused or failing subscription's backlog comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import orjson

from bench.payloads import BRINGG_TOKEN, bringg_body, bringg_template
from bench.procs import free_port
from bench.run import DEFAULT_SERVER, SMOKE, Run, admin_client

_PENDING = "SELECT count(*) FROM deliveries WHERE subscription_id = $1 AND status = 'pending'"


async def _post(api: httpx.AsyncClient, template: str, run_id: int) -> None:
    answer = await api.post(
        "/ingest/bringg",
        content=bringg_body(template, run_id),
        headers={"Authorization": BRINGG_TOKEN, "Content-Type": "application/json"},
    )
    if answer.status_code != 200:
        raise RuntimeError(f"ingest answered {answer.status_code}: {answer.text}")


async def _wait_drained(
    connection: asyncpg.Connection, subscription_id: str, within: float
) -> None:
    deadline = time.monotonic() + within
    while await connection.fetchval(_PENDING, subscription_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not drained within {within:g} s")
        await asyncio.sleep(0.01)


async def measure(
    server_url: str, backlog: int, max_concurrency: int, *, released: bool
) -> dict[str, float | bool]:
    with tempfile.TemporaryDirectory(prefix="relay-drain-") as tmp:
        run = Run(SMOKE, server_url, Path(tmp), use_wrk=False)
        await run.create_database()
        try:
            port = free_port()
            subscriber = run.start(
                "subscriber", [sys.executable, "-m", "bench.subscriber", f"--port={port}"]
            )
            subscriber.wait_listening(port)
            url = f"http://127.0.0.1:{port}"
            _serve, api_port = run.start_relay("relay-serve", "serve", "--no-dispatcher")
            async with admin_client(f"http://127.0.0.1:{api_port}") as api:
                source = {"type": "header_token", "token": BRINGG_TOKEN}
                await run.api(
                    api,
                    "POST",
                    "/v1/sources",
                    {"slug": "bringg", "vendor": "bringg", "verification": source},
                )
                narrow = await run.subscription(api, url, max_concurrency=max_concurrency)
                template = bringg_template()
                # Events for the backlog's deliveries to point at.
                for run_id in range(20):
                    await _post(api, template, run_id)
                async with run.db() as connection:
                    await connection.execute("DELETE FROM deliveries")
                    await run.insert_backlog(connection, narrow, backlog)
                    if released:
                        await connection.execute(
                            "UPDATE deliveries SET held = true WHERE subscription_id = $1", narrow
                        )
                other = await run.subscription(api, url)
                worker, _ = run.start_relay("relay-worker", "worker")
                if released:
                    # A resume releases what was held, as after a pause.
                    await run.api(api, "PATCH", f"/v1/subscriptions/{narrow}", {"active": True})
                await asyncio.sleep(2)
                posted = time.monotonic()
                for run_id in range(20, 25):
                    await _post(api, template, run_id)
                async with run.db() as connection:
                    await _wait_drained(connection, other, within=300)
                    other_wait = time.monotonic() - posted
                    await _wait_drained(connection, narrow, within=3600)
                    worker.check_running()
                    row = await connection.fetchrow(
                        "SELECT min(completed_at) AS first, max(completed_at) AS last, "
                        "count(*) AS delivered FROM deliveries "
                        "WHERE subscription_id = $1 AND status = 'succeeded'",
                        narrow,
                    )
            seconds = (row["last"] - row["first"]).total_seconds()
            return {
                "backlog": backlog,
                "max_concurrency": max_concurrency,
                "released": released,
                "delivered": row["delivered"],
                "seconds": seconds,
                "per_s": row["delivered"] / seconds,
                "other_subscription_wait_ms": other_wait * 1000,
            }
        finally:
            run.cleanup()
            await run.drop_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--max-concurrency", type=int, default=10)
    parser.add_argument("--released", action="store_true", help="the backlog starts held")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args()
    result = asyncio.run(
        measure(args.server, args.backlog, args.max_concurrency, released=args.released)
    )
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
