"""Retention: old rows go in small batches; pending deliveries and recent dedupe keys stay."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.retention.service import Purger
from tests.support.relay import create_routestripe_source, post_routestripe, visit_event

RELAY = str(Path(sys.executable).parent / "relay")
TABLES = ("events", "deliveries", "delivery_attempts", "inbound_requests", "dedupe_keys")


@dataclass
class Aged:
    old_events: list[dict[str, Any]]
    old_ids: list[str]
    recent_ids: list[str]
    pending_event_id: str


def retention(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "retention_days": 30,
            "attempt_body_retention_days": 7,
            "dedupe_retention_days": 60,
        }
    )


async def execute(
    session_factory: async_sessionmaker[AsyncSession], sql: str, **params: Any
) -> list[tuple[Any, ...]]:
    async with session_factory() as session:
        result = await session.execute(text(sql), params)
        rows = [tuple(row) for row in result] if result.returns_rows else []
        await session.commit()
    return rows


async def table_counts(session_factory: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        [(count,)] = await execute(session_factory, f"SELECT count(*) FROM {table}")  # noqa: S608
        counts[table] = count
    return counts


async def age_rows(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> Aged:
    """Six events from 40 days ago (one still pending), two recent ones, an attempt each."""
    await create_routestripe_source(client)
    created = await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"})
    subscription_id = created.json()["id"]
    old_events = [visit_event() for _ in range(6)]
    old = await post_routestripe(client, old_events)
    recent = await post_routestripe(client, [visit_event() for _ in range(2)])
    assert old.status_code == recent.status_code == 200
    old_ids, recent_ids = old.json()["event_ids"], recent.json()["event_ids"]
    now = datetime.now(UTC)
    forty_days = now - timedelta(days=40)
    await execute(
        session_factory,
        "UPDATE events SET received_at = :at WHERE id = ANY(:ids)",
        at=forty_days,
        ids=old_ids,
    )
    await execute(
        session_factory,
        "UPDATE inbound_requests SET received_at = :at "
        "WHERE id IN (SELECT request_id FROM events WHERE id = ANY(:ids))",
        at=forty_days,
        ids=old_ids,
    )
    await execute(
        session_factory,
        "UPDATE deliveries SET status = 'succeeded', completed_at = now() "
        "WHERE event_id = ANY(:ids)",
        ids=old_ids[1:],
    )
    # Dedupe keys of two old events are past their own 60-day window, four are not.
    await execute(
        session_factory,
        "UPDATE dedupe_keys SET created_at = :at WHERE event_id = ANY(:ids)",
        at=forty_days,
        ids=old_ids[2:],
    )
    await execute(
        session_factory,
        "UPDATE dedupe_keys SET created_at = :at WHERE event_id = ANY(:ids)",
        at=now - timedelta(days=70),
        ids=old_ids[:2],
    )
    started = {event_id: forty_days for event_id in old_ids}
    started[recent_ids[0]] = now - timedelta(days=10)
    started[recent_ids[1]] = now
    for index, (event_id, at) in enumerate(started.items()):
        await execute(
            session_factory,
            "INSERT INTO delivery_attempts (id, delivery_id, subscription_id, attempt_number, "
            "started_at, duration_ms, request_url, request_headers, response_status, "
            "response_body, outcome, decision) "
            "SELECT :id, id, :subscription_id, 1, :at, 5, 'http://127.0.0.1:9/hook', '{}', 500, "
            "'subscriber said no', 'pending', 'retry' FROM deliveries WHERE event_id = :event_id",
            id=f"att_{index:026d}",
            subscription_id=subscription_id,
            at=at,
            event_id=event_id,
        )
    return Aged(
        old_events=old_events,
        old_ids=old_ids,
        recent_ids=recent_ids,
        pending_event_id=old_ids[0],
    )


async def test_purge_goes_in_batches_and_keeps_pending_events_and_recent_dedupe_keys(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    aged = await age_rows(client, session_factory)
    purger = Purger(retention(settings), session_factory, batch_size=2)
    before = await table_counts(session_factory)

    preview = await purger.preview(now=datetime.now(UTC))

    assert preview == {
        "events": 5,
        "deliveries": 5,
        "delivery_attempts": 5,
        "events_kept_pending": 1,
        "inbound_requests": 1,
        "dedupe_keys": 2,
        # The pending event's 40-day-old attempt and the 10-day-old one.
        "attempt_bodies": 2,
    }
    assert await table_counts(session_factory) == before

    report = await purger.purge(now=datetime.now(UTC))

    assert report.removed == {
        "events": 5,
        "attempt_bodies": 2,
        "inbound_requests": 1,
        "dedupe_keys": 2,
    }
    # Two rows per statement: 2 + 2 + 1 events; 2 + 0 bodies; 1 request; 2 + 0 keys.
    assert report.statements == {
        "events": 3,
        "attempt_bodies": 2,
        "inbound_requests": 1,
        "dedupe_keys": 2,
    }
    assert await table_counts(session_factory) == {
        "events": 3,
        "deliveries": 3,
        "delivery_attempts": 3,
        "inbound_requests": 1,
        "dedupe_keys": 6,
    }
    remaining = await execute(session_factory, "SELECT id, request_id FROM events ORDER BY id")
    assert {row[0] for row in remaining} == {aged.pending_event_id, *aged.recent_ids}
    pending = dict(remaining)[aged.pending_event_id]
    assert pending is None  # its request log went; the event stays while it is pending
    bodies = await execute(
        session_factory,
        "SELECT d.event_id, a.response_body FROM delivery_attempts AS a "
        "JOIN deliveries AS d ON d.id = a.delivery_id",
    )
    assert dict(bodies) == {
        aged.pending_event_id: None,
        aged.recent_ids[0]: None,
        aged.recent_ids[1]: "subscriber said no",
    }

    # A vendor's late retry of the purged events: the four with a kept key are duplicates.
    retried = await post_routestripe(client, aged.old_events)
    assert retried.status_code == 200
    assert (retried.json()["accepted"], retried.json()["duplicates"]) == (2, 4)

    again = await purger.purge(now=datetime.now(UTC))
    assert again.removed == {
        "events": 0,
        "attempt_bodies": 0,
        "inbound_requests": 0,
        "dedupe_keys": 0,
    }


async def test_attempt_bodies_are_left_alone_when_their_window_is_the_events_window(
    client: httpx.AsyncClient,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await age_rows(client, session_factory)
    purger = Purger(settings.model_copy(update={"retention_days": 30}), session_factory)

    report = await purger.purge(now=datetime.now(UTC))

    assert "attempt_bodies" not in report.removed
    assert report.removed["events"] == 5
    # Without their own window, dedupe keys live as long as events: the 40-day-old ones go.
    assert report.removed["dedupe_keys"] == 6
    [(bodies,)] = await execute(
        session_factory,
        "SELECT count(*) FROM delivery_attempts WHERE response_body IS NOT NULL",
    )
    assert bodies == 3


async def _relay(tmp_path: Path, database_url: str, *args: str) -> tuple[int, str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_DATABASE_URL=database_url,
        RELAY_DATA_DIR=str(tmp_path / "data"),
        RELAY_RETENTION_DAYS="30",
        RELAY_ATTEMPT_BODY_RETENTION_DAYS="7",
        RELAY_DEDUPE_RETENTION_DAYS="60",
        RELAY_LOG_FORMAT="json",
    )
    process = await asyncio.create_subprocess_exec(
        RELAY,
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_relay_purge_dry_run_reports_and_deletes_nothing(
    client: httpx.AsyncClient,
    session_factory: async_sessionmaker[AsyncSession],
    module_database_url: str,
    tmp_path: Path,
) -> None:
    await age_rows(client, session_factory)
    before = await table_counts(session_factory)

    code, out, err = await _relay(tmp_path, module_database_url, "purge", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["events"] == 5
    assert json.loads(out)["dry_run"] is True
    assert await table_counts(session_factory) == before

    code, out, err = await _relay(tmp_path, module_database_url, "purge", "--dry-run")
    assert code == 0, err
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert out.startswith("would remove:")
    assert lines["events"] == "5"
    assert lines["dedupe_keys"] == "2"
    assert await table_counts(session_factory) == before

    code, out, err = await _relay(tmp_path, module_database_url, "purge", "--json")
    assert code == 0, err
    assert json.loads(out)["counts"]["events"] == 5
    assert (await table_counts(session_factory))["events"] == 3
