"""Hostile clients against a real HTTP server on 127.0.0.1: bodies past the limit, slow-loris
heads and bodies, huge or countless headers, deep JSON, and one vendor flooding its source."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from relay.core.settings import Settings
from relay.ingest.limits import SourceRateLimiter
from tests.support.relay import (
    create_routestripe_source,
    post_routestripe,
    routestripe_batch,
    routestripe_signature,
    visit_event,
)
from tests.support.server import serving
from tests.support.subscriber import eventually

BODY_LIMIT = 64 * 1024


@pytest.fixture
def strict(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "max_body_bytes": BODY_LIMIT,
            "request_head_timeout": 2.0,
            "request_body_timeout": 2.0,
        }
    )


@pytest.fixture
async def server(strict: Settings, module_database_url: str) -> AsyncIterator[tuple[str, int]]:
    async with serving(strict, module_database_url) as address:
        yield address


async def read_answer(reader: asyncio.StreamReader, *, within: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (or `within` passes)."""
    received = b""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                received += chunk
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def rejected_requests(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    page = await client.get("/v1/requests", params={"verdict": "rejected"})
    assert page.status_code == 200, page.text
    rows: list[dict[str, Any]] = page.json()["data"]
    return rows


async def test_chunked_body_is_refused_once_past_the_limit_before_it_ends(
    client: httpx.AsyncClient, server: tuple[str, int]
) -> None:
    await create_routestripe_source(client)
    reader, writer = await asyncio.open_connection(*server)
    writer.write(
        b"POST /ingest/rs HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        b"X-Signature: 00\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"[" * 8192
    # Twice the limit is sent, with no Content-Length and without the closing zero chunk: the
    # answer can only come from counting bytes as they stream in.
    for _ in range(2 * BODY_LIMIT // len(chunk)):
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await writer.drain()
    answer = await read_answer(reader)
    writer.close()

    assert status_of(answer) == 413, answer[:200]
    assert b"larger than the limit" in answer
    [row] = await rejected_requests(client)
    assert row["status_code"] == 413
    assert (await client.get("/v1/events")).json()["data"] == []


async def test_slow_loris_head_is_cut_off_by_the_head_timeout(server: tuple[str, int]) -> None:
    reader, writer = await asyncio.open_connection(*server)
    head = b"POST /ingest/rs HTTP/1.1\r\nHost: relay\r\nX-Padding: " + b"a" * 100
    started = time.monotonic()
    sent = 0
    closed = False
    # One byte a second, as a slow-loris client does; the head never completes.
    for byte in head:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        sent += 1
        try:
            async with asyncio.timeout(1.0):
                if await reader.read(1024) == b"":
                    closed = True
                    break
        except TimeoutError:
            continue
        except ConnectionError:
            closed = True
            break
    elapsed = time.monotonic() - started
    writer.close()

    assert closed, "the server kept a connection open for a head that never completed"
    assert sent < len(head)
    # The head timeout is 2 s; far below the 100+ s this head would take to arrive.
    assert elapsed < 30


async def test_slow_body_gets_408_and_is_logged(
    client: httpx.AsyncClient, server: tuple[str, int]
) -> None:
    await create_routestripe_source(client)
    reader, writer = await asyncio.open_connection(*server)
    writer.write(
        b"POST /ingest/rs HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n"
        b'X-Signature: 00\r\n\r\n{"event"'
    )
    await writer.drain()
    answer = await read_answer(reader)
    writer.close()

    assert status_of(answer) == 408, answer[:200]
    [row] = await rejected_requests(client)
    assert row["status_code"] == 408
    assert "not received within" in row["reason"]


async def test_body_trickled_a_byte_at_a_time_is_cut_off_by_the_overall_deadline(
    client: httpx.AsyncClient, server: tuple[str, int]
) -> None:
    """Each byte arrives well within any per-read timeout; only a deadline on the whole body
    (2 s here) stops a client that would take 1,000 x 0.2 s to send it."""
    await create_routestripe_source(client)
    reader, writer = await asyncio.open_connection(*server)
    writer.write(
        b"POST /ingest/rs HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n"
        b"X-Signature: 00\r\n\r\n"
    )
    sent = 0
    answer = b""
    with contextlib.suppress(ConnectionError):
        while sent < 1000:
            writer.write(b"[")
            await writer.drain()
            sent += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    answer = await reader.read(65536)
            if answer:
                break
    answer += await read_answer(reader)
    writer.close()

    assert status_of(answer) == 408, answer[:200]
    assert sent < 1000
    [row] = await rejected_requests(client)
    assert row["status_code"] == 408


@pytest.mark.parametrize(
    ("label", "headers"),
    [
        ("one 100 KB header", b"X-Big: " + b"b" * 100_000 + b"\r\n"),
        ("1,000 headers", b"".join(b"X-H%d: v\r\n" % i for i in range(1000))),
    ],
)
async def test_oversized_or_countless_headers_are_refused_with_431(
    server: tuple[str, int], label: str, headers: bytes
) -> None:
    reader, writer = await asyncio.open_connection(*server)
    with contextlib.suppress(ConnectionError):
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n" + headers + b"\r\n")
        await writer.drain()
    answer = await read_answer(reader)
    writer.close()

    assert status_of(answer) == 431, (label, answer[:200])
    # The server is fine afterwards.
    async with httpx.AsyncClient(base_url=f"http://{server[0]}:{server[1]}") as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_ordinary_request_with_many_normal_headers_still_passes(
    server: tuple[str, int],
) -> None:
    headers = {f"X-Trace-{i}": "x" * 100 for i in range(50)}
    async with httpx.AsyncClient(base_url=f"http://{server[0]}:{server[1]}") as http:
        response = await http.get("/healthz", headers=headers)
    assert response.status_code == 200


async def test_deep_json_is_refused_with_a_reason(client: httpx.AsyncClient) -> None:
    await create_routestripe_source(client)
    body = b'{"event": "batch", "data": ' + b'{"a": ' * 500 + b"1" + b"}" * 500 + b"}"
    response = await client.post(
        "/ingest/rs",
        content=body,
        headers={"X-Signature": routestripe_signature(body), "Authorization": ""},
    )
    assert response.status_code == 400, response.text
    assert "nest" in response.json()["error"]["message"].lower()
    assert (await client.get("/v1/events")).json()["data"] == []


async def test_noisy_source_gets_429_while_another_source_still_flows(
    client: httpx.AsyncClient,
) -> None:
    noisy_source = await create_routestripe_source(client, slug="noisy")
    limited = await client.patch(
        f"/v1/sources/{noisy_source['id']}", json={"rate_limit_per_second": 2}
    )
    assert limited.status_code == 200, limited.text
    await create_routestripe_source(client, slug="quiet")

    noisy = [post_routestripe(client, [visit_event()], slug="noisy") for _ in range(20)]
    quiet = [post_routestripe(client, [visit_event()], slug="quiet") for _ in range(20)]
    answers = await asyncio.gather(*noisy, *quiet)
    noisy_answers, quiet_answers = answers[:20], answers[20:]

    refused = [answer for answer in noisy_answers if answer.status_code == 429]
    passed = [answer for answer in noisy_answers if answer.status_code == 200]
    # The bucket holds at most 2 requests, refilled at 2/s: a handful pass however slow this
    # machine is, and most of a burst of 20 does not.
    assert 2 <= len(passed) <= 10, [answer.status_code for answer in noisy_answers]
    assert len(refused) == 20 - len(passed)
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert "rate limit" in answer.json()["error"]["message"]
    assert [answer.status_code for answer in quiet_answers] == [200] * 20

    # Refusals write nothing (a flood must not become a flood of inserts); they are counted.
    assert await rejected_requests(client) == []
    scraped = (await client.get("/metrics")).text
    samples = {
        (sample.name, sample.labels.get("source"), sample.labels.get("verdict")): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
    }
    assert samples[("relay_inbound_requests_total", "noisy", "rate_limited")] == len(refused)
    assert ("relay_inbound_requests_total", "quiet", "rate_limited") not in samples
    events = (await client.get("/v1/events", params={"limit": 100})).json()["data"]
    assert len(events) == 20 + len(passed)

    await asyncio.sleep(1.2)
    assert (await post_routestripe(client, [visit_event()], slug="noisy")).status_code == 200


def test_rate_limiter_refills_at_the_rate_and_names_the_wait() -> None:
    now = [100.0]
    limiter = SourceRateLimiter(clock=lambda: now[0])

    assert [limiter.retry_after("a", 0.5) for _ in range(2)] == [0, 2]
    assert limiter.retry_after("b", 0.5) == 0, "buckets are per source"
    now[0] += 2.0
    assert limiter.retry_after("a", 0.5) == 0
    assert [limiter.retry_after("c", 10) for _ in range(11)] == [0] * 10 + [1]
    assert limiter.retry_after("d", None) == 0


async def test_source_without_a_limit_takes_a_burst_untouched(client: httpx.AsyncClient) -> None:
    await create_routestripe_source(client)
    body = routestripe_batch([visit_event() for _ in range(3)])
    answers = await asyncio.gather(
        *(
            client.post(
                "/ingest/rs",
                content=body,
                headers={"X-Signature": routestripe_signature(body), "Authorization": ""},
            )
            for _ in range(50)
        )
    )
    assert [answer.status_code for answer in answers] == [200] * 50
    assert sum(answer.json()["accepted"] for answer in answers) == 3
    assert sum(answer.json()["duplicates"] for answer in answers) == 49 * 3


@contextlib.contextmanager
def uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs as errors (an app's unhandled exception lands here with a traceback)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


async def test_client_gone_mid_body_stores_nothing_and_logs_no_traceback(
    client: httpx.AsyncClient, server: tuple[str, int]
) -> None:
    await create_routestripe_source(client)
    with capture_logs() as logged, uvicorn_errors() as errors:
        _reader, writer = await asyncio.open_connection(*server)
        writer.write(
            b"POST /ingest/rs HTTP/1.1\r\nHost: relay\r\nContent-Length: 5000\r\n"
            b'X-Signature: 00\r\nContent-Type: application/json\r\n\r\n{"event": "batch"'
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await eventually(
            lambda: any(entry["event"] == "ingest_client_disconnected" for entry in logged),
            within=15,
        )

    assert errors == []
    assert [entry for entry in logged if entry["log_level"] in {"error", "critical"}] == []
    assert not any("exc_info" in entry or "exception" in entry for entry in logged)
    assert (await client.get("/v1/requests")).json()["data"] == []
    assert (await client.get("/v1/events")).json()["data"] == []
    # The server goes on serving.
    async with httpx.AsyncClient(base_url=f"http://{server[0]}:{server[1]}") as http:
        assert (await post_routestripe(http, [visit_event()])).status_code == 200


async def test_oauth_token_endpoint_bounds_its_body_too(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/sources",
        json={
            "slug": "bringg-oauth",
            "vendor": "bringg",
            "verification": {"type": "oauth2", "client_id": "bringg", "client_secret": "c" * 40},
        },
    )
    assert created.status_code == 201, created.text
    response = await client.post(
        "/ingest/bringg-oauth/oauth/token",
        content=b"grant_type=client_credentials&pad=" + b"x" * 100_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "greater than or equal to 0.01"),
        (-5, "greater than or equal to 0.01"),
        (1e9, "less than or equal to 100000"),
        ("fast", "valid number"),
    ],
)
async def test_source_rate_limit_outside_its_range_is_a_422_saying_so(
    client: httpx.AsyncClient, value: Any, message: str
) -> None:
    source = await create_routestripe_source(client)
    response = await client.patch(
        f"/v1/sources/{source['id']}", json={"rate_limit_per_second": value}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "rate_limit_per_second" in error["message"]
    assert message in error["message"]
    refused_at_creation = await client.post(
        "/v1/sources",
        json={"slug": "other", "vendor": "routestripe", "rate_limit_per_second": value},
    )
    assert refused_at_creation.status_code == 422, refused_at_creation.text


async def test_source_rate_limit_is_set_read_and_cleared(client: httpx.AsyncClient) -> None:
    source = await create_routestripe_source(client)
    path = f"/v1/sources/{source['id']}"
    assert source["rate_limit_per_second"] is None
    assert (await client.patch(path, json={"rate_limit_per_second": 0.5})).status_code == 200
    assert (await client.get(path)).json()["rate_limit_per_second"] == 0.5
    assert (await client.patch(path, json={"rate_limit_per_second": None})).status_code == 200
    assert (await client.get(path)).json()["rate_limit_per_second"] is None
