"""The console's server time with a large history: `python -m bench.console` (and the end of
`python -m bench`).

A database of its own is seeded in a few statements (INSERT ... SELECT generate_series) with
1,000,000 finished deliveries spread over 30 days, one attempt each, over 20 subscriptions and
50,000 events (each sent to every subscription, shortly after it arrived); then each console
page is requested ~20 times through the app in this process (no network: the time is the
server's, rendering included) and its p50/p95 reported against the 300 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

from relay.app import create_app
from relay.core.crypto import install_from_settings, new_key
from relay.core.settings import Settings
from relay.db.engine import create_engine, create_session_factory
from relay.db.migrations import upgrade_to_head
from relay.dispatcher.signing import generate_secret
from relay.sources.models import Source
from relay.subscriptions.models import Subscription

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_TOKEN = "bench-console-admin-token-0123456789"  # noqa: S105 - the run's own database only
TARGET_P95_MS = 300.0
FULL_DELIVERIES = 1_000_000
SUBSCRIPTIONS = 20
DAYS = 30
SOURCE_ID = "src_01BENCH0000000000000000000"

# A ULID from a time and a counter, so seeded ids sort by creation like the relay's own, and
# the id-range reads (stats, activity, time filters) behave as on a real history.
_ULID = """
CREATE FUNCTION bench_ulid(prefix text, at timestamptz, n bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT prefix || '_' || string_agg(
      substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
             ((floor(extract(epoch FROM at) * 1000)::bigint >> (5 * (9 - i))) & 31)::int + 1, 1),
      '' ORDER BY i)
    || lpad(upper(to_hex(n)), 16, '0')
  FROM generate_series(0, 9) AS i
$$
"""

_EVENTS = """
INSERT INTO events (id, source_id, type, vendor, vendor_event_name, vendor_event_id,
                    subject_kind, subject_id, occurred_at, received_at, envelope)
SELECT bench_ulid('evt', at, g), 'src_01BENCH0000000000000000000', 'order.completed',
       'routestripe', 'visit.updated', 'v' || g, 'order', 'order-' || g, at, at,
       json_build_object('id', bench_ulid('evt', at, g), 'type', 'order.completed',
                         'data', json_build_object('status', CASE WHEN g % 7 = 0 THEN 'late'
                                                   ELSE 'delivered' END, 'order_id', g))::text
FROM generate_series(1, $1::int) AS g,
     LATERAL (SELECT $3::timestamptz - make_interval(secs => g * $2::float8)) AS t(at)
"""

_DELIVERIES = """
INSERT INTO deliveries (id, event_id, subscription_id, status, held, attempts, next_attempt_at,
                        created_at, updated_at, completed_at, last_status_code, parked,
                        event_timestamp)
SELECT bench_ulid('dlv', at, g), bench_ulid('evt', ev_at, e),
       'sub_01BENCH' || lpad((g % $3::int)::text, 19, '0'),
       CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END, false, 1, at, at, at,
       at + interval '40 milliseconds',
       CASE WHEN g % 50 = 0 THEN 500 ELSE 200 END, false, at
FROM generate_series(1, $1::int) AS g,
     LATERAL (SELECT 1 + (g - 1) / ($1::int / $4::int)) AS ev(e),
     LATERAL (SELECT $6::timestamptz - make_interval(secs => e * $5::float8),
                     $6::timestamptz - make_interval(secs => g * $2::float8)) AS t(ev_at, at)
"""

_ATTEMPTS = """
INSERT INTO delivery_attempts (id, delivery_id, subscription_id, attempt_number, started_at,
                               duration_ms, request_url, request_headers, response_status,
                               response_headers, response_body, outcome, decision)
SELECT bench_ulid('att', created_at, row_number() OVER ()), id, subscription_id, 1,
       created_at, 40, 'https://erp.example.com/hook', '{"content-type": "application/json"}',
       last_status_code, '{}', 'ok', status,
       CASE WHEN status = 'failed' THEN 'failed: retry schedule exhausted' ELSE 'delivered' END
FROM deliveries
"""


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def _database(server_url: str, keep: bool) -> AsyncIterator[str]:
    name = f"relay_bench_console_{uuid.uuid4().hex[:8]}"
    admin = await _connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(server_url, name)
    finally:
        if keep:
            print(f"kept the database {name}: drop it when done")
        else:
            admin = await _connect(server_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


async def _seed(url: str, deliveries: int, settings: Settings) -> None:
    events = max(1000, deliveries // 20)
    seconds = DAYS * 86400
    # The source and subscriptions through the models, which encrypt their credentials.
    engine = create_engine(url, settings)
    async with create_session_factory(engine)() as session:
        session.add(
            Source(
                id=SOURCE_ID,
                slug="routestripe-bench",
                vendor="routestripe",
                verification={"current": {"type": "none"}},
                mapping={},
            )
        )
        for index in range(SUBSCRIPTIONS):
            session.add(
                Subscription(
                    id=f"sub_01BENCH{index:019d}",
                    url=f"https://erp{index}.example.com/hook",
                    event_types=["*"],
                    headers={},
                    secret=generate_secret(),
                )
            )
        await session.commit()
    await engine.dispose()
    connection = await _connect(url)
    try:
        await connection.execute(_ULID)
        # One moment for both, so each delivery's event id is computed as the event's was.
        base = datetime.now(UTC)
        await connection.execute(_EVENTS, events, seconds / events, base)
        await connection.execute(
            _DELIVERIES,
            deliveries,
            seconds / deliveries,
            SUBSCRIPTIONS,
            events,
            seconds / events,
            base,
        )
        await connection.execute(_ATTEMPTS)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


def _pages(ids: dict[str, str]) -> dict[str, str]:
    return {
        "overview": "/console",
        "subscriptions": "/console/subscriptions",
        "subscription": f"/console/subscriptions/{ids['subscription']}",
        "subscription errors only": f"/console/subscriptions/{ids['subscription']}"
        "?errors_only=true",
        "deliveries": "/console/deliveries",
        "deliveries failed": "/console/deliveries?status=failed",
        "deliveries last hour": "/console/deliveries?window=1h",
        "deliveries of a subscription": "/console/deliveries?subscription_id="
        + ids["subscription"],
        "delivery": f"/console/deliveries/{ids['delivery']}",
        "events": "/console/events",
        "events by subject": f"/console/events?subject_id={ids['subject']}",
        "events data contains": '/console/events?window=24h&data={"status":"late"}',
        "event": f"/console/events/{ids['event']}",
        "sources": "/console/sources",
        "source": f"/console/sources/{ids['source']}",
        "requests": "/console/requests",
        "jobs": "/console/jobs",
    }


async def _ids(url: str) -> dict[str, str]:
    connection = await _connect(url)
    try:
        delivery = await connection.fetchrow(
            "SELECT id, event_id, subscription_id FROM deliveries ORDER BY id DESC LIMIT 1"
        )
        event = await connection.fetchrow("SELECT id, subject_id FROM events LIMIT 1")
    finally:
        await connection.close()
    return {
        "delivery": delivery["id"],
        "subscription": delivery["subscription_id"],
        "event": event["id"],
        "subject": event["subject_id"],
        "source": SOURCE_ID,
    }


async def measure(
    server_url: str, *, deliveries: int, requests: int, keep: bool = False
) -> dict[str, Any]:
    """Seeds a database of its own, times every page, drops the database."""
    with tempfile.TemporaryDirectory(prefix="relay-bench-console-") as tmp:
        settings = Settings(
            admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
            data_dir=Path(tmp),
            encryption_key=new_key(),  # type: ignore[arg-type]
            log_level="warning",
        )
        install_from_settings(settings)
        async with _database(server_url, keep) as url:
            await upgrade_to_head(url)
            started = time.monotonic()
            await _seed(url, deliveries, settings)
            seeded_in = time.monotonic() - started
            ids = await _ids(url)
            app = create_app(settings, database_url=url)
            pages: dict[str, dict[str, float]] = {}
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://relay.bench"
                ) as http,
            ):
                form = await http.get("/console/login")
                csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                signed_in = await http.post(
                    "/console/login", data={"token": ADMIN_TOKEN, "csrf": csrf}
                )
                assert signed_in.status_code == 303, signed_in.text
                for name, path in _pages(ids).items():
                    assert (await http.get(path)).status_code == 200, path  # warm caches
                    times = []
                    for _ in range(requests):
                        begun = time.perf_counter()
                        answer = await http.get(path)
                        times.append((time.perf_counter() - begun) * 1000)
                        assert answer.status_code == 200, (path, answer.text[:300])
                    times.sort()
                    pages[name] = {
                        "p50_ms": round(statistics.median(times), 1),
                        "p95_ms": round(times[max(0, round(0.95 * len(times)) - 1)], 1),
                    }
    return {
        "deliveries": deliveries,
        "seeded_in_s": round(seeded_in, 1),
        "requests_per_page": requests,
        "target_p95_ms": TARGET_P95_MS,
        "pages": pages,
    }


def print_console(results: dict[str, Any]) -> None:
    print(
        f"\nConsole pages, server time with {results['deliveries']:,} deliveries "
        f"({results['requests_per_page']} requests each; target p95 < {TARGET_P95_MS:g} ms)"
    )
    print(f"{'page':<30} {'p50 ms':>8} {'p95 ms':>8}  met")
    for name, row in results["pages"].items():
        met = "yes" if row["p95_ms"] < TARGET_P95_MS else "NO"
        print(f"{name:<30} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f}  {met}")


def run_console(
    server_url: str,
    *,
    deliveries: int,
    results_dir: Path | None,
    requests: int = 20,
    keep: bool = False,
) -> dict[str, Any]:
    results = asyncio.run(measure(server_url, deliveries=deliveries, requests=requests, keep=keep))
    print_console(results)
    if results_dir is not None:
        # A folder of its own: the main run's results are the JSON files beside it.
        (results_dir / "console").mkdir(parents=True, exist_ok=True)
        (results_dir / "console" / "latest.json").write_bytes(
            orjson.dumps(results, option=orjson.OPT_INDENT_2)
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=FULL_DELIVERIES)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--keep-database", action="store_true", help="Leave the seeded database for a closer look."
    )
    args = parser.parse_args()
    server = args.database_url or os.environ.get("RELAY_BENCH_DATABASE_URL") or DEFAULT_SERVER
    run_console(
        server,
        deliveries=args.deliveries,
        results_dir=args.results_dir,
        keep=args.keep_database,
    )


if __name__ == "__main__":
    main()
