"""One bad subscriber never slows the others, tried from the outside: a real `relay serve` (and
a second `relay worker`), subscribers on sockets of 127.0.0.1 that hang or trickle, and a
healthy one whose POST -> received latency is compared with its latency alone.

Each run is short (a few seconds at 20 webhooks/s); `python -m bench` measures the same
scenario at length. The ratio's floor: a p99 of a few milliseconds doubles with any hiccup of a
shared two-core machine, so the comparison is made against at least LATENCY_FLOOR_MS.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.isolation import percentile, scenario
from bench.payloads import BRINGG_TOKEN, bringg_body, bringg_template

from tests.support.processes import RELAY, RelayServer, relay_env
from tests.support.subscriber import Answer, Subscriber

RATE = 20.0
SECONDS = 8.0
WARMUP = 2.0
LATENCY_FLOOR_MS = 100.0
_ids = itertools.count(1_000_000, 100_000)

pytestmark = pytest.mark.timeout(600)


@contextlib.asynccontextmanager
async def relay(
    database_url: str, tmp_path: Path, *, workers: int = 1, **settings: str
) -> AsyncIterator[httpx.AsyncClient]:
    """`relay serve` with its dispatcher, `workers - 1` more `relay worker`s, and a Bringg
    source; yields an admin client."""
    env = relay_env(database_url, tmp_path / "data", **settings)
    server = RelayServer(env, tmp_path / "serve.log", dispatcher=True)
    extra: list[asyncio.subprocess.Process] = []
    async with server.running():
        try:
            for number in range(workers - 1):
                with (tmp_path / f"worker-{number}.log").open("ab") as log:
                    extra.append(
                        await asyncio.create_subprocess_exec(
                            RELAY, "worker", env=env, stdout=log, stderr=log
                        )
                    )
            async with server.admin(timeout=30) as api:
                created = await api.post(
                    "/v1/sources",
                    json={
                        "slug": "bringg",
                        "vendor": "bringg",
                        "verification": {"type": "header_token", "token": BRINGG_TOKEN},
                    },
                )
                assert created.status_code == 201, created.text
                yield api
        finally:
            for process in extra:
                if process.returncode is None:
                    process.terminate()
            for process in extra:
                async with asyncio.timeout(30):
                    await process.wait()


async def run(api: httpx.AsyncClient, **options: Any) -> dict[str, Any]:
    result = await scenario(
        api,
        f"{api.base_url}/ingest/bringg",
        rate=RATE,
        duration=SECONDS,
        warmup=WARMUP,
        first_id=next(_ids),
        **options,
    )
    assert result["failed"] == 0, result
    # The healthy subscriber got every webhook.
    assert result["delivered"] == result["sent"] > 0, result
    result["p99_ms"] = percentile(result["latencies_ms"], 99)
    return result


async def crowded_run(
    api: httpx.AsyncClient, alone: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """A run beside misbehaving subscribers whose healthy p99 is within 2x of `alone`'s.
    A run over the bound is made once more: one disturbed by the shared machine (a p99 is a
    handful of webhooks) must not fail the build, a relay that is not isolated misses twice."""
    limit = 2 * max(alone["p99_ms"], LATENCY_FLOOR_MS)
    crowded = await run(api, **options)
    if crowded["p99_ms"] > limit:
        crowded = await run(api, **options)
    assert crowded["p99_ms"] <= limit, (alone["p99_ms"], crowded["p99_ms"])
    return crowded


@pytest.mark.parametrize("workers", [1, 2])
async def test_fifty_hanging_subscriptions_at_max_concurrency_100_leave_the_healthy_one_alone(
    module_database_url: str, engine: Any, tmp_path: Path, workers: int
) -> None:
    async with relay(
        module_database_url, tmp_path, workers=workers, RELAY_DELIVERY_TIMEOUT="3"
    ) as api:
        alone = await run(api, bad=0)
        crowded = await crowded_run(api, alone, bad=50, bad_max_concurrency=100)
    # The hanging ones still got their attempts: each made, timed out, and to be retried.
    assert all(timeouts >= 1 for timeouts in crowded["bad_timeouts"]), crowded["bad_timeouts"]


async def test_ten_hanging_and_a_trickling_subscriber_at_default_settings(
    module_database_url: str, engine: Any, tmp_path: Path
) -> None:
    async with relay(module_database_url, tmp_path) as api:
        alone = await run(api, bad=0)
        await crowded_run(api, alone, bad=10)
        await crowded_run(api, alone, bad=1, behaviour="trickle")


async def test_a_slow_but_working_subscriber_still_drains_at_its_max_concurrency(
    module_database_url: str, engine: Any, tmp_path: Path, subscriber: Subscriber
) -> None:
    answer_seconds = 2.0
    subscriber.script("/slow", then=Answer(200, delay=answer_seconds))
    template = bringg_template()
    async with relay(module_database_url, tmp_path) as api:
        created = await api.post(
            "/v1/subscriptions", json={"url": subscriber.url("/slow"), "max_concurrency": 10}
        )
        assert created.status_code == 201, created.text
        for run_id in range(40):
            posted = await api.post(
                "/ingest/bringg",
                content=bringg_body(template, 5_000_000 + run_id),
                headers={"Authorization": f"Bearer {BRINGG_TOKEN}"},
            )
            assert posted.status_code == 200, posted.text
        received = await subscriber.wait_for(40, path="/slow", within=60)
    arrivals = sorted(item.at for item in received)
    # Requests open at once: those that arrived within one answer time before each arrival.
    open_at_once = max(
        sum(1 for other in arrivals if arrival - answer_seconds < other <= arrival)
        for arrival in arrivals
    )
    assert open_at_once == 10
