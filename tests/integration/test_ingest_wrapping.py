"""A genuine webhook is stored whatever its wrapping: metadata the request log cannot hold is cut
to fit with a marker, never a 422 (a vendor does not retry a 4xx); a body the HTTP parser
refuses is logged as what it is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from relay.core.settings import Settings
from relay.ingest.models import (
    CONTENT_TYPE_LENGTH,
    HEADER_COUNT,
    HEADER_NAME_LENGTH,
    HEADER_VALUE_LENGTH,
    REMOTE_ADDR_LENGTH,
    TRUNCATED,
)
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import (
    create_routestripe_source,
    relay_client,
    routestripe_batch,
    routestripe_signature,
    visit_event,
)
from tests.support.server import serving
from tests.support.subscriber import eventually

LONG_NAME = "x-" + "n" * (10 * HEADER_NAME_LENGTH)
EXTRA_HEADERS = 10 * HEADER_COUNT


def cut(value: str, length: int) -> str:
    return value[: length - len(TRUNCATED)] + TRUNCATED


def check_content_type(row: dict[str, Any]) -> None:
    assert row["content_type"] == cut("application/json; " + "c" * 10 * CONTENT_TYPE_LENGTH, 200)
    assert len(row["content_type"]) == CONTENT_TYPE_LENGTH


def check_remote_addr(row: dict[str, Any]) -> None:
    assert row["remote_addr"] == cut("a" * 10 * REMOTE_ADDR_LENGTH, REMOTE_ADDR_LENGTH)


def check_header_name(row: dict[str, Any]) -> None:
    assert row["headers"][cut(LONG_NAME, HEADER_NAME_LENGTH)] == "kept"
    assert LONG_NAME not in row["headers"]


def check_header_value(row: dict[str, Any]) -> None:
    assert row["headers"]["x-long"] == cut("v" * 10 * HEADER_VALUE_LENGTH, HEADER_VALUE_LENGTH)


def check_header_count(row: dict[str, Any]) -> None:
    headers = row["headers"]
    assert len(headers) == HEADER_COUNT
    left_out = int(headers[TRUNCATED].split()[0])
    # The extra headers plus the ordinary ones (signature, content type, host...) that came in.
    assert EXTRA_HEADERS - HEADER_COUNT < left_out < EXTRA_HEADERS
    assert headers["x-extra-0000"] == "e"


# Each metadata field of the request log at 10 times its column size (the headers column is
# JSONB: ten times the name, value and count it keeps).
CASES: list[tuple[str, dict[str, str], str, Callable[[dict[str, Any]], None]]] = [
    (
        "content type",
        {"Content-Type": "application/json; " + "c" * 10 * CONTENT_TYPE_LENGTH},
        "127.0.0.1",
        check_content_type,
    ),
    ("remote address", {}, "a" * 10 * REMOTE_ADDR_LENGTH, check_remote_addr),
    ("header name", {LONG_NAME: "kept"}, "127.0.0.1", check_header_name),
    ("header value", {"X-Long": "v" * 10 * HEADER_VALUE_LENGTH}, "127.0.0.1", check_header_value),
    (
        "header count",
        {f"X-Extra-{index:04d}": "e" for index in range(EXTRA_HEADERS)},
        "127.0.0.1",
        check_header_count,
    ),
]


@pytest.mark.parametrize(
    ("field", "headers", "remote", "check"), CASES, ids=[case[0] for case in CASES]
)
async def test_metadata_too_large_for_the_request_log_is_cut_to_fit_and_the_webhook_stored(
    settings: Settings,
    engine: Any,
    module_database_url: str,
    field: str,
    headers: dict[str, str],
    remote: str,
    check: Callable[[dict[str, Any]], None],
) -> None:
    async with relay_client(
        settings, module_database_url, admin_token=ADMIN_TOKEN, remote=(remote, 4242)
    ) as client:
        await create_routestripe_source(client)
        body = routestripe_batch([visit_event()])
        response = await client.post(
            "/ingest/rs",
            content=body,
            headers={
                "Content-Type": "application/json",
                **headers,
                "X-Signature": routestripe_signature(body),
            },
        )
        assert response.status_code == 200, (field, response.text)
        assert response.json()["accepted"] == 1
        row = (await client.get(f"/v1/requests/{response.json()['request_id']}")).json()
        [event] = (await client.get("/v1/events")).json()["data"]

    assert row["verdict"] == "accepted"
    assert event["id"] in row["event_ids"]
    check(row)


async def test_malformed_chunked_body_is_logged_as_such_not_as_a_client_gone(
    client: httpx.AsyncClient, settings: Settings, module_database_url: str
) -> None:
    await create_routestripe_source(client)
    async with serving(settings, module_database_url) as address:
        with capture_logs() as logged:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(
                b"POST /ingest/rs HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
                b'X-Signature: 00\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"eve\r\n'
            )
            await writer.drain()
            # Not a hexadecimal chunk size: the parser refuses the body mid-way.
            writer.write(b"zz\r\nnt\r\n0\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(15):
                answer = await reader.read()
            writer.close()
            await eventually(
                lambda: any(entry["event"] == "ingest_malformed_body" for entry in logged),
                within=15,
            )

    assert answer.startswith(b"HTTP/1.1 400 ")
    [line] = [entry for entry in logged if entry["event"] == "ingest_malformed_body"]
    assert line["source"] == "rs"
    assert "chunked" in line["reason"]
    assert not any(entry["event"] == "ingest_client_disconnected" for entry in logged)
    [row] = (await client.get("/v1/requests")).json()["data"]
    assert (row["verdict"], row["status_code"]) == ("invalid", 400)
    assert "chunked transfer encoding is malformed" in row["reason"]
    assert (await client.get("/v1/events")).json()["data"] == []
