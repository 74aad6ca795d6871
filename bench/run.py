"""The benchmark run: one fresh database, the relay as real processes, a load generator of its
own, and each figure measured next to its floor. `python -m bench --help` for the options.

Order of the run: ingest (figure 1, with the serve process's memory for figure 5) and fan-out
(figure 6) against `relay serve --no-dispatcher`, then the ingest floor; the dispatch backlog
(figure 2, with the worker's memory) against `relay worker`, then the dispatch floor; end-to-end
latency (figure 3) against `relay serve` with its dispatcher; last the claim query on a small
and a large table (figure 4), in this process with the relay's own repository.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

from bench import console
from bench.floor import TABLE_DDL
from bench.isolation import scenario as isolation_scenario
from bench.payloads import BRINGG_TOKEN, ROUTESTRIPE_BATCH, ROUTESTRIPE_SECRET, bringg_template
from bench.procs import MemorySampler, Process, base_env, free_port, relay_executable
from bench.report import print_table, summarize, write_results
from relay.core.crypto import new_key
from relay.core.settings import Settings
from relay.db.engine import create_engine, create_session_factory
from relay.db.migrations import upgrade_to_head
from relay.outbox.claim import WorkerShares, claim

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105 - the run's own database only
# The dispatcher's defaults: the dispatch floor posts at the same concurrency.
DISPATCH_CONCURRENCY = Settings.model_fields["dispatcher_concurrency"].default
CLAIM_BATCH = Settings.model_fields["dispatcher_batch_size"].default
CLAIM_PENDING = 2 * CLAIM_BATCH


@dataclass(frozen=True)
class Profile:
    name: str
    warmup: int
    ingest_seconds: int
    routestripe_seconds: int
    fanout_seconds: int
    connections: int
    backlog: int
    latency_rate: float
    latency_seconds: float
    claim_small: int
    claim_large: int
    claim_repeats: int
    isolation_hanging: int
    isolation_rate: float
    isolation_seconds: float


FULL = Profile(
    name="full",
    warmup=3,
    ingest_seconds=15,
    routestripe_seconds=10,
    fanout_seconds=8,
    connections=32,
    backlog=20_000,
    latency_rate=200.0,
    latency_seconds=30.0,
    claim_small=1_000,
    claim_large=1_000_000,
    claim_repeats=30,
    isolation_hanging=50,
    isolation_rate=20.0,
    isolation_seconds=30.0,
)
SMOKE = Profile(
    name="smoke",
    warmup=1,
    ingest_seconds=1,
    routestripe_seconds=1,
    fanout_seconds=1,
    connections=8,
    backlog=300,
    latency_rate=50.0,
    latency_seconds=2.0,
    claim_small=500,
    claim_large=2_000,
    claim_repeats=5,
    isolation_hanging=5,
    isolation_rate=10.0,
    isolation_seconds=2.0,
)
FANOUT = (1, 10, 100)


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Run:
    def __init__(self, profile: Profile, server_url: str, workdir: Path, use_wrk: bool) -> None:
        self.profile = profile
        self.server_url = _plain(server_url)
        self.database = f"relay_bench_{datetime.now(UTC):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:6]}"
        self.database_url = (
            make_url(self.server_url)
            .set(database=self.database)
            .render_as_string(hide_password=False)
        )
        self.workdir = workdir
        self.wrk = shutil.which("wrk") if use_wrk else None
        self.template_path = workdir / "bringg.json"
        self.template_path.write_text(bringg_template())
        self.next_id = 10_000_000
        self.processes: list[Process] = []
        self.figures: dict[str, Any] = {}
        # One key for every process of the run, so this process can read what the relay wrote.
        self.encryption_key = new_key()
        # Signing secrets as the API showed them on create: the database holds them encrypted.
        self.secrets: dict[str, str] = {}

    # Infrastructure

    def ids(self) -> int:
        """A block of run ids no earlier request used."""
        self.next_id += 10_000_000
        return self.next_id

    def start(self, name: str, args: list[str], **env: str) -> Process:
        process = Process(name, args, env=base_env(**env), logs=self.workdir)
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)

    def relay_env(self, port: int) -> dict[str, str]:
        return {
            "RELAY_DATABASE_URL": self.database_url,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "RELAY_ALLOWED_DESTINATION_NETWORKS": "127.0.0.0/8",
            "RELAY_LOG_LEVEL": "warning",
            "RELAY_LOG_FORMAT": "json",
            "RELAY_DATA_DIR": str(self.workdir / "relay-data"),
            "RELAY_ENCRYPTION_KEY": self.encryption_key,
            "RELAY_PORT": str(port),
            # Every load generator connects from loopback: one client, as the relay counts them.
            "RELAY_CLIENT_CONNECTION_LIMITS": "127.0.0.0/8=1000",
        }

    def start_relay(
        self, name: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> tuple[Process, int]:
        port = free_port()
        env = self.relay_env(port) | (extra_env or {})
        process = self.start(name, [relay_executable(), *args], **env)
        if args[0] == "serve":
            process.wait_listening(port, within=60)
        return process, port

    @contextlib.asynccontextmanager
    async def db(self) -> AsyncIterator[asyncpg.Connection]:
        connection = await asyncpg.connect(self.database_url)
        try:
            yield connection
        finally:
            await connection.close()

    async def create_database(self) -> None:
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        await upgrade_to_head(self.database_url)
        async with self.db() as connection:
            await connection.execute(TABLE_DDL)

    async def drop_database(self) -> None:
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await admin.close()

    def cleanup(self) -> None:
        for process in reversed(self.processes):
            process.stop(grace=5)
        self.processes.clear()

    # Load

    async def _run_json(self, args: list[str], *, within: float) -> dict[str, Any]:
        child = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(within):
                out, err = await child.communicate()
        except TimeoutError:
            child.kill()
            await child.wait()
            raise
        if child.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({child.returncode}): {err.decode()[-2000:]}")
        last = out.decode().strip().splitlines()[-1]
        result: dict[str, Any] = orjson.loads(last)
        return result

    async def load(self, url: str, kind: str, seconds: int) -> dict[str, float]:
        """Closed-loop load for `seconds`: webhooks answered 200 per second."""
        connections = self.profile.connections
        if kind == "bringg" and self.wrk:
            args = [
                self.wrk,
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "30s",
                "-s",
                str(Path(__file__).parent / "ingest.lua"),
                url,
                "--",
                str(self.template_path),
                f"Bearer {BRINGG_TOKEN}",
                str(self.ids()),
            ]
            raw = await self._run_json(args, within=seconds + 60)
            ok = raw["requests"] - raw["non_2xx"]
            elapsed = raw["duration_us"] / 1e6
            failed = raw["non_2xx"] + raw["socket_errors"]
        else:
            args = [
                sys.executable,
                "-m",
                "bench.loadgen",
                url,
                f"--kind={kind}",
                f"--concurrency={connections}",
                f"--duration={seconds}",
                f"--first-id={self.ids()}",
            ]
            raw = await self._run_json(args, within=seconds + 60)
            ok, failed, elapsed = raw["ok"], raw["failed"], raw["seconds"]
        if ok == 0:
            raise RuntimeError(f"load on {url}: nothing answered 200, {failed} failed")
        return {"ok": ok, "failed": failed, "seconds": elapsed, "per_second": ok / elapsed}

    async def measure_ingest(self, url: str, kind: str, seconds: int) -> dict[str, float]:
        await self.load(url, kind, self.profile.warmup)
        return await self.load(url, kind, seconds)

    # Figures

    async def ingest_and_fanout(self, subscriber_url: str) -> str:
        """Figures 1, 5 (serve) and 6; returns the subscription figure 2 drains into."""
        serve, port = self.start_relay("relay-serve", "serve", "--no-dispatcher")
        memory = MemorySampler(serve.pid)
        base = f"http://127.0.0.1:{port}"
        try:
            async with admin_client(base) as api:
                await self.api(
                    api,
                    "POST",
                    "/v1/sources",
                    {
                        "slug": "bringg",
                        "vendor": "bringg",
                        "verification": {"type": "header_token", "token": BRINGG_TOKEN},
                    },
                )
                await self.api(
                    api,
                    "POST",
                    "/v1/sources",
                    {
                        "slug": "routestripe",
                        "vendor": "routestripe",
                        "verification": {"type": "hmac", "secret": ROUTESTRIPE_SECRET},
                    },
                )
                three = [await self.subscription(api, subscriber_url) for _ in range(3)]

                started = time.monotonic()
                relay = await self.measure_ingest(
                    f"{base}/ingest/bringg", "bringg", self.profile.ingest_seconds
                )
                serve_peak = memory.peak_mb(started, time.monotonic())
                batches = await self.measure_ingest(
                    f"{base}/ingest/routestripe", "routestripe", self.profile.routestripe_seconds
                )
                self.figures["ingest"] = {
                    "relay_per_s": relay["per_second"],
                    "relay_answered": relay["ok"],
                    "relay_failed": relay["failed"],
                    "routestripe_requests_per_s": batches["per_second"],
                    "routestripe_events_per_s": batches["per_second"] * ROUTESTRIPE_BATCH,
                    "subscriptions": len(three),
                }
                self.figures["memory"] = {"serve_peak_mb": serve_peak}

                for subscription in three:
                    await self.set_matching(api, subscription, matching=False)
                fanout_subscriptions = [
                    await self.subscription(api, subscriber_url, matching=False)
                    for _ in range(max(FANOUT))
                ]
                # Up and down again, keeping each count's best run: 9 extra rows change a
                # request's time by a few percent, which one disturbed run can hide.
                best: dict[int, float] = {}
                active = 0
                for count in (*FANOUT, *reversed(FANOUT)):
                    for subscription in fanout_subscriptions[count:active]:
                        await self.set_matching(api, subscription, matching=False)
                    for subscription in fanout_subscriptions[active:count]:
                        await self.set_matching(api, subscription, matching=True)
                    active = count
                    result = await self.measure_ingest(
                        f"{base}/ingest/bringg", "bringg", self.profile.fanout_seconds
                    )
                    best[count] = max(best.get(count, 0.0), result["per_second"])
                runs = [
                    {
                        "subscriptions": count,
                        "per_s": best[count],
                        "ms_per_request": 1000 / best[count],
                    }
                    for count in FANOUT
                ]
                self.figures["fanout"] = {"runs": runs}
                for subscription in fanout_subscriptions:
                    await self.set_matching(api, subscription, matching=False)
                backlog_subscription = await self.subscription(
                    api, subscriber_url, max_concurrency=DISPATCH_CONCURRENCY
                )
        finally:
            memory.stop()
            self.stop(serve)
        return backlog_subscription

    async def ingest_floor(self) -> None:
        port = free_port()
        floor = self.start(
            "ingest-floor",
            [
                sys.executable,
                "-m",
                "bench.floor",
                f"--database-url={self.database_url}",
                f"--port={port}",
                f"--pool-size={Settings.model_fields['db_pool_size'].default}",
            ],
        )
        memory = MemorySampler(floor.pid)
        try:
            floor.wait_listening(port)
            result = await self.measure_ingest(
                f"http://127.0.0.1:{port}/ingest/bringg", "bringg", self.profile.ingest_seconds
            )
        finally:
            memory.stop()
            self.stop(floor)
        ingest = self.figures["ingest"]
        ingest["floor_per_s"] = result["per_second"]
        ingest["floor_failed"] = result["failed"]
        ingest["ratio"] = ingest["relay_per_s"] / result["per_second"]
        self.figures["memory"]["serve_floor_mb"] = memory.peak_mb()

    async def dispatch(self, subscription_id: str, subscriber_url: str) -> None:
        """Figure 2 and the worker's half of figure 5."""
        async with self.db() as connection:
            await self.close_pending(connection)
        worker, _ = self.start_relay("relay-worker", "worker")
        memory = MemorySampler(worker.pid)
        try:
            async with self.db() as connection:
                # One delivery first: once it is done, the worker is up and connected.
                await self.insert_backlog(connection, subscription_id, 1, prefix="dlv_bench_probe")
                await self.wait_drained(connection, subscription_id, worker, within=60)
                started = time.monotonic()
                t0 = await self.insert_backlog(connection, subscription_id, self.profile.backlog)
                await self.wait_drained(connection, subscription_id, worker, within=300)
                finished = time.monotonic()
                row = await connection.fetchrow(
                    "SELECT max(completed_at) AS last, "
                    "count(*) FILTER (WHERE status = 'succeeded') AS succeeded "
                    "FROM deliveries WHERE id LIKE 'dlv_bench_b%'"
                )
                bodies = await connection.fetch(
                    "SELECT e.envelope, e.id AS event_id, e.type AS event_type "
                    "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
                    "WHERE d.id LIKE 'dlv_bench_b%' ORDER BY d.id"
                )
        finally:
            memory.stop()
            self.stop(worker)
        seconds = (row["last"] - t0).total_seconds()
        self.figures["dispatch"] = {
            "deliveries": self.profile.backlog,
            "succeeded": row["succeeded"],
            "seconds": seconds,
            "relay_per_s": row["succeeded"] / seconds,
        }
        self.figures["memory"]["worker_peak_mb"] = memory.peak_mb(started, finished)

        bodies_path = self.workdir / "dispatch-bodies.json"
        secret = self.secrets[subscription_id]
        bodies_path.write_bytes(orjson.dumps([{**body, "secret": secret} for body in bodies]))
        floor = self.start(
            "dispatch-floor",
            [
                sys.executable,
                "-m",
                "bench.dispatch_floor",
                f"{subscriber_url}/floor",
                str(bodies_path),
                f"--concurrency={DISPATCH_CONCURRENCY}",
            ],
        )
        floor_memory = MemorySampler(floor.pid)
        try:
            await asyncio.to_thread(floor.popen.wait, 300)
        finally:
            floor_memory.stop()
            self.stop(floor)
        lines = floor.log_path.read_text().strip().splitlines()
        try:
            result = orjson.loads(lines[-1])
        except (IndexError, orjson.JSONDecodeError) as exc:
            raise RuntimeError(
                "dispatch floor printed no result:\n" + "\n".join(lines[-30:])
            ) from exc
        if result["ok"] != len(bodies):
            raise RuntimeError(f"dispatch floor: {result}")
        dispatch = self.figures["dispatch"]
        dispatch["floor_per_s"] = result["ok"] / result["seconds"]
        dispatch["ratio"] = dispatch["relay_per_s"] / dispatch["floor_per_s"]
        self.figures["memory"]["worker_floor_mb"] = floor_memory.peak_mb()

    async def latency(self, backlog_subscription: str) -> None:
        """Figure 3: relay serve with its dispatcher, at a steady rate."""
        async with self.db() as connection:
            await self.close_pending(connection)
        serve, port = self.start_relay("relay-serve-dispatcher", "serve")
        subscriber_port = free_port()
        out = self.workdir / "latency.json"
        try:
            async with admin_client(f"http://127.0.0.1:{port}") as api:
                await self.set_matching(api, backlog_subscription, matching=False)
                await self.subscription(
                    api,
                    f"http://127.0.0.1:{subscriber_port}",
                    max_concurrency=DISPATCH_CONCURRENCY,
                )
            args = [
                sys.executable,
                "-m",
                "bench.latency",
                f"http://127.0.0.1:{port}/ingest/bringg",
                f"--port={subscriber_port}",
                f"--rate={self.profile.latency_rate}",
                f"--duration={self.profile.latency_seconds}",
                f"--warmup={self.profile.warmup}",
                f"--first-id={self.ids()}",
                f"--out={out}",
            ]
            # Sending, then at most max(20, duration) s for answers and deliveries, then exit.
            within = self.profile.warmup + self.profile.latency_seconds * 2 + 60
            await self._run_json(args, within=within)
        finally:
            self.stop(serve)
        raw = orjson.loads(out.read_bytes())
        latencies = sorted(raw["latencies_ms"])
        if not latencies:
            raise RuntimeError(f"latency: nothing delivered of {raw['sent']}: {raw}")
        self.figures["latency"] = {
            "rate": raw["offered_rate"],
            "achieved_rate": raw["achieved_rate"],
            "sent": raw["sent"],
            "skipped": raw["skipped"],
            "delivered": raw["delivered"],
            "failed": raw["failed"],
            "p50_ms": _percentile(latencies, 50),
            "p90_ms": _percentile(latencies, 90),
            "p99_ms": _percentile(latencies, 99),
            "max_ms": latencies[-1],
            # Vendor POST sent -> relay answered 200: the ingest's share of the latency.
            "answer_p50_ms": _percentile(raw["answer_ms"], 50),
            "answer_p99_ms": _percentile(raw["answer_ms"], 99),
            "latencies_ms": latencies,
        }

    async def isolation(self, backlog_subscription: str) -> None:
        """Figure 7: a healthy subscriber's latency alone, then beside hanging subscriptions
        (bench/isolation.py), against relay serve with its dispatcher."""
        async with self.db() as connection:
            await self.close_pending(connection)
        serve, port = self.start_relay(
            "relay-serve-isolation", "serve", extra_env={"RELAY_DELIVERY_TIMEOUT": "3"}
        )
        try:
            async with admin_client(f"http://127.0.0.1:{port}") as api:
                await self.set_matching(api, backlog_subscription, matching=False)
                runs = {}
                for name, bad in (("alone", 0), ("hanging", self.profile.isolation_hanging)):
                    result = await isolation_scenario(
                        api,
                        f"http://127.0.0.1:{port}/ingest/bringg",
                        bad=bad,
                        bad_max_concurrency=100,
                        rate=self.profile.isolation_rate,
                        duration=self.profile.isolation_seconds,
                        warmup=self.profile.warmup,
                        first_id=self.ids(),
                    )
                    latencies = sorted(result["latencies_ms"])
                    if not latencies:
                        raise RuntimeError(f"isolation ({name}): nothing delivered: {result}")
                    runs[name] = {
                        "sent": result["sent"],
                        "delivered": result["delivered"],
                        "p50_ms": _percentile(latencies, 50),
                        "p99_ms": _percentile(latencies, 99),
                        "max_ms": latencies[-1],
                        "bad_timeouts": sum(result["bad_timeouts"]),
                    }
        finally:
            self.stop(serve)
        self.figures["isolation"] = {
            "hanging": self.profile.isolation_hanging,
            "rate": self.profile.isolation_rate,
            "alone": runs["alone"],
            "with_hanging": runs["hanging"],
            "ratio": runs["hanging"]["p99_ms"] / runs["alone"]["p99_ms"],
        }

    async def claim_scale(self, subscription_id: str) -> None:
        """Figure 4: the relay's claim statement on a small and a large deliveries table."""
        small = self.profile.claim_small
        large = self.profile.claim_large
        async with self.db() as connection:
            await connection.execute("TRUNCATE delivery_attempts, deliveries")
            await self.insert_history(connection, subscription_id, small - CLAIM_PENDING)
            await self.insert_backlog(connection, subscription_id, CLAIM_PENDING)
            await connection.execute("VACUUM ANALYZE deliveries")
        small_ms = await self.time_claims()
        async with self.db() as connection:
            await self.insert_history(connection, subscription_id, large - small, offset=small)
            await connection.execute("VACUUM ANALYZE deliveries")
            rows = await connection.fetchval("SELECT count(*) FROM deliveries")
        large_ms = await self.time_claims()
        self.figures["claim"] = {
            "small_rows": small,
            "large_rows": rows,
            "pending": CLAIM_PENDING,
            "batch": CLAIM_BATCH,
            "small_ms": small_ms,
            "large_ms": large_ms,
            "ratio": large_ms / small_ms,
        }

    async def time_claims(self) -> float:
        """Median time of one claim batch; each runs in a transaction rolled back after."""
        settings = Settings(
            database_url=self.database_url,
            encryption_key=self.encryption_key,
            data_dir=self.workdir / "relay-data",
        )
        engine = create_engine(self.database_url, settings)
        factory = create_session_factory(engine)
        timings = []
        try:
            for _ in range(self.profile.claim_repeats + 3):
                async with factory() as session:
                    started = time.perf_counter()
                    batch = await claim(
                        session,
                        worker="bench",
                        limit=CLAIM_BATCH,
                        lease=timedelta(seconds=60),
                        probe_interval=timedelta(minutes=1),
                        shares=WorkerShares(slots={}, default=CLAIM_BATCH, strangers=CLAIM_BATCH),
                    )
                    timings.append((time.perf_counter() - started) * 1000)
                    await session.rollback()
                if len(batch.deliveries) != CLAIM_BATCH:
                    raise RuntimeError(
                        f"claim returned {len(batch.deliveries)} rows, not {CLAIM_BATCH}"
                    )
        finally:
            await engine.dispose()
        # The first claims warm the pool and the plan cache.
        return statistics.median(timings[3:])

    # Helpers

    async def api(
        self, api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        response = await api.request(method, path, json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    async def subscription(
        self, api: httpx.AsyncClient, url: str, *, matching: bool = True, max_concurrency: int = 10
    ) -> str:
        created = await self.api(
            api,
            "POST",
            "/v1/subscriptions",
            {"url": f"{url}/hook", "max_concurrency": max_concurrency, **_matching(matching)},
        )
        subscription_id: str = created["id"]
        self.secrets[subscription_id] = created["secret"]
        return subscription_id

    async def set_matching(
        self, api: httpx.AsyncClient, subscription: str, *, matching: bool
    ) -> None:
        """Switches a subscription's interest in the bench's webhooks on or off. (A pause would
        not do: a paused subscription still gets deliveries, held until it is resumed.)"""
        await self.api(api, "PATCH", f"/v1/subscriptions/{subscription}", _matching(matching))

    async def close_pending(self, connection: asyncpg.Connection) -> None:
        """Marks what earlier figures left pending as delivered: history, not backlog."""
        await connection.execute(
            "UPDATE deliveries SET status = 'succeeded', completed_at = now(), "
            "locked_by = NULL, locked_until = NULL WHERE status = 'pending'"
        )

    async def insert_backlog(
        self,
        connection: asyncpg.Connection,
        subscription_id: str,
        count: int,
        *,
        prefix: str = "dlv_bench_b",
    ) -> datetime:
        """`count` deliveries due now, of events ingested earlier; returns the commit time."""
        async with connection.transaction():
            await connection.execute(
                _INSERT_DELIVERIES.format(status="'pending'", completed="NULL"),
                prefix,
                subscription_id,
                0,
                count,
            )
            await connection.execute("NOTIFY relay_deliveries")
        committed: datetime = await connection.fetchval("SELECT clock_timestamp()")
        return committed

    async def insert_history(
        self, connection: asyncpg.Connection, subscription_id: str, count: int, offset: int = 0
    ) -> None:
        await connection.execute(
            _INSERT_DELIVERIES.format(status="'succeeded'", completed="now()"),
            "dlv_bench_h",
            subscription_id,
            offset,
            count,
        )

    async def wait_drained(
        self, connection: asyncpg.Connection, subscription_id: str, worker: Process, within: float
    ) -> None:
        deadline = time.monotonic() + within
        while await connection.fetchval(
            "SELECT count(*) FROM deliveries WHERE subscription_id = $1 AND status = 'pending'",
            subscription_id,
        ):
            worker.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"backlog not drained within {within:g} s")
            await asyncio.sleep(0.1)


# Deliveries of the events already in the table, round robin; ids sort in insertion order.
_INSERT_DELIVERIES = """
INSERT INTO deliveries (id, event_id, subscription_id, status, held, attempts, next_attempt_at,
                        event_timestamp, created_at, updated_at, completed_at)
SELECT $1 || lpad(g::text, 8, '0'), ev.ids[1 + g % array_length(ev.ids, 1)], $2,
       {status}, false, 0, now(), now(), now(), now(), {completed}
FROM generate_series($3::int + 1, $3::int + $4::int) AS g,
     (SELECT array_agg(id) AS ids FROM (SELECT id FROM events LIMIT 5000) AS recent) AS ev
"""


def admin_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )


def _matching(matching: bool) -> dict[str, Any]:
    # The bench sends no AntsRoute webhook: a subscription to AntsRoute alone matches none.
    return {"vendors": None if matching else ["antsroute"]}


def _percentile(ordered: list[float], percent: float) -> float:
    index = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
    return ordered[index]


def machine(database_version: str, load_generator: str) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = int(line.split()[1]) / 2**20
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(memory_gb, 1),
        "postgresql": database_version,
        "python": platform.python_version(),
        "load_generator": load_generator,
    }


async def run(profile: Profile, server_url: str, results_dir: Path, use_wrk: bool) -> Path:
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        bench = Run(profile, server_url, Path(tmp), use_wrk)
        started = time.monotonic()
        await bench.create_database()
        try:
            async with bench.db() as connection:
                version = await connection.fetchval("SHOW server_version")
            subscriber_port = free_port()
            subscriber = bench.start(
                "subscriber",
                [sys.executable, "-m", "bench.subscriber", f"--port={subscriber_port}"],
            )
            subscriber.wait_listening(subscriber_port)
            subscriber_url = f"http://127.0.0.1:{subscriber_port}"

            def step(what: str) -> None:
                print(f"[{time.monotonic() - started:5.0f} s] {what}", flush=True)

            step("figures 1, 5, 6: ingest and fan-out against relay serve --no-dispatcher")
            backlog_subscription = await bench.ingest_and_fanout(subscriber_url)
            step("figure 1: ingest floor")
            await bench.ingest_floor()
            step(f"figures 2, 5: relay worker draining {profile.backlog} deliveries, then floor")
            await bench.dispatch(backlog_subscription, subscriber_url)
            bench.stop(subscriber)
            step(f"figure 3: latency at {profile.latency_rate:g}/s against relay serve")
            await bench.latency(backlog_subscription)
            step(f"figure 4: claim batch, {profile.claim_small} vs {profile.claim_large} rows")
            await bench.claim_scale(backlog_subscription)
            step(f"figure 7: isolation, {profile.isolation_hanging} hanging subscriptions")
            await bench.isolation(backlog_subscription)
            step("done")
        except BaseException:
            for process in bench.processes:
                print(f"--- {process.name} log ---\n{process.log_tail()}", file=sys.stderr)
            raise
        finally:
            bench.cleanup()
            await bench.drop_database()
        results = summarize(
            bench.figures,
            profile=asdict(profile),
            machine=machine(version, "wrk" if bench.wrk else "python (bench.loadgen)"),
            seconds=time.monotonic() - started,
        )
    print_table(results)
    return write_results(results, results_dir)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="A tiny run that only proves the harness works."
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to create the run's database on (default: "
        "RELAY_BENCH_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/postgres).",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-wrk", action="store_true", help="Use the Python load generator even if wrk exists."
    )
    args = parser.parse_args()
    server = args.database_url or os.environ.get("RELAY_BENCH_DATABASE_URL") or DEFAULT_SERVER
    path = asyncio.run(
        run(SMOKE if args.smoke else FULL, server, args.results_dir, not args.no_wrk)
    )
    print(f"\nresults: {path}")
    # The console's pages, on a database of their own (bench/console.py).
    deliveries, requests = (2_000, 2) if args.smoke else (console.FULL_DELIVERIES, 20)
    console.run_console(server, deliveries=deliveries, requests=requests, results_dir=path.parent)
