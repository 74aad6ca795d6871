"""The benchmark run: one fresh database, the relay as real processes, a load generator of its
own, and each figure measured next to its floor. `python -m bench --help` for the options;
`--only` measures some figures alone.

Order of the run: the sources, subscriptions and one sample webhook (whose rows the same-rows
floor copies); ingest (figure 1, with the serve process's memory for figure 5) against `relay
serve --no-dispatcher` and the naive and same-rows ingest floors in alternating rounds, then
fan-out (figure 6) against the same relay; the dispatch backlog (figure 2, with the worker's
memory) against `relay worker` and the dispatch floor in alternating rounds; the same backlog
drained by several workers and the claim's ceiling (figures 9, 10); the FastAPI + procrastinate
peer on its own database (figure 8), its ingest in rounds alternating with a relay's; end-to-end
latency (figure 3) against `relay serve` with its dispatcher; the claim query on a small and a
large table (figure 4), in this process with the relay's own repository; isolation (figure 7);
last figure 3 again on a database seeded with history.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
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
from bench.autoanalyze import AutoAnalyze
from bench.floor import TABLE_DDL
from bench.isolation import scenario as isolation_scenario
from bench.payloads import (
    BRINGG_TOKEN,
    ROUTESTRIPE_BATCH,
    ROUTESTRIPE_SECRET,
    bringg_body,
    bringg_template,
)
from bench.procs import CpuUse, MemorySampler, Process, base_env, free_port, relay_executable
from bench.report import print_table, summarize, write_results
from relay.core.crypto import new_key
from relay.core.settings import Settings
from relay.db.engine import create_engine, create_session_factory
from relay.db.migrations import upgrade_to_head
from relay.outbox import transitions
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
    # Figures 1, 2 and 8 measure the relay and what it is compared with in this many
    # alternating rounds, and report the median round (see Run.alternate).
    rounds: int
    # One round of figure 1's and figure 8's ingest load.
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
    peer_backlog: int
    peer_latency_rate: float
    peer_latency_seconds: float
    scaling_workers: tuple[int, ...]
    scaling_backlog: int
    ceiling_rows: int
    ceiling_claimers: tuple[int, ...]
    ceiling_seconds: float
    history_deliveries: int
    history_serve_workers: int


FULL = Profile(
    name="full",
    warmup=3,
    rounds=3,
    ingest_seconds=8,
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
    peer_backlog=20_000,
    peer_latency_rate=100.0,
    peer_latency_seconds=30.0,
    scaling_workers=(1, 2, 4),
    scaling_backlog=20_000,
    ceiling_rows=200_000,
    ceiling_claimers=(1, 2, 4, 8),
    ceiling_seconds=5.0,
    history_deliveries=1_000_000,
    history_serve_workers=2,
)
SMOKE = Profile(
    name="smoke",
    warmup=1,
    rounds=2,
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
    peer_backlog=50,
    peer_latency_rate=20.0,
    peer_latency_seconds=1.0,
    scaling_workers=(1, 2),
    scaling_backlog=100,
    ceiling_rows=1_000,
    ceiling_claimers=(1, 2),
    ceiling_seconds=0.5,
    history_deliveries=3_000,
    history_serve_workers=2,
)
FANOUT = (1, 10, 100)
# What `--only` may name, in the order a run measures them.
FIGURES = (
    "ingest",
    "floor",
    "dispatch",
    "latency",
    "claim",
    "isolation",
    "scaling",
    "peer",
    "history",
    "console",
)
# The peer's worker: as many jobs in flight as its pool can serve, on a 2-core machine (more
# concurrent fetches only queue on procrastinate_jobs' lock and the CPU).
PEER_CONCURRENCY = 32
# The longest the peer's worker is given to drain figure 2's backlog.
PEER_DRAIN_SECONDS = 600.0


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
        self.sample_path = workdir / "same-rows-sample.json"
        self.three: list[str] = []
        self.backlog_subscription = ""
        self.scaling_subscription = ""
        # Subscriptions that want the bench's webhooks now (see set_matching).
        self.matching: set[str] = set()
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
            p50, p99 = raw["p50_us"] / 1000, raw["p99_us"] / 1000
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
            p50, p99 = raw["p50_ms"], raw["p99_ms"]
        if ok == 0:
            raise RuntimeError(f"load on {url}: nothing answered 200, {failed} failed")
        return {
            "ok": ok,
            "failed": failed,
            "seconds": elapsed,
            "per_second": ok / elapsed,
            "p50_ms": p50,
            "p99_ms": p99,
        }

    async def measure_ingest(self, url: str, kind: str, seconds: int) -> dict[str, float]:
        await self.load(url, kind, self.profile.warmup)
        return await self.load(url, kind, seconds)

    # Figures

    async def setup(self, subscriber_url: str) -> None:
        """The sources and subscriptions every figure uses, and one webhook through the relay
        whose rows the same-rows floor copies."""
        serve, port = self.start_relay("relay-serve-setup", "serve", "--no-dispatcher")
        try:
            async with admin_client(f"http://127.0.0.1:{port}") as api:
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
                self.three = [await self.subscription(api, subscriber_url) for _ in range(3)]
                # Figure 2's backlog is written straight into deliveries: it wants no webhook.
                self.backlog_subscription = await self.subscription(
                    api, subscriber_url, matching=False, max_concurrency=DISPATCH_CONCURRENCY
                )
                # Room for every worker of the scaling figure, so the subscription's own
                # limit is not what caps them.
                self.scaling_subscription = await self.subscription(
                    api,
                    subscriber_url,
                    matching=False,
                    max_concurrency=DISPATCH_CONCURRENCY * max(self.profile.scaling_workers),
                )
                sample_id = self.ids()
                response = await api.post(
                    f"http://127.0.0.1:{port}/ingest/bringg",
                    content=bringg_body(bringg_template(), sample_id),
                    headers={
                        "Authorization": f"Bearer {BRINGG_TOKEN}",
                        "Content-Type": "application/json",
                    },
                )
                if response.status_code != 200:
                    raise RuntimeError(f"sample webhook: {response.status_code} {response.text}")
        finally:
            self.stop(serve)
        async with self.db() as connection:
            event = await connection.fetchrow(
                "SELECT e.source_id, s.slug, e.type, e.vendor, e.vendor_event_name, "
                "e.vendor_event_id, e.subject_kind, e.subject_id, e.occurred_at, e.envelope, "
                "(SELECT d.subject_key FROM deliveries AS d WHERE d.event_id = e.id LIMIT 1) "
                "AS subject_key "
                "FROM events AS e JOIN sources AS s ON s.id = e.source_id "
                "ORDER BY e.received_at DESC LIMIT 1"
            )
            await self.close_pending(connection)
        self.sample_path.write_bytes(
            orjson.dumps(
                {
                    "source_id": event["source_id"],
                    "slug": event["slug"],
                    "subject_key": event["subject_key"],
                    "subscription_ids": self.three,
                    "event": {
                        key: event[key]
                        for key in (
                            "type",
                            "vendor",
                            "vendor_event_name",
                            "vendor_event_id",
                            "subject_kind",
                            "subject_id",
                            "occurred_at",
                            "envelope",
                        )
                    },
                }
            )
        )

    async def alternate(
        self, contenders: dict[str, str], seconds: int
    ) -> dict[str, list[dict[str, float]]]:
        """Each contender's ingest under the same load, in rounds: every round loads each one
        in turn, the order reversed from one round to the next. This host's speed drifts by
        half from one minute to the next, so a figure and its floor measured a minute apart
        can say anything; measured seconds apart, round after round, a drift falls on both."""
        for url in contenders.values():
            await self.load(url, "bringg", self.profile.warmup)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
        names = list(contenders)
        for number in range(self.profile.rounds):
            for name in names if number % 2 == 0 else reversed(names):
                results[name].append(await self.load(contenders[name], "bringg", seconds))
        return results

    def start_floor(self, name: str, module: str, *options: str) -> tuple[Process, int]:
        port = free_port()
        floor = self.start(
            f"ingest-floor-{name}",
            [
                sys.executable,
                "-m",
                module,
                f"--database-url={self.database_url}",
                f"--port={port}",
                f"--pool-size={Settings.model_fields['db_pool_size'].default}",
                *options,
            ],
        )
        floor.wait_listening(port)
        return floor, port

    async def ingest_and_floors(self, subscriber_url: str, *, relay: bool, floors: bool) -> None:
        """Figure 1: `relay serve --no-dispatcher` and its floors in alternating rounds (the
        naive floor, one INSERT of the body; the same-rows floor, the relay's own rows in its
        own tables in one statement with pg_notify; the same without pg_notify), all up at
        once, each idle while another is loaded. Then, against the same relay, figure 6's
        fan-out and the RouteStripe batches; figure 5's serve memory is the relay's peak."""
        modules = {
            "naive": ("bench.floor",),
            "same_rows": ("bench.same_rows_floor", f"--sample={self.sample_path}"),
            "same_rows_no_notify": (
                "bench.same_rows_floor",
                f"--sample={self.sample_path}",
                "--no-notify",
            ),
        }
        contenders: dict[str, str] = {}
        # Figure 5 reads the relay's memory and, for scale, the naive floor's.
        samplers: dict[str, MemorySampler] = {}
        started: list[Process] = []
        relay_base = ""
        try:
            if relay:
                serve, port = self.start_relay("relay-serve", "serve", "--no-dispatcher")
                started.append(serve)
                samplers["relay"] = MemorySampler(serve.pid)
                relay_base = f"http://127.0.0.1:{port}"
                contenders["relay"] = f"{relay_base}/ingest/bringg"
            if floors:
                for name, (module, *options) in modules.items():
                    floor, port = self.start_floor(name, module, *options)
                    started.append(floor)
                    if name == "naive":
                        samplers[name] = MemorySampler(floor.pid)
                    contenders[name] = f"http://127.0.0.1:{port}/ingest/bringg"
            rounds = await self.alternate(contenders, self.profile.ingest_seconds)
            if relay:
                self.figures["ingest"] = {
                    f"relay_{key}": value for key, value in _rounds_summary(rounds["relay"]).items()
                } | {"subscriptions": len(self.three)}
                self.figures.setdefault("memory", {})["serve_peak_mb"] = samplers["relay"].peak_mb()
                await self.routestripe_and_fanout(relay_base, subscriber_url)
            if floors:
                figure: dict[str, Any] = {}
                for name in modules:
                    for key, value in _rounds_summary(rounds[name]).items():
                        figure[f"{name}_{key}"] = value
                self.figures.setdefault("memory", {})["serve_floor_mb"] = samplers[
                    "naive"
                ].peak_mb()
                async with self.db() as connection:
                    figure["same_rows_deliveries"] = await connection.fetchval(
                        "SELECT count(*) FROM deliveries WHERE id LIKE 'dlv_sr%'"
                    )
                self.figures["floors"] = figure
        finally:
            for sampler in samplers.values():
                sampler.stop()
            for process in started:
                self.stop(process)
        async with self.db() as connection:
            # What figure 1 wrote is history, not a backlog for the figures after.
            await self.close_pending(connection)

    async def routestripe_and_fanout(self, base: str, subscriber_url: str) -> None:
        """The RouteStripe batches (figure 1's events/s), and figure 6."""
        batches = await self.measure_ingest(
            f"{base}/ingest/routestripe", "routestripe", self.profile.routestripe_seconds
        )
        self.figures["ingest"] |= {
            "routestripe_requests_per_s": batches["per_second"],
            "routestripe_events_per_s": batches["per_second"] * ROUTESTRIPE_BATCH,
        }
        async with admin_client(base) as api:
            await self.quiet(api)
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
            self.figures["fanout"] = {
                "runs": [
                    {
                        "subscriptions": count,
                        "per_s": best[count],
                        "ms_per_request": 1000 / best[count],
                    }
                    for count in FANOUT
                ]
            }
            await self.quiet(api)

    async def dispatch(
        self, subscription_id: str, subscriber_url: str, subscriber_pid: int
    ) -> None:
        """Figure 2 and the worker's half of figure 5: one `relay worker` draining a backlog,
        and the dispatch floor posting the same bodies, in alternating rounds (see
        `alternate`), a fresh backlog each round; with the CPU each side, the subscriber and
        PostgreSQL used per delivery."""
        async with self.db() as connection:
            await self.close_pending(connection)
        worker, _ = self.start_relay("relay-worker", "worker")
        memory = MemorySampler(worker.pid)
        rounds: list[dict[str, Any]] = []
        worker_peaks: list[float] = []
        floor_peaks: list[float] = []
        bodies_path = self.workdir / "dispatch-bodies.json"
        try:
            async with self.db() as connection:
                # One delivery first: once it is done, the worker is up and connected.
                await self.insert_backlog(connection, subscription_id, 1, prefix="dlv_bench_probe")
                await self.wait_drained(connection, subscription_id, worker, within=60)
                for number in range(self.profile.rounds):
                    prefix = f"dlv_bench_b{number}_"
                    result: dict[str, Any] = {}
                    # The floor posts the first round's bodies: the first round drains first.
                    for side in ("relay", "floor") if number % 2 == 0 else ("floor", "relay"):
                        if side == "floor":
                            floor, floor_peak = await self.dispatch_floor(
                                subscriber_url, bodies_path, subscriber_pid
                            )
                            result |= floor
                            floor_peaks.append(floor_peak)
                            continue
                        drained, worker_peak = await self.drain(
                            connection, subscription_id, worker, prefix, memory, subscriber_pid
                        )
                        result |= drained
                        worker_peaks.append(worker_peak)
                        if number == 0:
                            await self.write_dispatch_bodies(
                                connection, subscription_id, prefix, bodies_path
                            )
                    result["ratio"] = result["relay_per_s"] / result["floor_per_s"]
                    rounds.append(result)
        finally:
            memory.stop()
            self.stop(worker)
        self.figures["dispatch"] = {
            "deliveries": self.profile.backlog,
            "relay_per_s": statistics.median(result["relay_per_s"] for result in rounds),
            "floor_per_s": statistics.median(result["floor_per_s"] for result in rounds),
            # Each round's own ratio: relay and floor measured side by side.
            "ratio": statistics.median(result["ratio"] for result in rounds),
            "rounds": rounds,
        }
        self.figures.setdefault("memory", {}).update(
            worker_peak_mb=max(worker_peaks), worker_floor_mb=max(floor_peaks)
        )

    async def drain(
        self,
        connection: asyncpg.Connection,
        subscription_id: str,
        worker: Process,
        prefix: str,
        memory: MemorySampler,
        subscriber_pid: int,
    ) -> tuple[dict[str, Any], float]:
        """One round of figure 2: a backlog of `backlog` deliveries due at once, drained; with
        the CPU the worker, the subscriber and PostgreSQL used, and the worker's peak RSS."""
        started = time.monotonic()
        cpu = CpuUse(relay=worker.pid, subscriber=subscriber_pid)
        cpu.start()
        t0 = await self.insert_backlog(
            connection, subscription_id, self.profile.backlog, prefix=prefix
        )
        await self.wait_drained(connection, subscription_id, worker, within=300)
        used = cpu.stop()
        peak = memory.peak_mb(started, time.monotonic())
        summary = await drain_summary(connection, prefix, t0)
        drained = {
            "succeeded": summary["succeeded"],
            "seconds": summary["seconds"],
            "relay_per_s": summary["per_s"],
            "relay_cpu_ms": _per_delivery(used, self.profile.backlog),
            "failed_attempts": summary["failed_attempts"],
        }
        return drained, peak

    async def write_dispatch_bodies(
        self, connection: asyncpg.Connection, subscription_id: str, prefix: str, path: Path
    ) -> None:
        """What the worker sent in a round, for the floor to send."""
        bodies = await connection.fetch(
            "SELECT e.envelope, e.id AS event_id, e.type AS event_type "
            "FROM deliveries AS d JOIN events AS e ON e.id = d.event_id "
            "WHERE starts_with(d.id, $1) ORDER BY d.id",
            prefix,
        )
        secret = self.secrets[subscription_id]
        await asyncio.to_thread(
            path.write_bytes, orjson.dumps([{**body, "secret": secret} for body in bodies])
        )

    async def dispatch_floor(
        self, subscriber_url: str, bodies_path: Path, subscriber_pid: int
    ) -> tuple[dict[str, Any], float]:
        """The dispatch floor posting the bodies once: its deliveries/s and the CPU it, the
        subscriber and PostgreSQL used (from its start to its exit), and its peak RSS."""
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
        # The floor's own CPU is what it reports: once it has exited, it cannot be read.
        cpu = CpuUse(subscriber=subscriber_pid)
        cpu.start()
        try:
            await asyncio.to_thread(floor.popen.wait, 300)
        finally:
            floor_memory.stop()
            used = cpu.stop()
            self.stop(floor)
        lines = floor.log_path.read_text().strip().splitlines()
        try:
            result = orjson.loads(lines[-1])
        except (IndexError, orjson.JSONDecodeError) as exc:
            raise RuntimeError(
                "dispatch floor printed no result:\n" + "\n".join(lines[-30:])
            ) from exc
        if result["ok"] != self.profile.backlog:
            raise RuntimeError(f"dispatch floor: {result}")
        used["floor"] = result["cpu_seconds"]
        posted = {
            "floor_per_s": result["ok"] / result["seconds"],
            "floor_cpu_ms": _per_delivery(used, self.profile.backlog),
        }
        return posted, floor_memory.peak_mb()

    async def latency(self) -> None:
        """Figure 3: relay serve with its dispatcher, at a steady rate."""
        self.figures["latency"] = await self.latency_run(
            "relay-serve-dispatcher",
            ["serve"],
            rate=self.profile.latency_rate,
            seconds=self.profile.latency_seconds,
        )

    async def latency_run(
        self,
        name: str,
        serve_args: list[str],
        *,
        rate: float,
        seconds: float,
        subscribers: int = 1,
    ) -> dict[str, Any]:
        """bench/latency.py against `relay <serve_args>`: `subscribers` subscriptions (one path
        each on the latency process's subscriber) want every webhook, no other does."""
        async with self.db() as connection:
            await self.close_pending(connection)
        serve, port = self.start_relay(name, *serve_args)
        subscriber_port = free_port()
        out = self.workdir / f"{name}.json"
        try:
            async with admin_client(f"http://127.0.0.1:{port}") as api:
                await self.quiet(api)
                created = [
                    await self.subscription(
                        api,
                        f"http://127.0.0.1:{subscriber_port}/s{number}",
                        max_concurrency=DISPATCH_CONCURRENCY,
                    )
                    for number in range(subscribers)
                ]
                raw = await self.run_latency(
                    f"http://127.0.0.1:{port}/ingest/bringg",
                    subscriber_port,
                    out,
                    rate=rate,
                    seconds=seconds,
                    per_webhook=subscribers,
                )
                for subscription in created:
                    await self.api(api, "DELETE", f"/v1/subscriptions/{subscription}", None)
                    self.matching.discard(subscription)
        finally:
            self.stop(serve)
        return _latency_figure(raw, name)

    async def run_latency(
        self,
        url: str,
        subscriber_port: int,
        out: Path,
        *,
        rate: float,
        seconds: float,
        per_webhook: int,
    ) -> dict[str, Any]:
        args = [
            sys.executable,
            "-m",
            "bench.latency",
            url,
            f"--port={subscriber_port}",
            f"--rate={rate}",
            f"--duration={seconds}",
            f"--warmup={self.profile.warmup}",
            f"--first-id={self.ids()}",
            f"--out={out}",
            f"--per-webhook={per_webhook}",
        ]
        # Sending, then at most max(20, duration) s for answers and deliveries, then exit.
        await self._run_json(args, within=self.profile.warmup + seconds * 2 + 60)
        raw: dict[str, Any] = orjson.loads(await asyncio.to_thread(out.read_bytes))
        return raw

    async def isolation(self) -> None:
        """Figure 7: a healthy subscriber's latency alone, then beside hanging subscriptions
        (bench/isolation.py), against relay serve with its dispatcher."""
        async with self.db() as connection:
            await self.close_pending(connection)
        serve, port = self.start_relay(
            "relay-serve-isolation", "serve", extra_env={"RELAY_DELIVERY_TIMEOUT": "3"}
        )
        try:
            async with admin_client(f"http://127.0.0.1:{port}") as api:
                await self.quiet(api)
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
        """Median time of one claim batch. A claim commits by itself, so what it did (the
        leases, the rows it parked, its subscription's throttle) is undone after it, outside
        the timing: every timed claim sees the same due rows."""
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
                async with self.db() as connection:
                    await connection.execute(_UNDO_CLAIMS)
                if len(batch.deliveries) != CLAIM_BATCH:
                    raise RuntimeError(
                        f"claim returned {len(batch.deliveries)} rows, not {CLAIM_BATCH}"
                    )
        finally:
            await engine.dispose()
        # The first claims warm the pool and the plan cache.
        return statistics.median(timings[3:])

    async def scaling(self) -> None:
        """Figure 9: one backlog drained by 1, 2, 4 `relay worker` processes on one database
        (one subscription with room for all of them, one subscriber process)."""
        subscription_id = self.scaling_subscription
        runs = []
        for count in self.profile.scaling_workers:
            async with self.db() as connection:
                await self.close_pending(connection)
            workers = [
                self.start_relay(f"relay-worker-{count}-{number}", "worker")[0]
                for number in range(count)
            ]
            try:
                async with self.db() as connection:
                    # Every worker listening (its dispatcher is up), then one delivery through.
                    await self.wait_listeners(connection, workers, within=60)
                    await self.insert_backlog(
                        connection, subscription_id, count, prefix=f"dlv_bench_sp{count}_"
                    )
                    await self.wait_drained(connection, subscription_id, workers[0], within=60)
                    prefix = f"dlv_bench_s{count}_"
                    t0 = await self.insert_backlog(
                        connection, subscription_id, self.profile.scaling_backlog, prefix=prefix
                    )
                    await self.wait_drained(connection, subscription_id, workers[0], within=300)
                    summary = await drain_summary(connection, prefix, t0)
            finally:
                for worker in workers:
                    self.stop(worker)
            runs.append({"workers": count, "deliveries": self.profile.scaling_backlog} | summary)
        self.figures["scaling"] = {"runs": runs}
        await self.claim_ceiling()

    async def claim_ceiling(self) -> None:
        """Figure 10: the claim's ceiling under its advisory lock. N claimers, each its own
        connection, call the relay's claim in a loop against a large pending table; each gives
        the deliveries it leased back at once (outside the lock, as a worker's shutdown does),
        so the same rows stay due."""
        subscription_id = self.scaling_subscription
        async with self.db() as connection:
            await self.close_pending(connection)
            await self.insert_backlog(
                connection, subscription_id, self.profile.ceiling_rows, prefix="dlv_bench_c"
            )
            await connection.execute("VACUUM ANALYZE deliveries")
        settings = Settings(
            database_url=self.database_url,
            encryption_key=self.encryption_key,
            data_dir=self.workdir / "relay-data",
            db_pool_size=max(self.profile.ceiling_claimers),
        )
        engine = create_engine(self.database_url, settings)
        factory = create_session_factory(engine)
        shares = WorkerShares(slots={}, default=CLAIM_BATCH, strangers=CLAIM_BATCH)
        runs = []
        try:
            for claimers in self.profile.ceiling_claimers:
                claims = rows = 0

                async def claimer(deadline: float) -> None:
                    nonlocal claims, rows
                    while time.monotonic() < deadline:
                        async with factory() as session:
                            batch = await claim(
                                session,
                                worker="bench-ceiling",
                                limit=CLAIM_BATCH,
                                lease=timedelta(seconds=60),
                                probe_interval=timedelta(minutes=1),
                                shares=shares,
                            )
                            await transitions.give_back(
                                session,
                                [item.id for item in batch.deliveries],
                                worker="bench-ceiling",
                                at=datetime.now(UTC),
                            )
                        claims += 1
                        rows += len(batch.deliveries)

                # A short warm-up opens the connections and prepares the statements.
                warm = time.monotonic() + 0.2
                await asyncio.gather(*(claimer(warm) for _ in range(claimers)))
                claims = rows = 0
                started = time.monotonic()
                deadline = started + self.profile.ceiling_seconds
                await asyncio.gather(*(claimer(deadline) for _ in range(claimers)))
                elapsed = time.monotonic() - started
                runs.append(
                    {
                        "claimers": claimers,
                        "claims_per_s": claims / elapsed,
                        "rows_per_s": rows / elapsed,
                        "rows_per_claim": rows / claims if claims else 0,
                    }
                )
        finally:
            await engine.dispose()
        async with self.db() as connection:
            await connection.execute("DELETE FROM deliveries WHERE id LIKE 'dlv_bench_c%'")
        self.figures["claim_ceiling"] = {
            "pending": self.profile.ceiling_rows,
            "batch": CLAIM_BATCH,
            "runs": runs,
        }

    async def peer(self, subscriber_url: str) -> None:
        """Figure 8: the FastAPI + procrastinate peer (bench/peer_procrastinate.py) on its own
        database, measured as the relay is: ingest under figure 1's load, a backlog drained by
        one worker, and latency at a steady rate with 3 subscribers; the relay's latency in the
        same shape beside it."""
        from bench import peer_procrastinate

        database = f"{self.database}_peer"
        peer_url = make_url(self.database_url).set(database=database).render_as_string(False)
        latency_port = free_port()
        admin = await asyncpg.connect(self.server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{database}"')
        finally:
            await admin.close()
        figure: dict[str, Any] = {"concurrency": PEER_CONCURRENCY}
        try:
            await peer_procrastinate.prepare(
                peer_url, [f"http://127.0.0.1:{latency_port}/s{number}" for number in range(3)]
            )
            port = free_port()
            pool = f"--pool-size={Settings.model_fields['db_pool_size'].default}"
            serve_args = [
                sys.executable,
                "-m",
                "bench.peer_procrastinate",
                "serve",
                f"--database-url={peer_url}",
                f"--port={port}",
                pool,
            ]
            worker_args = [
                sys.executable,
                "-m",
                "bench.peer_procrastinate",
                "worker",
                f"--database-url={peer_url}",
                f"--concurrency={PEER_CONCURRENCY}",
            ]
            # One serve and one worker for the whole figure: the worker starts after the
            # ingest (as figure 1 runs `relay serve --no-dispatcher`), the serve idles while
            # the worker drains the backlog.
            serve = self.start("peer-serve", serve_args)
            worker: Process | None = None
            try:
                serve.wait_listening(port)
                peer_ingest, relay_ingest = await self.ingest_beside_peer(
                    f"http://127.0.0.1:{port}/ingest/bringg"
                )
                figure["ingest"] = peer_ingest
                figure["relay_ingest"] = relay_ingest
                async with await _peer_connection(peer_url) as connection:
                    await connection.execute("TRUNCATE procrastinate_jobs CASCADE")
                worker = self.start("peer-worker", worker_args)
                figure["dispatch"] = await self.peer_dispatch(peer_url, worker, subscriber_url)
                raw = await self.run_latency(
                    f"http://127.0.0.1:{port}/ingest/bringg",
                    latency_port,
                    self.workdir / "peer-latency.json",
                    rate=self.profile.peer_latency_rate,
                    seconds=self.profile.peer_latency_seconds,
                    per_webhook=3,
                )
            finally:
                if worker is not None:
                    self.stop(worker)
                self.stop(serve)
            figure["latency"] = _latency_figure(raw, "peer latency")
            figure["latency"].pop("latencies_ms")
        finally:
            admin = await asyncpg.connect(self.server_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                await admin.close()
        relay_latency = await self.latency_run(
            "relay-serve-peer-latency",
            ["serve"],
            rate=self.profile.peer_latency_rate,
            seconds=self.profile.peer_latency_seconds,
            subscribers=3,
        )
        relay_latency.pop("latencies_ms")
        figure["relay_latency"] = relay_latency
        self.figures["peer"] = figure

    async def ingest_beside_peer(self, peer_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The peer's ingest and a `relay serve --no-dispatcher` of its own with the same 3
        subscriptions wanting its webhooks, in alternating rounds (see `alternate`)."""
        serve, port = self.start_relay("relay-serve-beside-peer", "serve", "--no-dispatcher")
        base = f"http://127.0.0.1:{port}"
        try:
            async with admin_client(base) as api:
                await self.quiet(api)
                for subscription in self.three:
                    await self.set_matching(api, subscription, matching=True)
                rounds = await self.alternate(
                    {"relay": f"{base}/ingest/bringg", "peer": peer_url},
                    self.profile.ingest_seconds,
                )
                await self.quiet(api)
        finally:
            self.stop(serve)
        async with self.db() as connection:
            await self.close_pending(connection)
        return _rounds_summary(rounds["peer"]), _rounds_summary(rounds["relay"])

    async def peer_dispatch(
        self, peer_url: str, worker: Process, subscriber_url: str
    ) -> dict[str, Any]:
        """The peer's worker draining a backlog of `peer_backlog` jobs; its queue left empty."""
        from bench import peer_procrastinate

        # One job first: once it is done, the worker is up and connected.
        await peer_procrastinate.defer_backlog(peer_url, f"{subscriber_url}/hook", 1)
        await _peer_drained(peer_url, worker, within=60)
        backlog = self.profile.peer_backlog
        await peer_procrastinate.defer_backlog(peer_url, f"{subscriber_url}/hook", backlog)
        started = time.monotonic()
        # procrastinate's worker fetches one job per round trip: on a loaded machine it can
        # take far longer than the relay's worker, so a slow drain is measured for what it did
        # rather than failing the run.
        drained = await _peer_drained(peer_url, worker, within=PEER_DRAIN_SECONDS, fail=False)
        seconds = time.monotonic() - started
        async with await _peer_connection(peer_url) as connection:
            succeeded = await (
                await connection.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                )
            ).fetchone()
            # What is left (nothing, once drained) must not reach the latency's subscriber.
            await connection.execute("TRUNCATE procrastinate_jobs CASCADE")
        # The probe job succeeded too.
        done = succeeded[0] - 1 if succeeded else 0
        return {
            "deliveries": backlog,
            "drained": drained,
            "succeeded": done,
            "seconds": seconds,
            "per_s": done / seconds,
        }

    async def history(self) -> None:
        """Figure 3 again on a database that holds history: at least `history_deliveries`
        finished deliveries with their events, request log rows, dedupe keys and attempts, as
        the relay would have written them over the past weeks; then with `relay serve
        --workers N` when that option exists."""
        async with self.db() as connection:
            await self.close_pending(connection)
            await self.seed_history(connection, self.profile.history_deliveries)
            rows = await connection.fetchval(
                "SELECT count(*) FROM deliveries WHERE status <> 'pending'"
            )
            # What the history costs on disk, tables with their indexes and TOAST, for
            # docs/scaling.md's growth figures.
            sizes = {
                table: await connection.fetchval("SELECT pg_total_relation_size($1)", table)
                for table in _HISTORY_TABLES
            }
            webhooks = await connection.fetchval("SELECT count(*) FROM inbound_requests")
        figure: dict[str, Any] = {
            "finished_deliveries": rows,
            "webhooks": webhooks,
            "table_mb": {table: size / 2**20 for table, size in sizes.items()},
            "bytes_per_webhook": sum(sizes.values()) / webhooks,
        }
        one = await self.latency_run(
            "relay-serve-history",
            ["serve"],
            rate=self.profile.latency_rate,
            seconds=self.profile.latency_seconds,
        )
        one.pop("latencies_ms")
        figure["one_process"] = one
        workers = self.profile.history_serve_workers
        if await asyncio.to_thread(_serve_has_workers):
            many = await self.latency_run(
                f"relay-serve-history-{workers}",
                ["serve", f"--workers={workers}"],
                rate=self.profile.latency_rate,
                seconds=self.profile.latency_seconds,
            )
            many.pop("latencies_ms")
            figure["workers"] = {"available": True, "count": workers, **many}
        else:
            figure["workers"] = {
                "available": False,
                "count": workers,
                "reason": "`relay serve --help` has no --workers option in this build",
            }
        self.figures["history"] = figure

    async def seed_history(self, connection: asyncpg.Connection, deliveries: int) -> None:
        """Bulk history in the relay's shape: per webhook one request log row, one dedupe key,
        one event and 3 finished deliveries (to the 3 subscriptions of figure 1), each with one
        succeeded attempt, spread over the past 29 days (inside the default retention, so no
        purge runs into the figure). Then VACUUM ANALYZE, as autovacuum would have done: this
        machine's PostgreSQL runs with it off."""
        sample = orjson.loads(self.sample_path.read_bytes())
        event = sample["event"]
        webhooks = -(-deliveries // 3)
        attempt = await connection.fetchrow(
            "SELECT request_headers::text, response_headers::text, response_body, decision "
            "FROM delivery_attempts WHERE outcome = 'succeeded' LIMIT 1"
        )
        if attempt is None:
            attempt = {
                "request_headers": orjson.dumps(_ATTEMPT_HEADERS).decode(),
                "response_headers": '{"content-length": "2"}',
                "response_body": "ok",
                "decision": "succeeded",
            }
        async with connection.transaction():
            await connection.execute(
                _SEED_REQUESTS,
                webhooks,
                sample["source_id"],
                sample["slug"],
                bringg_template().encode(),
            )
            await connection.execute(
                _SEED_EVENTS,
                webhooks,
                sample["source_id"],
                event["type"],
                event["vendor"],
                event["vendor_event_name"],
                event["subject_kind"],
                event["envelope"],
            )
            await connection.execute(_SEED_DELIVERIES, self.three)
            await connection.execute(
                _SEED_ATTEMPTS,
                attempt["request_headers"],
                attempt["response_headers"],
                attempt["response_body"],
                attempt["decision"],
            )
        for table in _HISTORY_TABLES:
            await connection.execute(f"VACUUM ANALYZE {table}")

    # Helpers

    async def api(
        self, api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        response = await api.request(method, path, json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json() if response.content else {}
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
        if matching:
            self.matching.add(subscription_id)
        return subscription_id

    async def set_matching(
        self, api: httpx.AsyncClient, subscription: str, *, matching: bool
    ) -> None:
        """Switches a subscription's interest in the bench's webhooks on or off. (A pause would
        not do: a paused subscription still gets deliveries, held until it is resumed.)"""
        await self.api(api, "PATCH", f"/v1/subscriptions/{subscription}", _matching(matching))
        if matching:
            self.matching.add(subscription)
        else:
            self.matching.discard(subscription)

    async def quiet(self, api: httpx.AsyncClient) -> None:
        """No subscription wants the bench's webhooks: a figure then adds the ones it measures."""
        for subscription in list(self.matching):
            await self.set_matching(api, subscription, matching=False)

    async def close_pending(self, connection: asyncpg.Connection) -> None:
        """Marks what earlier figures left pending as delivered: history, not backlog. Then
        VACUUM ANALYZE, as autovacuum would after an update of that size: without it, each
        row updated stays in the due index as a dead entry that every claim of the next
        figure walks past (figure 3 after figure 1: p50 16.4 ms against 4.8 on a fresh
        database)."""
        await connection.execute(
            "UPDATE deliveries SET status = 'succeeded', completed_at = now(), "
            "locked_by = NULL, locked_until = NULL WHERE status = 'pending'"
        )
        await connection.execute("VACUUM ANALYZE deliveries")

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

    async def wait_listeners(
        self, connection: asyncpg.Connection, workers: list[Process], within: float
    ) -> None:
        """Until each worker's dispatcher has its LISTEN connection open on this database."""
        deadline = time.monotonic() + within
        while await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
        ) < len(workers):
            for worker in workers:
                worker.check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(workers)} workers not listening within {within:g} s")
            await asyncio.sleep(0.1)

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


async def drain_summary(
    connection: asyncpg.Connection, prefix: str, inserted_at: datetime
) -> dict[str, Any]:
    """What a drained backlog (the deliveries whose ids start with `prefix`, due from
    `inserted_at`) came to, timed to its last completion; with the attempts that did not
    succeed, by error (or status): the subscriber is healthy and local, so any is a fault of
    the sender (issue 16 saw ReadErrors here)."""
    row = await connection.fetchrow(
        "SELECT max(completed_at) AS last, "
        "count(*) FILTER (WHERE status = 'succeeded') AS succeeded, "
        "sum(attempts) AS attempts "
        "FROM deliveries WHERE starts_with(id, $1)",
        prefix,
    )
    failed = await connection.fetch(
        "SELECT coalesce(error_class, response_status::text, 'none') AS error, count(*) AS n "
        "FROM delivery_attempts WHERE starts_with(delivery_id, $1) AND outcome <> 'succeeded' "
        "GROUP BY 1",
        prefix,
    )
    seconds = (row["last"] - inserted_at).total_seconds()
    return {
        "succeeded": row["succeeded"],
        "attempts": row["attempts"],
        "failed_attempts": {failure["error"]: failure["n"] for failure in failed},
        "seconds": seconds,
        "per_s": row["succeeded"] / seconds,
    }


# Deliveries of the events already in the table, round robin; ids sort in insertion order.
_INSERT_DELIVERIES = """
INSERT INTO deliveries (id, event_id, subscription_id, status, held, attempts, next_attempt_at,
                        event_timestamp, created_at, updated_at, completed_at)
SELECT $1 || lpad(g::text, 8, '0'), ev.ids[1 + g % array_length(ev.ids, 1)], $2,
       {status}, false, 0, now(), now(), now(), now(), {completed}
FROM generate_series($3::int + 1, $3::int + $4::int) AS g,
     (SELECT array_agg(id) AS ids FROM (SELECT id FROM events LIMIT 5000) AS recent) AS ev
"""


# What claims did to the pending rows, undone: due again, unleased, unparked.
_UNDO_CLAIMS = """
UPDATE deliveries SET locked_by = NULL, locked_until = NULL, parked = false,
                      next_attempt_at = created_at
WHERE status = 'pending';
DELETE FROM subscription_throttles;
"""


_HISTORY_TABLES = ("inbound_requests", "dedupe_keys", "events", "deliveries", "delivery_attempts")
# The history's ids sort before the relay's own (ULIDs, "01..."), as older rows would.
_HISTORY_WHEN = "now() - interval '29 days' + g * (interval '29 days' / $1::int)"
_SEED_REQUESTS = f"""
INSERT INTO inbound_requests (id, source_id, slug, received_at, verdict, reason, status_code,
                              body_size, content_type, remote_addr, headers, body,
                              accepted_count, duplicate_count, event_ids)
SELECT 'req_00H' || lpad(g::text, 12, '0'), $2, $3, {_HISTORY_WHEN}, 'accepted', '', 200,
       octet_length($4::bytea), 'application/json', '127.0.0.1',
       jsonb_build_object('content-type', 'application/json', 'authorization', '[redacted]',
                          'user-agent', 'Bringg-Webhooks',
                          'content-length', octet_length($4::bytea)::text, 'host', '127.0.0.1'),
       $4::bytea, 1, 0, ARRAY['evt_00H' || lpad(g::text, 12, '0')]
FROM generate_series(1, $1::int) AS g
"""  # noqa: S608 (formatted only with the constant above)
_SEED_EVENTS = f"""
WITH keys AS (
    INSERT INTO dedupe_keys (source_id, key, event_id, created_at)
    SELECT $2, 'history:' || g, 'evt_00H' || lpad(g::text, 12, '0'), {_HISTORY_WHEN}
    FROM generate_series(1, $1::int) AS g
)
INSERT INTO events (id, source_id, request_id, type, vendor, vendor_event_name, vendor_event_id,
                    subject_kind, subject_id, occurred_at, received_at, envelope)
SELECT 'evt_00H' || lpad(g::text, 12, '0'), $2, 'req_00H' || lpad(g::text, 12, '0'), $3, $4,
       $5, NULL, $6, g::text, {_HISTORY_WHEN}, {_HISTORY_WHEN}, $7
FROM generate_series(1, $1::int) AS g
"""  # noqa: S608 (formatted only with the constant above)
_SEED_DELIVERIES = """
INSERT INTO deliveries (id, event_id, subscription_id, status, held, parked, attempts,
                        next_attempt_at, event_timestamp, last_status_code, created_at,
                        updated_at, completed_at)
SELECT 'dlv_00H' || substr(e.id, 8) || s.n, e.id, s.id, 'succeeded', false, false, 1,
       e.received_at, e.occurred_at, 200, e.received_at, e.received_at + interval '40 ms',
       e.received_at + interval '40 ms'
FROM events AS e, unnest($1::text[]) WITH ORDINALITY AS s(id, n)
WHERE e.id LIKE 'evt_00H%'
"""
_SEED_ATTEMPTS = """
INSERT INTO delivery_attempts (id, delivery_id, subscription_id, attempt_number, started_at,
                               duration_ms, request_url, request_headers, response_status,
                               response_headers, response_body, outcome, decision)
SELECT 'att_00H' || substr(d.id, 8), d.id, d.subscription_id, 1,
       d.created_at + interval '25 ms', 12, 'http://127.0.0.1/hook', $1::jsonb, 200, $2::jsonb,
       $3, 'succeeded', $4
FROM deliveries AS d
WHERE d.id LIKE 'dlv_00H%'
"""
_ATTEMPT_HEADERS = {
    "content-type": "application/json",
    "webhook-id": "evt_00H000000000001",
    "webhook-timestamp": "1767225600",
    "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    "user-agent": "relay",
}


def _serve_has_workers() -> bool:
    """Whether this build's `relay serve` takes --workers."""
    help_text = subprocess.run(  # noqa: S603 - our own command
        [relay_executable(), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=base_env(COLUMNS="200"),
    ).stdout
    return "--workers" in help_text


async def _peer_connection(url: str) -> Any:
    # Imported here, as the peer's module is: only the peer's figure needs psycopg.
    import psycopg

    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def _peer_drained(url: str, worker: Process, *, within: float, fail: bool = True) -> bool:
    """Until the peer's queue has no job left to do or doing; whether it got there in time
    (or an error, with `fail`)."""
    deadline = time.monotonic() + within
    async with await _peer_connection(url) as connection:
        while True:
            row = await (
                await connection.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
                )
            ).fetchone()
            if row is not None and row[0] == 0:
                return True
            worker.check_running()
            if time.monotonic() > deadline:
                if fail:
                    raise RuntimeError(f"peer backlog not drained within {within:g} s")
                return False
            await asyncio.sleep(0.05)


def _latency_figure(raw: dict[str, Any], name: str) -> dict[str, Any]:
    latencies = sorted(raw["latencies_ms"])
    if not latencies:
        raise RuntimeError(f"{name}: nothing delivered of {raw['sent']}: {raw}")
    return {
        "rate": raw["offered_rate"],
        "achieved_rate": raw["achieved_rate"],
        "sent": raw["sent"],
        "skipped": raw["skipped"],
        "per_webhook": raw["per_webhook"],
        "delivered": raw["delivered"],
        "delivered_webhooks": raw["delivered_webhooks"],
        "failed": raw["failed"],
        "p50_ms": _percentile(latencies, 50),
        "p90_ms": _percentile(latencies, 90),
        "p99_ms": _percentile(latencies, 99),
        "max_ms": latencies[-1],
        # Vendor POST sent -> answered 200: the ingest's share of the latency.
        "answer_p50_ms": _percentile(raw["answer_ms"], 50) if raw["answer_ms"] else None,
        "answer_p99_ms": _percentile(raw["answer_ms"], 99) if raw["answer_ms"] else None,
        "latencies_ms": latencies,
    }


def _per_delivery(used: dict[str, float], deliveries: int) -> dict[str, float]:
    return {name: seconds * 1000 / deliveries for name, seconds in used.items()}


def _rounds_summary(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """A contender's rounds as one figure: the median round's, and every round's rate."""
    return {
        "per_s": statistics.median(result["per_second"] for result in rounds),
        "rounds_per_s": [result["per_second"] for result in rounds],
        "answered": sum(result["ok"] for result in rounds),
        "failed": sum(result["failed"] for result in rounds),
        "p50_ms": statistics.median(result["p50_ms"] for result in rounds),
        "p99_ms": statistics.median(result["p99_ms"] for result in rounds),
    }


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


async def run(
    profile: Profile,
    server_url: str,
    results_dir: Path,
    use_wrk: bool,
    only: frozenset[str] = frozenset(FIGURES),
) -> Path:
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        bench = Run(profile, server_url, Path(tmp), use_wrk)
        started = time.monotonic()
        await bench.create_database()
        # This machine's PostgreSQL runs without autovacuum; production's does not.
        autoanalyze = AutoAnalyze(bench.database_url)
        autoanalyze.start()
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

            step("sources, subscriptions and one sample webhook")
            await bench.setup(subscriber_url)
            if "ingest" in only or "floor" in only:
                step(
                    "figures 1, 5, 6: relay serve --no-dispatcher and the ingest floors in "
                    f"{profile.rounds} alternating rounds; fan-out"
                )
                await bench.ingest_and_floors(
                    subscriber_url, relay="ingest" in only, floors="floor" in only
                )
            if "dispatch" in only:
                step(f"figures 2, 5: relay worker draining {profile.backlog} deliveries, floor")
                await bench.dispatch(bench.backlog_subscription, subscriber_url, subscriber.pid)
            if "scaling" in only:
                step(
                    f"figures 9, 10: {profile.scaling_backlog} deliveries drained by "
                    f"{', '.join(map(str, profile.scaling_workers))} workers; claim ceiling"
                )
                await bench.scaling()
            if "peer" in only:
                step("figure 8: the FastAPI + procrastinate peer, and the relay beside it")
                await bench.peer(subscriber_url)
            bench.stop(subscriber)
            if "latency" in only:
                step(f"figure 3: latency at {profile.latency_rate:g}/s against relay serve")
                await bench.latency()
            if "claim" in only:
                step(f"figure 4: claim batch, {profile.claim_small} vs {profile.claim_large} rows")
                await bench.claim_scale(bench.backlog_subscription)
            if "isolation" in only:
                step(f"figure 7: isolation, {profile.isolation_hanging} hanging subscriptions")
                await bench.isolation()
            if "history" in only:
                step(
                    f"figure 3 on a database with {profile.history_deliveries:,} finished "
                    "deliveries"
                )
                await bench.history()
            step("done")
        except BaseException:
            for process in bench.processes:
                print(f"--- {process.name} log ---\n{process.log_tail()}", file=sys.stderr)
            raise
        finally:
            await autoanalyze.stop()
            bench.cleanup()
            await bench.drop_database()
        bench.figures["autoanalyze"] = {
            "naptime_s": autoanalyze.naptime,
            "tables_analyzed": len(autoanalyze.analyzed),
        }
        results = summarize(
            bench.figures,
            profile=asdict(profile),
            machine=machine(version, "wrk" if bench.wrk else "python (bench.loadgen)"),
            seconds=time.monotonic() - started,
        )
    print_table(results)
    return write_results(results, results_dir)


def _figures(value: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in value.split(",") if name.strip())
    unknown = names - set(FIGURES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown figure(s) {', '.join(sorted(unknown)) or '(none given)'}: "
            f"choose among {','.join(FIGURES)}"
        )
    return names


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
    parser.add_argument(
        "--only",
        type=_figures,
        default=frozenset(FIGURES),
        metavar="FIGURES",
        help="Comma-separated figures to measure, the others left out: "
        + ",".join(FIGURES)
        + " (default: all).",
    )
    args = parser.parse_args()
    server = args.database_url or os.environ.get("RELAY_BENCH_DATABASE_URL") or DEFAULT_SERVER
    path = asyncio.run(
        run(SMOKE if args.smoke else FULL, server, args.results_dir, not args.no_wrk, args.only)
    )
    print(f"\nresults: {path}")
    if "console" not in args.only:
        return
    # The console's pages, on a database of their own (bench/console.py).
    deliveries, requests = (2_000, 2) if args.smoke else (console.FULL_DELIVERIES, 20)
    console.run_console(server, deliveries=deliveries, requests=requests, results_dir=path.parent)
