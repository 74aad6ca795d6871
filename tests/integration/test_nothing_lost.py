"""Kill things and count: `relay serve` SIGKILLed while 1,000 webhooks arrive, and PostgreSQL
stopped under load. Every webhook that got a 200 is stored and delivered; every other one is
absent or stored and delivered whole; nothing is ever half-stored."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from relay.app import create_app
from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.processes import DisposablePostgres, RelayServer, relay_env
from tests.support.relay import (
    create_routestripe_source,
    routestripe_batch,
    routestripe_signature,
    visit_event,
)
from tests.support.subscriber import Subscriber, eventually

WEBHOOKS = 1000

# Rows breaking "all or nothing": an event without its accepted request or without a delivery
# for the catch-all subscription, an accepted request whose events are not all there.
HALF_STORED = """
SELECT 'event without accepted request', e.id FROM events e
  LEFT JOIN inbound_requests r ON r.id = e.request_id
  WHERE r.id IS NULL OR r.verdict <> 'accepted' OR r.status_code <> 200
UNION ALL
SELECT 'accepted request missing events', r.id FROM inbound_requests r
  WHERE r.verdict = 'accepted' AND (r.accepted_count <> cardinality(r.event_ids)
    OR r.accepted_count <> (SELECT count(*) FROM events e WHERE e.request_id = r.id))
UNION ALL
SELECT 'event without delivery', e.id FROM events e
  WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
"""


@dataclass
class Outcomes:
    """What each posted webhook (by its vendor event id) got back."""

    statuses: dict[str, int | str] = field(default_factory=dict)
    event_ids: dict[str, str] = field(default_factory=dict)

    def ok(self) -> list[str]:
        return [key for key, status in self.statuses.items() if status == 200]

    def not_ok(self) -> list[str]:
        return [key for key, status in self.statuses.items() if status != 200]


async def post_one(http: httpx.AsyncClient, outcomes: Outcomes) -> int | str:
    event = visit_event()
    body = routestripe_batch([event])
    try:
        response = await http.post(
            "/ingest/rs",
            content=body,
            headers={
                "X-Signature": routestripe_signature(body),
                "Content-Type": "application/json",
            },
        )
    except httpx.TransportError as exc:
        outcomes.statuses[event["id"]] = type(exc).__name__
        return type(exc).__name__
    outcomes.statuses[event["id"]] = response.status_code
    if response.status_code == 200:
        [outcomes.event_ids[event["id"]]] = response.json()["event_ids"]
    return response.status_code


async def set_up_relay(relay: RelayServer, subscriber: Subscriber) -> None:
    async with relay.admin() as admin:
        await create_routestripe_source(admin)
        subscription = await admin.post(
            "/v1/subscriptions", json={"url": subscriber.url(), "max_concurrency": 50}
        )
        assert subscription.status_code == 201, subscription.text


async def stored(database_url: str) -> tuple[dict[str, str], list[Any]]:
    """Vendor event id -> event id for every stored event, and every half-stored row."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        events = await connection.fetch("SELECT vendor_event_id, id FROM events")
        broken = await connection.fetch(HALF_STORED)
    finally:
        await connection.close()
    return {row["vendor_event_id"]: row["id"] for row in events}, [tuple(row) for row in broken]


def delivered(subscriber: Subscriber) -> set[str]:
    return {item.headers["webhook-id"] for item in subscriber.received}


async def test_sigkill_while_1000_webhooks_arrive_loses_nothing_that_got_a_200(
    module_database_url: str,
    engine: Any,
    subscriber: Subscriber,
    tmp_path: Path,
) -> None:
    env = relay_env(module_database_url, tmp_path / "data")
    outcomes = Outcomes()
    first = RelayServer(env, tmp_path / "relay-1.log", dispatcher=False)
    async with first.running():
        await set_up_relay(first, subscriber)
        async with httpx.AsyncClient(
            base_url=first.base_url,
            limits=httpx.Limits(max_connections=50),
            timeout=httpx.Timeout(30.0),
        ) as http:
            # One first, alone: the relay's first request opens its pool, which under a burst
            # of 50 at once can take seconds on a busy machine.
            assert await post_one(http, outcomes) == 200
            posting = asyncio.gather(*(post_one(http, outcomes) for _ in range(WEBHOOKS)))
            # Killed with a good part answered and a good part still in flight.
            await eventually(lambda: len(outcomes.ok()) >= WEBHOOKS // 10, within=60)
            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)
            async with asyncio.timeout(60):
                await posting

    ok, not_ok = outcomes.ok(), outcomes.not_ok()
    assert len(outcomes.statuses) == WEBHOOKS + 1
    assert len(ok) >= WEBHOOKS // 10
    assert not_ok, "the kill should have landed with webhooks in flight"
    # Before the kill, a request the relay could not serve at once was a 503 (its connection
    # pool full), never a 500; after it, the connection failed.
    refused = {status for status in outcomes.statuses.values() if status != 200}
    assert refused <= {503, "ReadError", "RemoteProtocolError", "ConnectError"}, refused
    events, broken = await stored(module_database_url)
    assert broken == []
    # A 200 means stored, with the id the relay answered.
    for key in ok:
        assert events.get(key) == outcomes.event_ids[key], key
    in_doubt = [key for key in not_ok if key in events]

    second = RelayServer(env, tmp_path / "relay-2.log", dispatcher=True)
    async with second.running():
        expected = set(events.values())
        await eventually(lambda: expected <= delivered(subscriber), within=90)

    # Everything stored was delivered after the restart: what got a 200, and what was stored
    # whole although its answer was lost to the kill. Nothing else reached the subscriber.
    assert delivered(subscriber) == expected
    assert {outcomes.event_ids[key] for key in ok} <= delivered(subscriber)
    assert {events[key] for key in in_doubt} <= delivered(subscriber)
    _, broken = await stored(module_database_url)
    assert broken == []


@dataclass
class LoadResult:
    outcomes: Outcomes = field(default_factory=Outcomes)
    unexpected: list[int | str] = field(default_factory=list)


async def keep_posting(base_url: str, result: LoadResult, stop: asyncio.Event) -> None:
    """Steady load from four clients until `stop`: each answer must be a 200 or a 503."""
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(20.0)) as http:

        async def one_client() -> None:
            while not stop.is_set():
                status = await post_one(http, result.outcomes)
                if status not in {200, 503}:
                    result.unexpected.append(status)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(one_client() for _ in range(4)))


async def test_postgres_down_then_back_503s_meanwhile_and_flows_again_without_restart(
    subscriber: Subscriber, tmp_path: Path
) -> None:
    postgres = DisposablePostgres()
    with postgres.running():
        relay = RelayServer(
            relay_env(postgres.url, tmp_path / "data"), tmp_path / "relay.log", dispatcher=True
        )
        async with relay.running(), relay.admin() as admin:
            await set_up_relay(relay, subscriber)
            assert (await admin.get("/readyz")).status_code == 200
            result = LoadResult()
            stop = asyncio.Event()
            load = asyncio.create_task(keep_posting(relay.base_url, result, stop))
            try:
                await eventually(lambda: len(result.outcomes.ok()) >= 10, within=30)

                await asyncio.to_thread(postgres.stop)
                down_answers: list[httpx.Response] = []
                for _ in range(5):
                    down_answers.append(await post_during_outage(relay.base_url))
                    await asyncio.sleep(0.4)
                ready = await admin.get("/readyz")
                assert ready.status_code == 503, ready.text

                await asyncio.to_thread(postgres.start)
                ok_before = len(result.outcomes.ok())
                await eventually(lambda: len(result.outcomes.ok()) >= ok_before + 10, within=30)
                await eventually(lambda: ready_again(admin), within=30)
            finally:
                stop.set()
                async with asyncio.timeout(30):
                    await load

            for answer in down_answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"]
                assert "database" in answer.json()["error"]["message"]
            assert result.unexpected == []
            outcomes = result.outcomes
            assert 503 in outcomes.statuses.values()
            events, broken = await stored(postgres.url)
            assert broken == []
            for key in outcomes.ok():
                assert events.get(key) == outcomes.event_ids[key], key
            # A 503 is mostly "not stored"; one whose commit landed as the server went down is
            # stored whole, and delivered like the rest (the vendor's retry is deduplicated).
            await eventually(lambda: set(events.values()) <= delivered(subscriber), within=60)
            assert len([key for key in outcomes.not_ok() if key in events]) <= 4


async def post_during_outage(base_url: str) -> httpx.Response:
    event = visit_event()
    body = routestripe_batch([event])
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(20.0)) as http:
        return await http.post(
            "/ingest/rs",
            content=body,
            headers={"X-Signature": routestripe_signature(body)},
        )


async def ready_again(admin: httpx.AsyncClient) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return (await admin.get("/readyz")).status_code == 200
    return False


async def test_every_database_connection_busy_is_a_503_to_retry_not_a_500(
    settings: Settings, engine: Any, module_database_url: str
) -> None:
    one_connection = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_connect_timeout": 0.5}
    )
    app = create_app(one_connection, database_url=module_database_url)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://relay.test",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as http,
    ):
        await create_routestripe_source(http)
        async with app.state.engine.connect() as held:
            await held.exec_driver_sql("SELECT 1")
            answer = await http.post("/ingest/rs", content=b"{}")
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"]
        assert "retry" in answer.json()["error"]["message"]
        # Once the connection is free again, the same pool serves.
        assert (await http.get("/v1/sources")).status_code == 200
    events, broken = await stored(module_database_url)
    assert events == {}
    assert broken == []
