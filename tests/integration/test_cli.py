"""The terminal client against a real `relay serve` process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from relay.cli import app
from tests.conftest import ADMIN_TOKEN
from tests.support.processes import cli_env, serve_for_cli, start_serve, stop_serve
from tests.support.relay import ROUTESTRIPE_SECRET, post_routestripe, visit_event
from tests.support.subscriber import Answer, Subscriber, eventually

RELAY = str(Path(sys.executable).parent / "relay")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def relay_url(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`relay serve` with its dispatcher, as an operator runs it."""
    with serve_for_cli(module_database_url, tmp_path_factory.mktemp("relay-serve")) as (url, _):
        yield url


@pytest.fixture
async def api(relay_url: str, engine: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Test set-up straight over HTTP; the tables are emptied first (the engine fixture)."""
    async with httpx.AsyncClient(
        base_url=relay_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as client:
        yield client


async def relay(relay_url: str, *args: str, token: str | None = ADMIN_TOKEN) -> Any:
    """Runs `relay ARGS` like a terminal would, off the event loop (the subscriber runs on it)."""
    env = {"RELAY_URL": relay_url, "RELAY_ADMIN_TOKEN": token}
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


def ok(result: Any) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    output: str = result.stdout
    return output


async def routestripe_source(relay_url: str) -> dict[str, Any]:
    verification = orjson.dumps({"type": "hmac", "secret": ROUTESTRIPE_SECRET}).decode()
    created = await relay(
        relay_url,
        "sources",
        "create",
        "--slug",
        "rs",
        "--vendor",
        "routestripe",
        "--verification",
        verification,
        "--json",
    )
    source: dict[str, Any] = orjson.loads(ok(created))
    return source


async def test_sources_tables_json_and_one_line_errors(relay_url: str, api: Any) -> None:
    source = await routestripe_source(relay_url)
    assert source["slug"] == "rs"
    assert source["verification"]["current"]["type"] == "hmac"

    table = ok(await relay(relay_url, "sources", "list"))
    assert "SLUG" in table
    assert source["id"] in table
    assert "/ingest/rs" in table
    listed = orjson.loads(ok(await relay(relay_url, "sources", "list", "--json")))
    assert [item["id"] for item in listed["data"]] == [source["id"]]
    assert source["id"] in ok(await relay(relay_url, "sources", "show", source["id"]))

    bad = await relay(relay_url, "sources", "create", "--slug", "x", "--vendor", "nope")
    assert bad.exit_code == 1
    [line] = bad.stderr.splitlines()
    assert line.startswith("error: ")
    assert "nope" in line
    assert "(HTTP 422)" in line
    not_json = await relay(
        relay_url, "sources", "create", "--slug", "y", "--vendor", "bringg", "--verification", "{"
    )
    assert not_json.exit_code == 1
    assert not_json.stderr.strip() == (
        'error: --verification must be a JSON object, e.g. \'{"type": "hmac"}\''
    )

    assert ok(await relay(relay_url, "sources", "delete", source["id"], "--yes")).strip() == (
        f"deleted source {source['id']}"
    )
    gone = await relay(relay_url, "sources", "show", source["id"])
    assert gone.exit_code == 1
    assert gone.stderr == f"error: no source with id or slug '{source['id']}' (HTTP 404)\n"
    assert "Traceback" not in gone.output


async def test_sources_test_sends_a_signed_webhook_and_says_when_it_would_be_refused(
    relay_url: str, api: Any, tmp_path: Path
) -> None:
    source = await routestripe_source(relay_url)
    sent = orjson.loads(ok(await relay(relay_url, "sources", "test", "rs", "--json")))
    assert (sent["status_code"], sent["verdict"], sent["accepted"]) == (200, "accepted", 1)
    assert sent["event_ids"][0] in ok(
        await relay(relay_url, "events", "show", sent["event_ids"][0])
    )
    assert "accepted" in ok(await relay(relay_url, "sources", "test", source["id"]))

    body = tmp_path / "ping.json"
    body.write_text('{"event": "webhook.ping", "id": "bth_ping", "provider": "ROUTESTRIPE"}')
    ping = orjson.loads(
        ok(await relay(relay_url, "sources", "test", "rs", "--body", str(body), "--json"))
    )
    assert ping["verdict"] == "ping"

    body.write_text('{"event": "batch", "data": "not events"}')
    refused = await relay(relay_url, "sources", "test", "rs", "--body", str(body))
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: the relay would answer the vendor 400: ")
    body.write_text("{")
    not_json = await relay(relay_url, "sources", "test", "rs", "--body", str(body))
    assert not_json.exit_code == 1
    assert not_json.stderr == f"error: --body: {body} does not hold JSON\n"


async def test_subscriptions_update_changes_what_create_sets(relay_url: str, api: Any) -> None:
    created = await api.post("/v1/subscriptions", json={"url": "https://a.example.com/h"})
    subscription_id = created.json()["id"]
    updated = orjson.loads(
        ok(
            await relay(
                relay_url,
                "subscriptions",
                "update",
                subscription_id,
                "--header",
                "X-Tenant: acme",
                "--ordered",
                "--retry-schedule",
                "5,60",
                "--json",
            )
        )
    )
    assert updated["headers"] == {"X-Tenant": "********"}
    assert updated["ordered"] is True
    assert updated["retry_schedule"] == [5, 60]
    cleared = orjson.loads(
        ok(
            await relay(
                relay_url,
                "subscriptions",
                "update",
                subscription_id,
                "--no-headers",
                "--no-ordered",
                "--json",
            )
        )
    )
    assert (cleared["headers"], cleared["ordered"], cleared["retry_schedule"]) == (
        {},
        False,
        [5, 60],
    )
    both = await relay(
        relay_url, "subscriptions", "update", subscription_id, "--header", "A:b", "--no-headers"
    )
    assert both.exit_code == 1
    assert both.stderr == "error: give --header or --no-headers, not both\n"


async def test_bad_token_missing_token_and_unreachable_relay_are_one_line(
    relay_url: str, api: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = await relay(relay_url, "subscriptions", "list", token="not-the-token")
    assert wrong.exit_code == 1
    assert (
        wrong.stderr
        == "error: invalid token: not RELAY_ADMIN_TOKEN nor a known API key (HTTP 401)\n"
    )

    # Neither --token nor RELAY_ADMIN_TOKEN: the token file in the data directory, but only for
    # the relay of that data directory, found by RELAY_HOST/RELAY_PORT, never one named by URL.
    monkeypatch.setenv("RELAY_DATA_DIR", str(tmp_path))
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    by_url = await asyncio.to_thread(
        CliRunner().invoke, app, ["stats"], env={"RELAY_URL": relay_url, "RELAY_ADMIN_TOKEN": None}
    )
    assert by_url.exit_code == 1
    assert by_url.stderr.startswith(f"error: no token for the relay at {relay_url}: pass --token")
    port = relay_url.rsplit(":", 1)[1]
    from_file = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["stats"],
        env={"RELAY_URL": None, "RELAY_PORT": port, "RELAY_ADMIN_TOKEN": None},
    )
    assert from_file.exit_code == 0, from_file.output

    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = await relay(relay_url, "events", "list", "--url", dead)
    assert unreachable.exit_code == 1
    assert unreachable.stderr == f"error: cannot reach the relay at {dead}: is it running?\n"

    malformed = await relay(relay_url, "sources", "list", "--url", "http://[::1")
    assert malformed.exit_code == 1
    assert malformed.stderr.startswith("error: --url 'http://[::1' is not a valid URL")
    assert malformed.stderr.count("\n") == 1


def test_worker_refuses_an_unauthenticated_metrics_port_unless_metrics_are_public(
    tmp_path: Path,
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(RELAY_METRICS_PUBLIC="false", RELAY_DATA_DIR=str(tmp_path))
    refused = subprocess.run(
        [RELAY, "worker", "--metrics-port", "9999"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "RELAY_METRICS_PUBLIC=true" in refused.stderr
    assert "Traceback" not in refused.stderr


async def test_subscriptions_events_deliveries_and_stats(
    relay_url: str,
    api: httpx.AsyncClient,
    subscriber: Subscriber,
) -> None:
    await routestripe_source(relay_url)
    subscriber.script("/hook", then=Answer(200))
    created = orjson.loads(
        ok(
            await relay(
                relay_url,
                "subscriptions",
                "create",
                subscriber.url("/hook"),
                "--type",
                "order.*",
                "--header",
                "X-Team: ops",
                "--json",
            )
        )
    )
    subscription_id = created["id"]
    assert created["secret"].startswith("whsec_")
    assert created["headers"] == {"X-Team": "ops"}
    listing = ok(await relay(relay_url, "subscriptions", "list"))
    assert subscription_id in listing
    assert "order.*" in listing
    shown = ok(await relay(relay_url, "subscriptions", "show", subscription_id))
    assert subscriber.url("/hook") in shown
    rotated = orjson.loads(
        ok(await relay(relay_url, "subscriptions", "rotate-secret", subscription_id, "--json"))
    )
    assert rotated["secret"] not in (created["secret"], "")
    tested = ok(await relay(relay_url, "subscriptions", "test", subscription_id))
    assert "succeeded" in tested
    assert "yes" in tested
    bad_header = await relay(relay_url, "subscriptions", "create", "http://x.test", "--header", "x")
    assert bad_header.exit_code == 1
    assert bad_header.stderr == "error: --header 'x' must look like NAME:VALUE\n"

    posted = await post_routestripe(api, [visit_event(), visit_event()])
    assert posted.status_code == 200, posted.text
    event_ids = posted.json()["event_ids"]
    await subscriber.wait_for(3, path="/hook", within=20)  # the test event and the two posted

    events = ok(await relay(relay_url, "events", "list", "--since", "10m"))
    assert all(event_id in events for event_id in event_ids)
    assert "order.created" in events
    assert (
        ok(await relay(relay_url, "events", "list", "--type", "route.started")).count("evt_") == 0
    )
    envelope = orjson.loads(ok(await relay(relay_url, "events", "show", event_ids[0], "--json")))
    assert envelope["id"] == event_ids[0]
    bad_time = await relay(relay_url, "events", "list", "--since", "yesterday-ish")
    assert bad_time.exit_code == 1
    assert "is not a time" in bad_time.stderr

    async def all_succeeded() -> bool:
        page = await api.get("/v1/deliveries", params={"status": "succeeded"})
        return len(page.json()["data"]) == 2

    await eventually(all_succeeded, within=20)
    deliveries = orjson.loads(ok(await relay(relay_url, "deliveries", "list", "--json")))
    assert {item["event_id"] for item in deliveries["data"]} == set(event_ids)
    delivery_id = deliveries["data"][0]["id"]
    detail = ok(await relay(relay_url, "deliveries", "show", delivery_id))
    assert "attempts" in detail
    assert "delivered" in detail or "200" in detail
    retried = orjson.loads(ok(await relay(relay_url, "deliveries", "retry", delivery_id, "--json")))
    assert retried["status"] == "pending"
    await subscriber.wait_for(4, path="/hook", within=20)
    replayed = ok(await relay(relay_url, "events", "replay", event_ids[1]))
    assert "1 new deliveries" in replayed
    await subscriber.wait_for(5, path="/hook", within=20)

    async def settled() -> bool:
        page = await api.get("/v1/deliveries", params={"status": "pending"})
        return not page.json()["data"]

    await eventually(settled, within=20)
    stats = orjson.loads(ok(await relay(relay_url, "stats", "--json")))
    assert stats["overall"]["last_hour"]["received"] == 2
    assert stats["overall"]["last_hour"]["delivered"] == 3
    table = ok(await relay(relay_url, "stats"))
    assert "DELIVERED" in table
    assert "last 24 hours" in table
    assert subscriber.url("/hook") in table
    assert subscription_id in table


async def test_recover_and_bulk_replay_follow_their_jobs(
    relay_url: str,
    api: httpx.AsyncClient,
    subscriber: Subscriber,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await routestripe_source(relay_url)
    subscriber.script("/down", then=Answer(404))
    subscription_id = orjson.loads(
        ok(await relay(relay_url, "subscriptions", "create", subscriber.url("/down"), "--json"))
    )["id"]
    assert (await post_routestripe(api, [visit_event() for _ in range(5)])).status_code == 200

    async def failed() -> bool:
        async with session_factory() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM deliveries WHERE status = 'failed'")
            )
        return count == 5

    await eventually(failed, within=20)
    subscriber.script("/down", then=Answer(200))
    recovered = await relay(relay_url, "recover", subscription_id, "--since", "1h")
    assert recovered.exit_code == 0, recovered.output
    assert "succeeded" in recovered.stdout
    assert "5/5" in recovered.stderr  # the progress bar's last state
    received = await subscriber.wait_for(10, path="/down", within=30)
    assert len({item.headers["webhook-id"] for item in received}) == 5

    job = orjson.loads(ok(await relay(relay_url, "events", "replay", "--since", "1h", "--json")))
    assert job["kind"] == "replay"
    assert job["status"] == "succeeded"
    assert job["done"] == job["total"] == 5
    await subscriber.wait_for(15, path="/down", within=30)
    bulk_without_since = await relay(relay_url, "events", "replay")
    assert bulk_without_since.exit_code == 1
    assert "needs --since" in bulk_without_since.stderr
    missing = await relay(relay_url, "recover", "sub_01J00000000000000000000000", "--since", "1h")
    assert missing.exit_code == 1
    assert "(HTTP 404)" in missing.stderr


async def test_retry_and_recover_pending_send_what_waits_for_its_retry_now(
    relay_url: str,
    api: httpx.AsyncClient,
    subscriber: Subscriber,
    session_factory: async_sessionmaker[AsyncSession],
) -> None:
    await routestripe_source(relay_url)
    subscriber.script("/later", Answer(503), Answer(503), Answer(503), then=Answer(200))
    # After a failure the next attempt is an hour away.
    created = await api.post(
        "/v1/subscriptions", json={"url": subscriber.url("/later"), "retry_schedule": [3600]}
    )
    subscription_id = created.json()["id"]
    assert (await post_routestripe(api, [visit_event() for _ in range(3)])).status_code == 200
    await subscriber.wait_for(3, path="/later", within=20)

    async def waiting() -> list[str]:
        async with session_factory() as session:
            rows = await session.execute(
                text("SELECT id FROM deliveries WHERE status = 'pending' AND attempts = 1")
            )
            return list(rows.scalars())

    await eventually(lambda: _count_is(waiting, 3), within=20)
    [first, *_rest] = await waiting()
    retried = orjson.loads(ok(await relay(relay_url, "deliveries", "retry", first, "--json")))
    assert retried["status"] == "pending"
    await subscriber.wait_for(4, path="/later", within=20)
    recovered = await relay(
        relay_url, "recover", subscription_id, "--since", "1h", "--status", "pending", "--json"
    )
    assert recovered.exit_code == 0, recovered.output
    assert orjson.loads(recovered.stdout)["done"] == 2
    await subscriber.wait_for(6, path="/later", within=20)


async def _count_is(rows: Callable[[], Awaitable[list[str]]], count: int) -> bool:
    return len(await rows()) == count


async def test_tail_prints_a_posted_event_and_its_attempt_live(
    relay_url: str, api: httpx.AsyncClient, subscriber: Subscriber
) -> None:
    await routestripe_source(relay_url)
    subscriber.script("/live", then=Answer(200))
    subscription_id = orjson.loads(
        ok(await relay(relay_url, "subscriptions", "create", subscriber.url("/live"), "--json"))
    )["id"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(RELAY_URL=relay_url, RELAY_ADMIN_TOKEN=ADMIN_TOKEN)
    tail = await asyncio.create_subprocess_exec(
        RELAY,
        "tail",
        "--type",
        "order.created",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert tail.stdout is not None
    assert tail.stderr is not None
    try:
        async with asyncio.timeout(30):
            banner = await tail.stderr.readline()
        assert banner.decode().startswith(f"following {relay_url}")

        posted = await post_routestripe(api, [visit_event()])
        posted_at = time.monotonic()
        [event_id] = posted.json()["event_ids"]
        async with asyncio.timeout(10):
            event_line = (await tail.stdout.readline()).decode()
        seen_after = time.monotonic() - posted_at
        async with asyncio.timeout(20):
            attempt_line = (await tail.stdout.readline()).decode()
        # Filtered out by --type: must never show.
        await post_routestripe(api, [visit_event(event="visit.updated")])
        await subscriber.wait_for(2, path="/live", within=20)
    finally:
        tail.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            code = await tail.wait()
    rest = (await tail.stdout.read()).decode()
    errors = (await tail.stderr.read()).decode()

    assert " event " in event_line
    assert event_id in event_line
    assert "order.created" in event_line
    assert " rs " in event_line
    assert event_id in attempt_line
    assert subscription_id in attempt_line
    assert "succeeded" in attempt_line
    assert " 200 " in attempt_line
    # The promise: shown within a second (tail polls every 0.3 s).
    assert seen_after < 1.0, seen_after
    assert "order.updated" not in rest
    assert code == 0
    assert "Traceback" not in errors


async def test_tail_reconnects_when_the_relay_restarts_and_says_so(
    module_database_url: str, api: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = cli_env(module_database_url, tmp_path, free_port())
    url = f"http://127.0.0.1:{env['RELAY_PORT']}"
    serve = await asyncio.to_thread(start_serve, env, tmp_path)
    tail: asyncio.subprocess.Process | None = None
    try:
        await routestripe_source(url)
        tail = await asyncio.create_subprocess_exec(
            RELAY,
            "tail",
            env={**env, "RELAY_URL": url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert tail.stdout is not None
        assert tail.stderr is not None
        async with asyncio.timeout(30):
            assert (await tail.stderr.readline()).decode().startswith(f"following {url}")

        serve.kill()
        await asyncio.to_thread(serve.wait, 15)
        async with asyncio.timeout(10):
            lost = (await tail.stderr.readline()).decode()
        assert lost.startswith("lost the relay: cannot reach the relay at"), lost
        assert tail.returncode is None

        serve = await asyncio.to_thread(start_serve, env, tmp_path)
        async with asyncio.timeout(20):  # the backoff is at most 10 s
            back = (await tail.stderr.readline()).decode()
        assert back == f"reconnected to the relay at {url}\n"

        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            posted = await post_routestripe(http, [visit_event()])
        [event_id] = posted.json()["event_ids"]
        async with asyncio.timeout(10):
            line = (await tail.stdout.readline()).decode()
        assert event_id in line
        # Not a terminal: no colour codes for whatever reads the pipe.
        assert "\x1b[" not in line
    finally:
        if tail is not None and tail.returncode is None:
            tail.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                await tail.wait()
        await asyncio.to_thread(stop_serve, serve)
    assert tail.returncode == 0
    assert tail.stderr is not None
    assert "Traceback" not in (await tail.stderr.read()).decode()


def test_api_keys_against_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/relay",
        RELAY_DATA_DIR=str(tmp_path),
        RELAY_DB_CONNECT_TIMEOUT="2",
        RELAY_DISPATCHER_LEASE="PT60S",
    )
    refused = subprocess.run(
        [RELAY, "api-keys", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stdout == ""
    # Log lines (the encryption key generated) come first on stderr, the one-line error last.
    assert refused.stderr.splitlines()[-1].startswith("error: cannot reach the database")
    assert "Traceback" not in refused.stderr
