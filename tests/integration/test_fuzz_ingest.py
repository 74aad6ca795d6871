"""Hypothesis throws garbage at every vendor's ingest endpoint, with valid credentials, and at
the admin API: every answer is a 200 or a 4xx with a reason, never a 5xx, and nothing is ever
half-stored.

Hypothesis drives a synchronous test in a worker thread; each example runs on the session's
event loop (where the app and its database pool live) through `run_coroutine_threadsafe`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.relay import routestripe_signature

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendors"
HMAC_SECRET = "fuzz-routestripe-secret-0123456789"
JWT_SECRET = "fuzz-bringg-jwt-secret-0123456789abcdef0123"
QUERY_TOKEN = "fuzz-routigo-query-token-0123456789"
PASSWORD = "fuzz-antsroute-password-0123"

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# vendor -> (verification, (body) -> (headers, query) carrying valid credentials)
VENDORS: dict[str, tuple[dict[str, Any], Callable[[bytes], tuple[dict[str, str], dict[str, str]]]]]
VENDORS = {
    "routestripe": (
        {"type": "hmac", "secret": HMAC_SECRET},
        lambda body: ({"X-Signature": routestripe_signature(body, HMAC_SECRET)}, {}),
    ),
    "antsroute": (
        {"type": "basic", "username": "ants", "password": PASSWORD},
        lambda _body: (_basic("ants", PASSWORD), {}),
    ),
    "bringg": (
        {"type": "jwt", "secret": JWT_SECRET},
        lambda _body: (
            {
                "Authorization": "Bearer "
                + jwt.encode({"exp": int(time.time()) + 600, "sub": "bringg"}, JWT_SECRET, "HS256")
            },
            {},
        ),
    ),
    "routigo": (
        {"type": "query_token", "param": "token", "token": QUERY_TOKEN},
        lambda _body: ({}, {"token": QUERY_TOKEN}),
    ),
}
FIXTURE_BODIES = {
    vendor: [json.loads(path.read_bytes()) for path in sorted((FIXTURES / vendor).glob("*.json"))]
    for vendor in VENDORS
}

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["", "0", "-1", "2026-02-04T16:05:08Z", "not-a-date", "\u0000", "\ud7ff"])
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=50, max_value=3000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    return b'{"event": "batch", "data": ' + opener * depth + b"1" + closer * depth + b"}"


@st.composite
def mutated_fixture(draw: st.DrawFn, vendor: str) -> bytes:
    """A documented payload with some values swapped for random ones: reaches the adapters'
    field handling, where random bytes alone are refused at the JSON parser."""
    document = json.loads(json.dumps(draw(st.sampled_from(FIXTURE_BODIES[vendor]))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        target = document
        while isinstance(target, dict | list) and target and draw(st.booleans()):
            keys = list(target) if isinstance(target, dict) else list(range(len(target)))
            key = draw(st.sampled_from(keys))
            if not isinstance(target[key], dict | list):
                break
            target = target[key]
        if isinstance(target, dict) and target:
            target[draw(st.sampled_from(list(target)))] = draw(json_values)
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(json_values)
    return json.dumps(document).encode()


def bodies(vendor: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=2048),
        json_values.map(lambda value: json.dumps(value).encode()),
        deep_nesting(),
        mutated_fixture(vendor),
        mutated_fixture(vendor).map(lambda body: body.replace(b'"', b'"\xff', 1)),
        st.binary(max_size=64).map(lambda junk: b'{"event": "' + junk + b'"}'),
    )


content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=relay",
        "application/xml",
        "",
    ]
)


def run_on(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)


async def half_stored(session_factory: async_sessionmaker[AsyncSession]) -> list[Any]:
    """Rows breaking "all or nothing": events without an accepted request, accepted requests
    whose events are missing, and events without the deliveries the catch-all subscription
    must have given them."""
    async with session_factory() as session:
        orphans = (
            await session.execute(
                text(
                    "SELECT e.id FROM events e LEFT JOIN inbound_requests r ON r.id = e.request_id "
                    "WHERE r.id IS NULL OR r.verdict <> 'accepted' OR r.status_code <> 200"
                )
            )
        ).all()
        incomplete = (
            await session.execute(
                text(
                    "SELECT r.id FROM inbound_requests r WHERE r.verdict = 'accepted' AND ("
                    " r.accepted_count <> cardinality(r.event_ids) OR r.accepted_count <>"
                    " (SELECT count(*) FROM events e WHERE e.request_id = r.id))"
                )
            )
        ).all()
        undelivered = (
            await session.execute(
                text(
                    "SELECT e.id FROM events e WHERE NOT EXISTS "
                    "(SELECT 1 FROM deliveries d WHERE d.event_id = e.id)"
                )
            )
        ).all()
    return [*orphans, *incomplete, *undelivered]


def assert_reasoned(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        message = response.json()["error"]["message"]
        assert isinstance(message, str)
        assert message


async def _sources_and_catch_all(client: httpx.AsyncClient) -> None:
    for vendor, (verification, _) in VENDORS.items():
        response = await client.post(
            "/v1/sources",
            json={"slug": f"fuzz-{vendor}", "vendor": vendor, "verification": verification},
        )
        assert response.status_code == 201, response.text
    # A public address literal: nothing resolves, and no dispatcher runs to send anything.
    subscription = await client.post(
        "/v1/subscriptions", json={"url": "https://93.184.215.14/hook", "event_types": ["*"]}
    )
    assert subscription.status_code == 201, subscription.text


async def test_garbage_at_every_vendor_endpoint_is_a_reasoned_4xx_or_fully_stored(
    client: httpx.AsyncClient, session_factory: async_sessionmaker[AsyncSession]
) -> None:
    await _sources_and_catch_all(client)
    loop = asyncio.get_running_loop()
    seen: dict[int, int] = {}

    async def counts() -> tuple[int, int]:
        async with session_factory() as session:
            row = (
                await session.execute(
                    text("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM deliveries)")
                )
            ).one()
        return int(row[0]), int(row[1])

    async def one(vendor: str, body: bytes, content_type: str) -> None:
        headers, query = VENDORS[vendor][1](body)
        events_before, deliveries_before = await counts()
        response = await client.post(
            f"/ingest/fuzz-{vendor}",
            content=body,
            params=query,
            headers={"Authorization": "", "Content-Type": content_type, **headers},
        )
        assert_reasoned(response)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        accepted = 0
        if response.status_code == 200:
            accepted = response.json().get("accepted", 0)
            for event_id in response.json()["event_ids"]:
                assert (await client.get(f"/v1/events/{event_id}")).status_code == 200
        # A refusal adds nothing; an acceptance adds its events, each with its one delivery.
        assert await counts() == (events_before + accepted, deliveries_before + accepted)
        assert await half_stored(session_factory) == []

    @FUZZ
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        vendor = data.draw(st.sampled_from(sorted(VENDORS)))
        run_on(loop, one(vendor, data.draw(bodies(vendor)), data.draw(content_types)))

    await asyncio.to_thread(check)
    # The fuzzing reached both outcomes: refusals and stored events.
    assert seen.get(400, 0) > 0, seen
    assert seen.get(200, 0) > 0, seen


admin_bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=512),
    st.fixed_dictionaries(
        {},
        optional={
            "slug": json_values,
            "vendor": st.sampled_from([*VENDORS, "nope", ""]) | json_values,
            "verification": json_values
            | st.fixed_dictionaries({"type": st.sampled_from(["hmac", "basic", "jwt", "x"])}),
            "url": st.sampled_from(["https://93.184.215.14/x", "ftp://x", "", "http://"])
            | st.text(max_size=40),
            "event_types": json_values,
            "filter": json_values,
            "headers": json_values,
            "retry_schedule": json_values,
            "rate_limit_per_second": json_values,
            "max_concurrency": json_values,
        },
    ).map(lambda value: json.dumps(value).encode()),
)
admin_calls = st.sampled_from(
    [
        ("POST", "/v1/sources"),
        ("POST", "/v1/subscriptions"),
        ("PATCH", "/v1/sources/{source}"),
        ("PATCH", "/v1/subscriptions/{subscription}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/deliveries"),
        ("GET", "/v1/requests"),
        ("GET", "/v1/events/{junk}"),
        ("POST", "/v1/events/{junk}/replay"),
    ]
)
query_values = st.dictionaries(
    st.sampled_from(["limit", "cursor", "type", "vendor", "source", "status", "since", "verdict"]),
    st.text(max_size=30) | st.integers().map(str),
    max_size=3,
)


async def test_garbage_at_the_admin_api_is_a_reasoned_4xx_never_a_5xx(
    client: httpx.AsyncClient,
) -> None:
    await _sources_and_catch_all(client)
    source_id = (await client.get("/v1/sources")).json()["data"][0]["id"]
    subscription_id = (await client.get("/v1/subscriptions")).json()["data"][0]["id"]
    loop = asyncio.get_running_loop()

    async def one(method: str, path: str, body: bytes, query: dict[str, str], junk: str) -> None:
        url = path.format(source=source_id, subscription=subscription_id, junk=junk)
        response = await client.request(
            method,
            url,
            content=body if method != "GET" else None,
            params=query,
            headers={"Content-Type": "application/json"},
        )
        assert_reasoned(response)

    @FUZZ
    @given(
        call=admin_calls,
        body=admin_bodies,
        query=query_values,
        # Control characters are refused by httpx before a request is sent.
        junk=st.text(
            alphabet=st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=30
        ),
    )
    def check(call: tuple[str, str], body: bytes, query: dict[str, str], junk: str) -> None:
        run_on(loop, one(*call, body, query, junk.replace("/", "_").replace("?", "_")))

    await asyncio.to_thread(check)


OAUTH_SECRET = "fuzz-oauth-client-secret-0123456789abcdef"
token_fields = st.dictionaries(
    st.sampled_from(["grant_type", "client_id", "client_secret", "scope"]) | st.text(max_size=8),
    st.sampled_from(["client_credentials", "bringg", OAUTH_SECRET, ""]) | st.text(max_size=20),
    max_size=5,
)
token_bodies = st.one_of(
    token_fields.map(lambda fields: urlencode(fields).encode()),
    token_fields.map(lambda fields: json.dumps(fields).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=256),
)
authorizations = st.one_of(
    st.just(""),
    st.just("Basic " + base64.b64encode(f"bringg:{OAUTH_SECRET}".encode()).decode()),
    st.binary(max_size=40).map(lambda raw: "Basic " + base64.b64encode(raw).decode()),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


async def test_garbage_at_the_oauth_token_endpoint_is_an_rfc_6749_error_or_a_token(
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        "/v1/sources",
        json={
            "slug": "fuzz-oauth",
            "vendor": "bringg",
            "verification": {
                "type": "oauth2",
                "client_id": "bringg",
                "client_secret": OAUTH_SECRET,
            },
        },
    )
    assert created.status_code == 201, created.text
    loop = asyncio.get_running_loop()
    seen: dict[int, int] = {}

    async def one(body: bytes, content_type: str, authorization: str) -> None:
        response = await client.post(
            "/ingest/fuzz-oauth/oauth/token",
            content=body,
            headers={"Content-Type": content_type, "Authorization": authorization},
        )
        assert response.status_code < 500, (response.status_code, response.text[:500])
        answer = response.json()
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        if response.status_code == 200:
            assert answer["token_type"] == "Bearer"
            assert answer["access_token"]
        else:
            assert isinstance(answer["error"], str)
            assert answer["error_description"]

    @FUZZ
    @given(body=token_bodies, content_type=content_types, authorization=authorizations)
    def check(body: bytes, content_type: str, authorization: str) -> None:
        run_on(loop, one(body, content_type, authorization))

    await asyncio.to_thread(check)
    assert seen.get(400, 0) + seen.get(401, 0) > 0, seen

    # The one well-formed request among them all gets its token.
    granted = await client.post(
        "/ingest/fuzz-oauth/oauth/token",
        content=urlencode({"grant_type": "client_credentials"}).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic "
            + base64.b64encode(f"bringg:{OAUTH_SECRET}".encode()).decode(),
        },
    )
    assert granted.status_code == 200, granted.text
