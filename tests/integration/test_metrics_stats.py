"""GET /metrics and GET /v1/stats against the tables, and logs that follow one webhook."""

from __future__ import annotations

import contextlib
import io
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import httpx
import orjson
import structlog
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.ids import new_id
from relay.core.logging import configure_logging
from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    relay_client,
    routestripe_batch,
    visit_event,
)
from tests.support.subscriber import Answer, Subscriber, eventually


@contextlib.asynccontextmanager
async def relay_with_dispatcher(
    settings: Settings, database_url: str, *, dispatcher: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process as `relay serve` runs it: API and dispatcher share one registry."""
    fast = settings.model_copy(
        update={"dispatcher_poll_interval": 0.2, "delivery_timeout": 5.0, "shutdown_grace": 2.0}
    )
    async with relay_client(
        fast, database_url, admin_token=ADMIN_TOKEN, run_dispatcher=dispatcher
    ) as http:
        yield http


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody"


async def subscribe(client: httpx.AsyncClient, url: str, **fields: Any) -> str:
    response = await client.post("/v1/subscriptions", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    subscription_id: str = response.json()["id"]
    return subscription_id


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(
        value for (sample, got), value in samples.items() if sample == name and wanted <= got
    )


async def rows(session_factory: async_sessionmaker[AsyncSession], sql: str) -> dict[str, int]:
    async with session_factory() as session:
        return {str(key): int(count) for key, count in (await session.execute(text(sql))).all()}


async def nothing_pending(session_factory: async_sessionmaker[AsyncSession]) -> bool:
    return not await rows(
        session_factory,
        "SELECT status, count(*) FROM deliveries WHERE status = 'pending' GROUP BY 1",
    )


async def test_metrics_counters_agree_with_the_tables(
    settings: Settings,
    engine: Any,
    module_database_url: str,
    session_factory: async_sessionmaker[AsyncSession],
    subscriber: Subscriber,
) -> None:
    subscriber.script("/ok", then=Answer(200))
    subscriber.script("/reject", then=Answer(422))
    subscriber.script("/flaky", *[Answer(500)] * 6, then=Answer(200))
    async with relay_with_dispatcher(settings, module_database_url) as client:
        await create_routestripe_source(client)
        await subscribe(client, subscriber.url("/ok"))
        await subscribe(client, subscriber.url("/reject"))
        await subscribe(client, subscriber.url("/flaky"), retry_schedule=[1])
        await subscribe(client, closed_port_url(), retry_schedule=[1])
        batches = [[visit_event(), visit_event(event="visit.updated")] for _ in range(3)]
        for batch in batches:
            assert (await post_routestripe(client, batch)).status_code == 200
        assert (await post_routestripe(client, batches[0])).json()["duplicates"] == 2
        forged = await client.post(
            "/ingest/rs",
            content=routestripe_batch([visit_event()]),
            headers={"X-Signature": "0" * 64},
        )
        assert forged.status_code == 401

        await eventually(lambda: nothing_pending(session_factory), within=30)
        samples = await scrape(client)

    attempts = await rows(
        session_factory, "SELECT outcome, count(*) FROM delivery_attempts GROUP BY 1"
    )
    # 6 events x 4 subscriptions: /ok and /reject once each, /flaky and the dead port twice.
    assert sum(attempts.values()) == 6 * 6
    for outcome in ("succeeded", "pending", "failed"):
        assert total(samples, "relay_delivery_attempts_total", outcome=outcome) == attempts.get(
            outcome, 0
        ), outcome
    classes = await rows(
        session_factory,
        "SELECT COALESCE((response_status / 100)::text || 'xx', 'network'), count(*) "
        "FROM delivery_attempts GROUP BY 1",
    )
    assert classes == {"2xx": 12, "4xx": 6, "5xx": 6, "network": 12}
    for status_class, count in classes.items():
        assert total(samples, "relay_delivery_attempts_total", status_class=status_class) == count
    deliveries = await rows(session_factory, "SELECT status, count(*) FROM deliveries GROUP BY 1")
    assert deliveries == {"succeeded": 12, "failed": 12}
    assert total(samples, "relay_delivery_attempts_total", outcome="succeeded") == 12
    assert total(samples, "relay_delivery_attempts_total", outcome="failed") == 12
    assert total(samples, "relay_delivery_latency_seconds_count") == 12
    assert total(samples, "relay_delivery_attempt_duration_seconds_count") == 36

    events = await rows(session_factory, "SELECT type, count(*) FROM events GROUP BY 1")
    assert sum(events.values()) == 6
    for event_type, count in events.items():
        assert total(samples, "relay_events_total", type=event_type) == count
    verdicts = await rows(
        session_factory, "SELECT verdict, count(*) FROM inbound_requests GROUP BY 1"
    )
    assert verdicts == {"accepted": 3, "duplicate": 1, "rejected": 1}
    for verdict, count in verdicts.items():
        assert (
            total(
                samples,
                "relay_inbound_requests_total",
                source="rs",
                vendor="routestripe",
                verdict=verdict,
            )
            == count
        )
    assert total(samples, "relay_pending_deliveries") == 0


async def test_metrics_gauges_follow_the_queue_and_need_the_token(
    settings: Settings,
    engine: Any,
    module_database_url: str,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    async with relay_with_dispatcher(settings, module_database_url, dispatcher=False) as client:
        await create_routestripe_source(client)
        waiting = await subscribe(client, "http://127.0.0.1:9/a")
        broken = await subscribe(client, "http://127.0.0.1:9/b", event_types=["nothing.here"])
        await post_routestripe(client, [visit_event(), visit_event(), visit_event()])
        async with session_factory() as session:
            await session.execute(
                text("UPDATE deliveries SET created_at = now() - interval '90 seconds'; ")
            )
            await session.execute(
                text("UPDATE subscriptions SET state = 'degraded' WHERE id = :id"), {"id": broken}
            )
            await session.commit()
        samples = await scrape(client)
        assert samples[("relay_pending_deliveries", frozenset({("subscription_id", waiting)}))] == 3
        age = samples[
            ("relay_oldest_pending_delivery_age_seconds", frozenset({("subscription_id", waiting)}))
        ]
        assert 90 <= age < 600
        assert total(samples, "relay_pending_deliveries", subscription_id=broken) == 0

        def breaker(subscription_id: str, state: str) -> float:
            key = frozenset({("subscription_id", subscription_id), ("state", state)})
            return samples[("relay_subscription_breaker_state", key)]

        assert (breaker(waiting, "closed"), breaker(waiting, "open")) == (1, 0)
        assert (breaker(broken, "closed"), breaker(broken, "open")) == (0, 1)

        anonymous = await client.get("/metrics", headers={"Authorization": ""})
        assert anonymous.status_code == 401
        assert "Bearer" in anonymous.json()["error"]["message"]
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401

    public = settings.model_copy(update={"metrics_public": True})
    async with relay_with_dispatcher(public, module_database_url, dispatcher=False) as client:
        anonymous = await client.get("/metrics", headers={"Authorization": ""})
        assert anonymous.status_code == 200
        # A fresh app counts from zero: its registry is its own.
        assert "relay_inbound_requests_total{" not in anonymous.text


async def test_stats_counts_windows_and_percentiles(
    settings: Settings,
    engine: Any,
    module_database_url: str,
    session_factory: async_sessionmaker[AsyncSession],
    subscriber: Subscriber,
) -> None:
    subscriber.script("/ok", then=Answer(200))
    subscriber.script("/reject", then=Answer(404))
    async with relay_with_dispatcher(settings, module_database_url) as client:
        await create_routestripe_source(client)
        ok = await subscribe(client, subscriber.url("/ok"))
        rejecting = await subscribe(client, subscriber.url("/reject"))
        for _ in range(4):
            assert (await post_routestripe(client, [visit_event()])).status_code == 200
        await eventually(lambda: nothing_pending(session_factory), within=30)
        # One event (both its deliveries) moved to 3 hours ago: in the day, not the hour.
        async with session_factory() as session:
            await session.execute(
                text(
                    "WITH old AS (SELECT id FROM events ORDER BY id LIMIT 1) "
                    "UPDATE events SET received_at = received_at - interval '3 hours' "
                    "WHERE id IN (SELECT id FROM old)"
                )
            )
            await session.execute(
                text(
                    "UPDATE deliveries SET created_at = created_at - interval '3 hours' "
                    "WHERE event_id = (SELECT min(id) FROM events)"
                )
            )
            await session.commit()
        await subscribe(client, "http://127.0.0.1:9/idle")
        response = await client.get("/v1/stats")
        assert response.status_code == 200, response.text
        stats = response.json()
        assert (await client.get("/v1/stats", headers={"Authorization": ""})).status_code == 401

    overall = stats["overall"]
    assert overall["pending_now"] == 0
    hour, day = overall["last_hour"], overall["last_day"]
    assert (hour["received"], hour["delivered"], hour["failed"], hour["pending"]) == (3, 3, 3, 0)
    assert (day["received"], day["delivered"], day["failed"], day["pending"]) == (4, 4, 4, 0)
    assert 0 < day["latency_p50_ms"] <= day["latency_p99_ms"]
    # The moved event arrived 3 hours before its delivery succeeded: it is the day's maximum.
    assert day["latency_p99_ms"] > 2 * 3600 * 1000
    assert hour["latency_p99_ms"] < 60 * 1000

    by_id = {item["subscription_id"]: item for item in stats["subscriptions"]}
    assert len(by_id) == 3
    assert by_id[ok]["last_hour"] | {"latency_p50_ms": None, "latency_p99_ms": None} == {
        "received": 3,
        "delivered": 3,
        "failed": 0,
        "pending": 0,
        "latency_p50_ms": None,
        "latency_p99_ms": None,
    }
    assert by_id[rejecting]["last_day"] == {
        "received": 4,
        "delivered": 0,
        "failed": 4,
        "pending": 0,
        "latency_p50_ms": None,
        "latency_p99_ms": None,
    }
    idle = next(item for key, item in by_id.items() if key not in (ok, rejecting))
    assert idle["last_day"]["received"] == 0
    assert idle["pending_now"] == 0
    assert idle["state"] == "active"
    assert idle["url"] == "http://127.0.0.1:9/idle"


async def test_one_webhook_can_be_followed_through_the_logs_by_its_event_id(
    settings: Settings,
    engine: Any,
    module_database_url: str,
    session_factory: async_sessionmaker[AsyncSession],
    subscriber: Subscriber,
) -> None:
    previous = structlog.get_config()
    output = io.StringIO()
    configure_logging("info", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=output))
    try:
        async with relay_with_dispatcher(settings, module_database_url) as client:
            await create_routestripe_source(client)
            subscription_id = await subscribe(client, subscriber.url("/ok"))
            posted = await post_routestripe(client, [visit_event()])
            [event_id] = posted.json()["event_ids"]
            await subscriber.wait_for(1, within=15)
            await eventually(lambda: nothing_pending(session_factory), within=15)
    finally:
        structlog.configure(**previous)

    lines = [orjson.loads(line) for line in output.getvalue().splitlines() if event_id in line]
    by_event = {line["event"]: line for line in lines}
    ingest = by_event["ingest_accepted"]
    assert ingest["request_id"] == posted.headers["x-request-id"]
    assert ingest["source"] == "rs"
    assert ingest["event_ids"] == [event_id]
    attempt = by_event["delivery_attempt"]
    assert attempt["event_id"] == event_id
    assert attempt["source"] == "rs"
    assert attempt["subscription_id"] == subscription_id
    assert attempt["delivery_id"].startswith("dlv_")
    assert attempt["outcome"] == "succeeded"


# (subscription, minutes ago created, status, latency ms when succeeded)
_SEEDED: list[tuple[str, int, str, int | None]] = [
    ("a", 10, "succeeded", 100),
    ("a", 20, "succeeded", 300),
    ("a", 30, "succeeded", 200),
    ("a", 40, "failed", None),
    ("a", 50, "pending", None),
    ("a", 180, "succeeded", 5000),
    ("a", 200, "succeeded", 1000),
    ("a", 220, "failed", None),
    # Older than a day: in neither window.
    ("a", 2 * 1440, "succeeded", 7),
    ("b", 5, "succeeded", 50),
    ("b", 600, "pending", None),
]


async def _seed_deliveries(
    session_factory: async_sessionmaker[AsyncSession], source_id: str, subscriptions: dict[str, str]
) -> None:
    """Deliveries written as the outbox leaves them, each with its own event, at known times."""
    now = datetime.now(UTC)
    async with session_factory() as session:
        for name, minutes_ago, status, latency in _SEEDED:
            created = now - timedelta(minutes=minutes_ago)
            event_id, delivery_id = new_id("evt"), new_id("dlv")
            await session.execute(
                text(
                    "INSERT INTO events (id, source_id, type, vendor, vendor_event_name, "
                    "subject_kind, occurred_at, received_at, envelope) VALUES (:id, :source, "
                    "'order.completed', 'routestripe', 'visit.updated', 'order', :at, :at, '{}')"
                ).bindparams(bindparam("at", type_=DateTime(timezone=True))),
                {"id": event_id, "source": source_id, "at": created},
            )
            # A failure is recorded a minute after creation: its latency must not count.
            completed = (
                None
                if status == "pending"
                else created + timedelta(milliseconds=60_000 if latency is None else latency)
            )
            await session.execute(
                text(
                    "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, "
                    "next_attempt_at, event_timestamp, created_at, updated_at, completed_at) "
                    "VALUES (:id, :event, :subscription, :status, 1, :created, :created, "
                    ":created, :created, :completed)"
                ).bindparams(
                    bindparam("created", type_=DateTime(timezone=True)),
                    bindparam("completed", type_=DateTime(timezone=True)),
                ),
                {
                    "id": delivery_id,
                    "event": event_id,
                    "subscription": subscriptions[name],
                    "status": status,
                    "created": created,
                    "completed": completed,
                },
            )
        await session.commit()


def _figures(html: str, heading: str) -> dict[str, str]:
    """The overview's figures under one heading, by label."""
    section = html.split(f"<h2>{heading}</h2>", 1)[1].split("</section>", 1)[0]
    return {
        label: unescape(value).replace("\u2009", "")
        for label, value in re.findall(r"<dt>([^<]+)</dt><dd[^>]*>([^<]+)</dd>", section)
    }


async def _sign_in(http: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await http.get("/console/login")
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found is not None, form.text[:500]
    return await http.post("/console/login", data={"token": token, "csrf": found.group(1)})


async def test_stats_and_the_console_overview_count_each_window_exactly(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    source = await create_routestripe_source(client)
    subscriptions = {
        name: await subscribe(client, f"http://127.0.0.1:9/{name}") for name in ("a", "b")
    }
    await _seed_deliveries(session_factory, source["id"], subscriptions)

    stats = (await client.get("/v1/stats")).json()
    by_id = {item["subscription_id"]: item for item in stats["subscriptions"]}
    assert by_id[subscriptions["a"]]["last_hour"] == {
        "received": 5,
        "delivered": 3,
        "failed": 1,
        "pending": 1,
        "latency_p50_ms": 200.0,
        # percentile_cont: 99 % of the way from the 2nd to the 3rd of 100, 200, 300.
        "latency_p99_ms": 298.0,
    }
    assert by_id[subscriptions["a"]]["last_day"] == {
        "received": 8,
        "delivered": 5,
        "failed": 2,
        "pending": 1,
        "latency_p50_ms": 300.0,
        "latency_p99_ms": 4840.0,
    }
    assert by_id[subscriptions["b"]]["last_day"] == {
        "received": 2,
        "delivered": 1,
        "failed": 0,
        "pending": 1,
        "latency_p50_ms": 50.0,
        "latency_p99_ms": 50.0,
    }
    assert by_id[subscriptions["b"]]["pending_now"] == 1
    overall = stats["overall"]
    assert overall["pending_now"] == 2
    # Overall, received counts events: one for each delivery here.
    assert {key: overall["last_hour"][key] for key in ("received", "delivered", "failed")} == {
        "received": 6,
        "delivered": 4,
        "failed": 1,
    }
    assert overall["last_hour"]["latency_p50_ms"] == 150.0
    assert {key: overall["last_day"][key] for key in ("received", "delivered", "failed")} == {
        "received": 10,
        "delivered": 6,
        "failed": 2,
    }
    assert overall["last_day"]["pending"] == 2

    assert (await _sign_in(client, ADMIN_TOKEN)).status_code == 303
    page = await client.get("/console")
    assert page.status_code == 200, page.text
    assert _figures(page.text, "Last hour") == {
        "Received": "6 events",
        "Delivered": "4 deliveries",
        "Failed": "1 deliveries",
        "Pending": "1 deliveries",
        "Latency p50": "150 ms",
        "Latency p99": "297 ms",
    }
    assert _figures(page.text, "Last 24 hours") == {
        "Received": "10 events",
        "Delivered": "6 deliveries",
        "Failed": "2 deliveries",
        "Pending": "2 deliveries",
        "Latency p50": "250 ms",
        "Latency p99": "4.8 s",
    }
    # The chart counts the same deliveries, minute by minute.
    legend = unescape(page.text.split('<p class="legend">', 1)[1].split("</p>", 1)[0])
    words = re.sub(r"\s+", " ", legend)
    assert "succeeded 6" in words
    assert "failed 2" in words
    assert "pending 2" in words
    bars = re.findall(r'<rect class="(\w+)" x="(\d+)"[^>]*><title>(\d+) \w+</title>', page.text)
    assert sorted((outcome, int(count)) for outcome, _, count in bars) == sorted(
        [("succeeded", 1)] * 6 + [("failed", 1)] * 2 + [("pending", 1)] * 2
    )
