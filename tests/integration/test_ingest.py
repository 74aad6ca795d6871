"""POST /ingest/{slug} end to end, for every vendor: verify, normalize, store, answer."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.core.logging import configure_logging
from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.relay import (
    relay_client,
    routestripe_batch,
    routestripe_signature,
    visit_event,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendors"
HMAC_SECRET = "routestripe-secret-0123456789"
JWT_SECRET = "bringg-jwt-secret-0123456789abcdef0123456789"
QUERY_TOKEN = "routigo-query-token-0123456789"
PASSWORD = "antsroute-password-0123"


def fixture(vendor: str, name: str) -> bytes:
    return (FIXTURES / vendor / f"{name}.json").read_bytes()


def bringg_jwt(secret: str = JWT_SECRET, *, expires_in: int = 300) -> str:
    return jwt.encode({"exp": int(time.time()) + expires_in, "sub": "bringg"}, secret, "HS256")


@dataclass(frozen=True)
class Case:
    vendor: str
    fixture: str
    verification: dict[str, Any]
    unified_type: str
    # (body) -> (headers, query) for a genuine request, and for one with a wrong credential.
    genuine: Callable[[bytes], tuple[dict[str, str], dict[str, str]]]
    forged: Callable[[bytes], tuple[dict[str, str], dict[str, str]]]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


CASES = [
    Case(
        "routestripe",
        "visit_created",
        {"type": "hmac", "secret": HMAC_SECRET, "partner_id": "7"},
        "order.created",
        lambda body: (
            {"X-Signature": routestripe_signature(body, HMAC_SECRET), "X-Partner-ID": "7"},
            {},
        ),
        lambda body: (
            {
                "X-Signature": routestripe_signature(body, "another-secret-0123456789"),
                "X-Partner-ID": "7",
            },
            {},
        ),
    ),
    Case(
        "antsroute",
        "delivery_done",
        {"type": "basic", "username": "ants", "password": PASSWORD},
        "order.completed",
        lambda _body: (_basic("ants", PASSWORD), {}),
        lambda _body: (_basic("ants", PASSWORD + "x"), {}),
    ),
    Case(
        "bringg",
        "run_started",
        {"type": "jwt", "secret": JWT_SECRET},
        "route.started",
        lambda _body: ({"Authorization": f"Bearer {bringg_jwt()}"}, {}),
        lambda _body: ({"Authorization": f"Bearer {bringg_jwt(expires_in=-600)}"}, {}),
    ),
    Case(
        "routigo",
        "tour_started",
        {"type": "query_token", "param": "token", "token": QUERY_TOKEN},
        "route.started",
        lambda _body: ({}, {"token": QUERY_TOKEN}),
        lambda _body: ({}, {"token": "not-the-token-0123456789"}),
    ),
]


async def create_source(
    client: httpx.AsyncClient, slug: str, vendor: str, verification: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/sources",
        json={"slug": slug, "vendor": vendor, "verification": verification, **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def post(
    client: httpx.AsyncClient,
    slug: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> httpx.Response:
    # Admin credentials must not leak into vendor requests.
    return await client.post(
        f"/ingest/{slug}",
        content=body,
        headers={"Authorization": "", **(headers or {})},
        params=query,
    )


async def event_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/v1/events", params={"limit": 500})).json()["data"])


@pytest.mark.parametrize("case", CASES, ids=[case.vendor for case in CASES])
async def test_documented_payload_is_verified_normalized_and_stored(
    client: httpx.AsyncClient, case: Case
) -> None:
    source = await create_source(client, f"{case.vendor}-main", case.vendor, case.verification)
    body = fixture(case.vendor, case.fixture)
    headers, query = case.genuine(body)

    forged = await post(client, source["slug"], body, *case.forged(body))
    assert forged.status_code == 401, forged.text
    assert "not authenticated" in forged.json()["error"]["message"]
    assert await event_count(client) == 0

    accepted = await post(client, source["slug"], body, headers, query)
    assert accepted.status_code == 200, accepted.text
    answer = accepted.json()
    assert answer["accepted"] == 1
    assert answer["duplicates"] == 0
    [event_id] = answer["event_ids"]

    listed = await client.get("/v1/events", params={"vendor": case.vendor})
    assert [item["id"] for item in listed.json()["data"]] == [event_id]
    by_type = await client.get("/v1/events", params={"type": case.unified_type})
    assert [item["id"] for item in by_type.json()["data"]] == [event_id]
    by_source = await client.get("/v1/events", params={"source": source["id"]})
    assert len(by_source.json()["data"]) == 1
    event = (await client.get(f"/v1/events/{event_id}")).json()
    assert event["id"] == event_id
    assert event["type"] == case.unified_type
    assert event["source"] == {"id": source["id"], "slug": source["slug"], "vendor": case.vendor}
    assert event["raw"]

    replayed = await post(client, source["slug"], body, *case.genuine(body))
    assert replayed.status_code == 200
    assert replayed.json()["accepted"] == 0
    assert replayed.json()["duplicates"] == 1
    assert await event_count(client) == 1

    log = (await client.get("/v1/requests", params={"source": source["id"]})).json()["data"]
    assert [row["verdict"] for row in log] == ["duplicate", "accepted", "rejected"]
    rejected = (await client.get(f"/v1/requests/{log[2]['id']}")).json()
    assert rejected["body"] is None
    assert rejected["body_size"] == len(body)
    stored = (await client.get(f"/v1/requests/{log[1]['id']}")).json()
    assert stored["body"] == body.decode()


async def test_routestripe_batch_is_split_and_its_count_checked(client: httpx.AsyncClient) -> None:
    await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    body = fixture("routestripe", "batch_mixed")

    response = await post(
        client, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)}
    )

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 7
    types = {item["type"] for item in (await client.get("/v1/events")).json()["data"]}
    assert {"order.completed", "order.failed", "proof.signature_added"} <= types

    lying = body.replace(b'"event_count": 7', b'"event_count": 9')
    assert lying != body
    refused = await post(
        client, "rs", lying, {"X-Signature": routestripe_signature(lying, HMAC_SECRET)}
    )
    assert refused.status_code == 400
    assert "event_count" in refused.json()["error"]["message"]


async def test_a_batch_of_20000_events_is_logged_in_lines_under_8_kib(
    settings: Settings, module_database_url: str, engine: AsyncEngine
) -> None:
    events = [visit_event() for _ in range(20_000)]
    body = routestripe_batch(events)
    roomy = settings.model_copy(update={"max_body_bytes": len(body) + 1024})
    previous = structlog.get_config()
    output = io.StringIO()
    configure_logging("info", "json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=output))
    try:
        async with relay_client(roomy, module_database_url, admin_token=ADMIN_TOKEN) as client:
            await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
            response = await post(
                client, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)}
            )
    finally:
        structlog.configure(**previous)

    assert response.status_code == 200, response.text[:500]
    event_ids = response.json()["event_ids"]
    assert len(event_ids) == 20_000
    lines = output.getvalue().encode().splitlines()
    assert lines
    assert max(len(line) for line in lines) < 8192
    [accepted] = [
        entry for entry in map(orjson.loads, lines) if entry["event"] == "ingest_accepted"
    ]
    assert accepted["accepted"] == 20_000
    assert accepted["event_ids"] == event_ids[:10]
    assert accepted["event_ids_not_logged"] == 19_990


async def test_ping_is_answered_and_logged_without_an_event(client: httpx.AsyncClient) -> None:
    await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    body = fixture("routestripe", "ping")

    response = await post(
        client, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)}
    )

    assert response.status_code == 200
    assert response.json()["ping"] is True
    assert response.json()["accepted"] == 0
    assert await event_count(client) == 0
    [row] = (await client.get("/v1/requests", params={"verdict": "ping"})).json()["data"]
    assert row["status_code"] == 200


async def test_unknown_event_is_kept_as_vendor_unknown(client: httpx.AsyncClient) -> None:
    await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    body = fixture("routestripe", "unknown_event")

    response = await post(
        client, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)}
    )

    assert response.status_code == 200
    [event_id] = response.json()["event_ids"]
    event = (await client.get(f"/v1/events/{event_id}")).json()
    assert event["type"] == "routestripe.unknown"
    assert event["vendor_event"]["name"] == "visit.deleted"
    [row] = (await client.get("/v1/requests")).json()["data"]
    assert "routestripe.unknown" in row["reason"]


async def test_mapping_override_fixes_format_drift_by_config(client: httpx.AsyncClient) -> None:
    source = await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    patched = await client.patch(
        f"/v1/sources/{source['id']}",
        json={"mapping": {"type_map": {"visit.deleted": "order.deleted"}}},
    )
    assert patched.status_code == 200, patched.text
    body = fixture("routestripe", "unknown_event")

    response = await post(
        client, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)}
    )

    [event_id] = response.json()["event_ids"]
    assert (await client.get(f"/v1/events/{event_id}")).json()["type"] == "order.deleted"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json at all", "not valid JSON"),
        (b"", "body is empty"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100 + b"]" * 100, "levels deep"),
        (b'{"event": "batch", "data": {"events": "nope"}}', "data.events"),
    ],
)
async def test_bad_bodies_are_400_with_a_reason_and_store_nothing(
    client: httpx.AsyncClient, body: bytes, fragment: str
) -> None:
    await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})

    response = await post(
        client, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)}
    )

    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]
    assert await event_count(client) == 0
    [row] = (await client.get("/v1/requests", params={"verdict": "invalid"})).json()["data"]
    assert row["status_code"] == 400


async def test_unknown_slug_404_and_inactive_source_403(client: httpx.AsyncClient) -> None:
    source = await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    await client.patch(f"/v1/sources/{source['id']}", json={"active": False})
    body = fixture("routestripe", "visit_created")
    signed = {"X-Signature": routestripe_signature(body, HMAC_SECRET)}

    unknown = await post(client, "nobody", body, signed)
    inactive = await post(client, "rs", body, signed)

    assert unknown.status_code == 404
    assert "no source with slug 'nobody'" in unknown.json()["error"]["message"]
    assert inactive.status_code == 403
    assert await event_count(client) == 0
    # The inactive source's request is in the log; the unknown slug's is not.
    logged = (await client.get("/v1/requests")).json()["data"]
    assert [(row["slug"], row["status_code"]) for row in logged] == [("rs", 403)]


async def test_missing_signature_is_401_and_logged_with_redacted_headers(
    client: httpx.AsyncClient,
) -> None:
    await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    body = fixture("routestripe", "visit_created")

    missing = await post(client, "rs", body)
    assert missing.status_code == 401
    assert "X-Signature" in missing.json()["error"]["message"]
    forged = await post(client, "rs", body, {"X-Signature": "ab" * 32})
    assert forged.status_code == 401

    [row, _] = (await client.get("/v1/requests", params={"verdict": "rejected"})).json()["data"]
    detail = (await client.get(f"/v1/requests/{row['id']}")).json()
    assert detail["headers"]["x-signature"] == "[redacted]"
    assert detail["body"] is None


async def test_body_over_the_limit_is_413(
    settings: Settings, module_database_url: str, client: httpx.AsyncClient
) -> None:
    await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    small = settings.model_copy(update={"max_body_bytes": 1024})
    body = b'{"event": "batch", "pad": "' + b"x" * 2000 + b'"}'

    async with relay_client(small, module_database_url, admin_token=ADMIN_TOKEN) as relay:
        response = await post(
            relay, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)}
        )

    assert response.status_code == 413
    assert "1024 bytes" in response.json()["error"]["message"]
    [row] = (await client.get("/v1/requests")).json()["data"]
    assert row["verdict"] == "rejected"


async def test_database_down_is_503_with_retry_after(settings: Settings) -> None:
    async with relay_client(settings, "postgresql://postgres@127.0.0.1:1/nothing") as relay:
        response = await post(relay, "rs", b"{}")

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["error"]["code"] == "database_unavailable"


async def test_oauth2_client_credentials_then_bearer(client: httpx.AsyncClient) -> None:
    await create_source(
        client,
        "bringg-oauth",
        "bringg",
        {"type": "oauth2", "client_id": "bringg", "client_secret": "c" * 40},
    )
    body = fixture("bringg", "task_done")

    wrong = await client.post(
        "/ingest/bringg-oauth/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "bringg", "client_secret": "x" * 40},
        headers={"Authorization": ""},
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    unsupported = await client.post(
        "/ingest/bringg-oauth/oauth/token",
        json={"grant_type": "password", "client_id": "bringg", "client_secret": "c" * 40},
        headers={"Authorization": ""},
    )
    assert unsupported.status_code == 400
    assert unsupported.json()["error"] == "unsupported_grant_type"
    issued = await client.post(
        "/ingest/bringg-oauth/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(b"bringg:" + b"c" * 40).decode()},
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    assert issued.json()["expires_in"] == 3600

    refused = await post(client, "bringg-oauth", body)
    accepted = await post(client, "bringg-oauth", body, {"Authorization": f"Bearer {token}"})

    assert refused.status_code == 401
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 1


async def test_rotated_source_credential_keeps_the_old_one_for_its_window(
    client: httpx.AsyncClient,
) -> None:
    source = await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    new_secret = "routestripe-new-secret-0123456789"
    rotated = await client.patch(
        f"/v1/sources/{source['id']}",
        json={"verification": {"secret": new_secret}, "keep_previous_for_seconds": 3600},
    )
    assert rotated.status_code == 200, rotated.text
    assert new_secret not in rotated.text
    assert HMAC_SECRET not in rotated.text
    events = [fixture("routestripe", "visit_created"), fixture("routestripe", "photo_created")]

    old = await post(
        client, "rs", events[0], {"X-Signature": routestripe_signature(events[0], HMAC_SECRET)}
    )
    new = await post(
        client, "rs", events[1], {"X-Signature": routestripe_signature(events[1], new_secret)}
    )
    assert old.status_code == 200
    assert new.status_code == 200

    await client.patch(f"/v1/sources/{source['id']}", json={"verification": {"secret": new_secret}})
    dropped = await post(
        client, "rs", events[0], {"X-Signature": routestripe_signature(events[0], HMAC_SECRET)}
    )
    assert dropped.status_code == 401


async def test_header_token_and_bringg_flat_task(client: httpx.AsyncClient) -> None:
    await create_source(client, "bringg-static", "bringg", {"token": "static-token-0123456789"})
    body = fixture("bringg", "task_cancelled_without_webhook_type")

    response = await post(
        client, "bringg-static", body, {"Authorization": "Bearer static-token-0123456789"}
    )

    assert response.status_code == 200, response.text
    [event_id] = response.json()["event_ids"]
    assert (await client.get(f"/v1/events/{event_id}")).json()["type"] == "order.cancelled"


async def test_events_list_paginates_and_filters_by_time(client: httpx.AsyncClient) -> None:
    await create_source(client, "rs", "routestripe", {"secret": HMAC_SECRET})
    body = fixture("routestripe", "batch_mixed")
    await post(client, "rs", body, {"X-Signature": routestripe_signature(body, HMAC_SECRET)})

    first = (await client.get("/v1/events", params={"limit": 4})).json()
    rest = (
        await client.get("/v1/events", params={"limit": 4, "cursor": first["next_cursor"]})
    ).json()
    future = (await client.get("/v1/events", params={"since": "2999-01-01T00:00:00Z"})).json()
    past = (await client.get("/v1/events", params={"until": "2000-01-01T00:00:00Z"})).json()

    ids = [item["id"] for item in first["data"] + rest["data"]]
    assert len(ids) == len(set(ids)) == 7
    assert ids == sorted(ids, reverse=True)
    assert rest["next_cursor"] is None
    assert future["data"] == past["data"] == []
    assert (await client.get("/v1/events/evt_01JAAAAAAAAAAAAAAAAAAAAAAA")).status_code == 404


async def test_event_types_lists_every_unified_type_with_its_vendor_events(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/event-types")

    assert response.status_code == 200
    by_type = {item["type"]: item for item in response.json()}
    assert "run_started" in by_type["route.started"]["vendors"]["bringg"]
    assert "TOUR_STARTED" in by_type["route.started"]["vendors"]["routigo"]
    assert "relay.ping" in by_type
