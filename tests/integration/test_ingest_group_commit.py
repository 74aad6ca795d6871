"""Group commit and the configuration the ingest keeps in memory: webhooks that arrive together
share a statement, each still answered only after its own rows committed; one bad webhook fails
alone; a configuration change is obeyed by the very next webhook, whatever was kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.core.errors import rejected_value
from relay.core.ids import new_id
from relay.core.settings import Settings
from relay.db.listen import asyncpg_connect_args
from relay.ingest.batcher import GroupCommit
from relay.ingest.repository import (
    PlannedEvent,
    RequestLogRow,
    StoredWebhook,
    WebhookToStore,
)
from relay.outbox.transitions import NOTIFY_CHANNEL
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    relay_client,
    subscribe,
    visit_event,
)
from tests.support.subscriber import Subscriber


class CountingGroupCommit(GroupCommit):
    """The real group commit, noting how many webhooks each statement carried."""

    def __init__(self, engine: AsyncEngine, **options: Any) -> None:
        super().__init__(engine, on_stored=lambda: None, **options)
        self.statements: list[int] = []
        self.statement_started = asyncio.Event()

    async def _execute(self, webhooks: list[WebhookToStore]) -> list[StoredWebhook | None]:
        self.statements.append(len(webhooks))
        self.statement_started.set()
        return await super()._execute(webhooks)


async def _config_version(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        version = await connection.scalar(
            text("SELECT coalesce((SELECT version FROM config_version), 0)")
        )
    assert isinstance(version, int)
    return version


def _webhook(
    source_id: str, version: int, *, key: str, headers: dict[str, str] | None = None
) -> WebhookToStore:
    now = datetime.now(UTC)
    request_id = new_id("req")
    return WebhookToStore(
        row=RequestLogRow(
            id=request_id,
            source_id=source_id,
            slug="rs",
            received_at=now,
            verdict="accepted",
            reason="",
            status_code=200,
            body_size=2,
            content_type="application/json",
            remote_addr="127.0.0.1",
            headers=headers or {},
            body=b"{}",
        ),
        vendor="routestripe",
        config_version=version,
        total_events=1,
        events=[
            PlannedEvent(
                id=new_id("evt"),
                dedupe_key=key,
                type="order.created",
                vendor_event_name="visit.created",
                vendor_event_id=key,
                subject_kind="order",
                subject_id="1",
                occurred_at=now,
                envelope="{}",
            )
        ],
        deliveries=[],
    )


@pytest.fixture
async def autocommit(engine: AsyncEngine) -> AsyncEngine:
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def test_webhooks_arriving_together_share_one_statement_and_a_lone_one_waits_for_none(
    client: httpx.AsyncClient, autocommit: AsyncEngine
) -> None:
    source = await create_routestripe_source(client)
    version = await _config_version(autocommit)
    group = CountingGroupCommit(autocommit, max_in_flight=1)

    lone = await group.store(_webhook(source["id"], version, key="lone"))
    assert lone is not None
    assert len(lone.event_ids) == 1
    assert group.statements == [1]

    # Arriving in one turn of the event loop, all 41 go in the statement the first started.
    results = await asyncio.gather(
        *(group.store(_webhook(source["id"], version, key=f"k{n}")) for n in range(41))
    )
    assert group.statements == [1, 41]
    assert all(result is not None and result.verdict == "accepted" for result in results)

    # Arriving while a statement runs, forty queue, and the next statement takes them all.
    group.statement_started.clear()
    running = asyncio.create_task(group.store(_webhook(source["id"], version, key="first")))
    await group.statement_started.wait()
    results = await asyncio.gather(
        *(group.store(_webhook(source["id"], version, key=f"q{n}")) for n in range(40))
    )
    assert await running is not None
    assert group.statements == [1, 41, 1, 40]
    assert all(result is not None and result.verdict == "accepted" for result in results)
    async with autocommit.connect() as connection:
        stored = await connection.scalar(text("SELECT count(*) FROM events"))
    assert stored == 83


async def test_two_webhooks_with_one_key_in_one_statement_store_the_first(
    client: httpx.AsyncClient, autocommit: AsyncEngine
) -> None:
    source = await create_routestripe_source(client)
    version = await _config_version(autocommit)
    group = CountingGroupCommit(autocommit, max_in_flight=1)

    first, second, third = await asyncio.gather(
        group.store(_webhook(source["id"], version, key="ahead")),
        group.store(_webhook(source["id"], version, key="same")),
        group.store(_webhook(source["id"], version, key="same")),
    )
    assert group.statements == [3]
    assert first is not None
    assert second is not None
    assert third is not None
    assert (second.verdict, len(second.event_ids)) == ("accepted", 1)
    assert (third.verdict, third.event_ids) == ("duplicate", [])


async def test_a_webhook_the_database_refuses_fails_alone(
    client: httpx.AsyncClient, autocommit: AsyncEngine
) -> None:
    source = await create_routestripe_source(client)
    version = await _config_version(autocommit)
    group = CountingGroupCommit(autocommit, max_in_flight=1)
    # PostgreSQL's jsonb refuses the NUL character: the statement carrying it fails.
    poisoned = _webhook(source["id"], version, key="bad", headers={"x-note": "\x00"})

    results = await asyncio.gather(
        group.store(_webhook(source["id"], version, key="ahead")),
        group.store(_webhook(source["id"], version, key="good-1")),
        group.store(poisoned),
        group.store(_webhook(source["id"], version, key="good-2")),
        return_exceptions=True,
    )

    assert isinstance(results[2], Exception)
    assert rejected_value(results[2]) is not None
    for index in (0, 1, 3):
        result = results[index]
        assert isinstance(result, StoredWebhook)
        assert result.verdict == "accepted"
    async with autocommit.connect() as connection:
        keys = await connection.scalars(text("SELECT key FROM dedupe_keys ORDER BY key"))
        assert list(keys) == ["ahead", "good-1", "good-2"]
        logged = await connection.scalar(
            text("SELECT count(*) FROM inbound_requests WHERE id = :id"),
            {"id": poisoned.row.id},
        )
    assert logged == 0


async def test_a_webhook_read_with_an_old_configuration_is_not_stored(
    client: httpx.AsyncClient, autocommit: AsyncEngine
) -> None:
    source = await create_routestripe_source(client)
    version = await _config_version(autocommit)
    await subscribe(client, "http://127.0.0.1:9/")
    assert await _config_version(autocommit) > version

    group = CountingGroupCommit(autocommit)
    stale = _webhook(source["id"], version, key="stale")
    assert await group.store(stale) is None
    async with autocommit.connect() as connection:
        rows = await connection.scalar(
            text("SELECT count(*) FROM inbound_requests WHERE id = :id"), {"id": stale.row.id}
        )
    assert rows == 0


async def test_concurrent_webhooks_each_get_their_own_rows_and_deliveries(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await create_routestripe_source(client)
    subscriptions = {(await subscribe(client, "http://127.0.0.1:9/"))["id"] for _ in range(2)}

    answers = await asyncio.gather(*(post_routestripe(client, [visit_event()]) for _ in range(60)))

    assert [answer.status_code for answer in answers] == [200] * 60
    event_ids = [answer.json()["event_ids"] for answer in answers]
    assert all(len(ids) == 1 for ids in event_ids)
    async with engine.connect() as connection:
        for answer, [event_id] in zip(answers, event_ids, strict=True):
            row = (
                await connection.execute(
                    text("SELECT verdict, event_ids FROM inbound_requests WHERE id = :id"),
                    {"id": answer.json()["request_id"]},
                )
            ).one()
            assert (row.verdict, row.event_ids) == ("accepted", [event_id])
            targets = await connection.scalars(
                text("SELECT subscription_id FROM deliveries WHERE event_id = :id"),
                {"id": event_id},
            )
            assert set(targets) == subscriptions


async def test_a_change_is_obeyed_by_the_next_webhook_though_the_old_one_was_kept(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """The ingest keeps sources and subscriptions in memory; none of these waits for that to
    expire, and the second change is made behind the relay's back, by SQL."""
    source = await create_routestripe_source(client)
    assert (await post_routestripe(client, [visit_event()])).status_code == 200

    added = await subscribe(client, "http://127.0.0.1:9/")
    [event_id] = (await post_routestripe(client, [visit_event()])).json()["event_ids"]
    async with engine.connect() as connection:
        targets = await connection.scalars(
            text("SELECT subscription_id FROM deliveries WHERE event_id = :id"), {"id": event_id}
        )
        assert list(targets) == [added["id"]]
        await connection.execute(
            text("UPDATE subscriptions SET event_types = '{shift.*}' WHERE id = :id"),
            {"id": added["id"]},
        )
        await connection.commit()
    [event_id] = (await post_routestripe(client, [visit_event()])).json()["event_ids"]
    async with engine.connect() as connection:
        deliveries = await connection.scalar(
            text("SELECT count(*) FROM deliveries WHERE event_id = :id"), {"id": event_id}
        )
    assert deliveries == 0

    paused = await client.patch(f"/v1/sources/{source['id']}", json={"active": False})
    assert paused.status_code == 200
    refused = await post_routestripe(client, [visit_event()])
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "source_inactive"


async def test_only_what_fan_out_reads_of_a_subscription_moves_the_configuration(
    client: httpx.AsyncClient, autocommit: AsyncEngine
) -> None:
    added = await subscribe(client, "http://127.0.0.1:9/")
    before = await _config_version(autocommit)
    async with autocommit.connect() as connection:
        # What the breaker writes after every batch of attempts.
        await connection.execute(
            text(
                "UPDATE subscriptions SET consecutive_failures = 3, failing_since = now() "
                "WHERE id = :id"
            ),
            {"id": added["id"]},
        )
    assert await _config_version(autocommit) == before
    async with autocommit.connect() as connection:
        await connection.execute(
            text("UPDATE subscriptions SET state = 'degraded' WHERE id = :id"),
            {"id": added["id"]},
        )
    assert await _config_version(autocommit) == before + 1


async def test_the_ingest_statement_sends_no_notify_and_many_webhooks_few(
    client: httpx.AsyncClient, module_database_url: str
) -> None:
    """The wake-up goes out beside the writes, folded: dispatchers elsewhere still hear it."""
    await create_routestripe_source(client)
    await subscribe(client, "http://127.0.0.1:9/")
    heard: list[str] = []
    listener = await asyncpg.connect(**asyncpg_connect_args(module_database_url))
    try:
        await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.append(args[-1]))
        answers = await asyncio.gather(
            *(post_routestripe(client, [visit_event()]) for _ in range(40))
        )
        assert all(answer.status_code == 200 for answer in answers)
        for _ in range(50):
            if heard:
                break
            await asyncio.sleep(0.1)
    finally:
        await listener.close()
    assert heard, "no dispatcher elsewhere would have been woken"
    assert len(heard) < 40
    assert all(origin.startswith("process-") for origin in heard)


async def test_the_dispatcher_beside_the_ingest_is_woken_directly(
    settings: Settings, engine: AsyncEngine, module_database_url: str, subscriber: Subscriber
) -> None:
    # Polling every 30 s, and its own NOTIFYs ignored: only the direct wake-up is in time.
    async with relay_client(
        settings.model_copy(update={"dispatcher_poll_interval": 30.0}),
        module_database_url,
        admin_token=ADMIN_TOKEN,
        run_dispatcher=True,
    ) as client:
        await create_routestripe_source(client)
        await subscribe(client, subscriber.url())
        await asyncio.sleep(0.5)  # the dispatcher's first claim, at start, finds nothing
        answer = await post_routestripe(client, [visit_event()])
        assert answer.status_code == 200
        [received] = await subscriber.wait_for(1, within=10)
    assert received.headers["webhook-id"] == answer.json()["event_ids"][0]
