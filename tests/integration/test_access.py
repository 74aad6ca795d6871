"""Who may call the admin API: every route against every scope, API keys' life cycle, and
what of a key the database keeps."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI
from starlette.routing import BaseRoute

from relay.core.scopes import ROUTE_SCOPES, SCOPES, Scope, allows

RELAY = str(Path(sys.executable).parent / "relay")

# Routes anyone may call: the vendors' side, health probes and the API's own description.
# Every other route must have a scope in relay.core.scopes.ROUTE_SCOPES.
PUBLIC_ROUTES = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/ingest/{slug}"),
    ("POST", "/ingest/{slug}/oauth/token"),
}
_PARAM = re.compile(r"\{[^}]+\}")


def _flat(routes: list[BaseRoute]) -> Iterator[Any]:
    for route in routes:
        expand = getattr(route, "effective_route_contexts", None)
        if expand is not None:
            yield from expand()
        else:
            yield route


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app answers but the console's; HEAD is what GET does.

    The console (/console) takes no bearer token: its session guard is tested in
    tests/integration/test_console_http.py, route by route."""
    found = set()
    for route in _flat(app.routes):
        if route.path.startswith("/console"):
            continue
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def relay_app(client: httpx.AsyncClient) -> FastAPI:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, FastAPI)
    return app


async def create_key(client: httpx.AsyncClient, scope: str, name: str = "t") -> dict[str, Any]:
    response = await client.post("/v1/api-keys", json={"name": name, "scope": scope})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def call(
    client: httpx.AsyncClient, method: str, template: str, token: str | None
) -> httpx.Response:
    path = _PARAM.sub("does-not-exist", template)
    headers = {"Authorization": f"Bearer {token}" if token else ""}
    body = {} if method in {"POST", "PATCH", "PUT"} else None
    return await client.request(method, path, json=body, headers=headers)


async def test_every_route_has_a_scope_decision(client: httpx.AsyncClient) -> None:
    admin_routes = app_routes(relay_app(client)) - PUBLIC_ROUTES
    undecided = sorted(admin_routes - ROUTE_SCOPES.keys())
    assert not undecided, (
        f"routes without a scope: add them to ROUTE_SCOPES in relay/core/scopes.py: {undecided}"
    )
    assert len(admin_routes) >= 30


async def test_each_scope_on_every_admin_route(client: httpx.AsyncClient) -> None:
    keys: dict[Scope, str] = {}
    for scope in SCOPES:
        keys[scope] = (await create_key(client, scope, name=f"{scope}-key"))["key"]
    routes = sorted(app_routes(relay_app(client)) - PUBLIC_ROUTES)
    seen: dict[str, set[Scope]] = {"allowed": set(), "forbidden": set()}
    for method, template in routes:
        needed = ROUTE_SCOPES.get((method, template), "admin")
        anonymous = await call(client, method, template, None)
        assert anonymous.status_code == 401, (method, template, anonymous.text)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        for scope, key in keys.items():
            response = await call(client, method, template, key)
            if allows(scope, needed):
                seen["allowed"].add(scope)
                assert response.status_code not in {401, 403}, (method, template, scope)
                assert response.status_code < 500, (method, template, scope, response.text)
            else:
                seen["forbidden"].add(scope)
                assert response.status_code == 403, (method, template, scope, response.text)
                message = response.json()["error"]["message"]
                assert f"needs the '{needed}' scope" in message
                assert f"this key has '{scope}'" in message
    assert seen == {"allowed": {"read", "ops", "admin"}, "forbidden": {"read", "ops"}}


def test_scope_table_matches_the_issue() -> None:
    # The ops scope re-sends what is stored or sends a test; it changes no source, subscription
    # or key.
    tests = {
        ("POST", "/v1/sources/{source_id}/test"),
        ("POST", "/v1/subscriptions/{subscription_id}/test"),
    }
    ops_only = {route for route, scope in ROUTE_SCOPES.items() if scope == "ops"}
    assert ops_only == tests | {
        ("POST", "/v1/deliveries/{delivery_id}/retry"),
        ("POST", "/v1/events/{event_id}/replay"),
        ("POST", "/v1/events/replay"),
        ("POST", "/v1/subscriptions/{subscription_id}/recover"),
    }
    for (method, path), scope in ROUTE_SCOPES.items():
        if method != "GET":
            assert scope != "read", (method, path)
        changes_configuration = method != "GET" and (method, path) not in tests
        if path.startswith(("/v1/sources", "/v1/api-keys")) and changes_configuration:
            assert scope == "admin", (method, path)
        if path.startswith("/v1/api-keys"):
            assert scope == "admin", (method, path)


async def test_wrong_malformed_and_missing_tokens_get_401(client: httpx.AsyncClient) -> None:
    key = (await create_key(client, "admin"))["key"]
    for header in (
        "",
        "Bearer",
        "Bearer ",
        "Basic " + key,
        f"Bearer {key}x",
        f"Bearer {key[:-1]}",
        "Bearer rk_000000000000_" + "a" * 43,
        "Bearer not-a-key",
    ):
        response = await client.get("/v1/sources", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"]["code"] == "unauthorized"
        assert key not in response.text
    assert (await client.get("/v1/sources", headers={"Authorization": f"bearer {key}"})).is_success


async def test_revoked_key_gets_401_at_once(client: httpx.AsyncClient) -> None:
    created = await create_key(client, "ops")
    auth = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/v1/deliveries", headers=auth)).status_code == 200

    assert (await client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
    refused = await client.get("/v1/deliveries", headers=auth)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == f"API key {created['prefix']} was revoked"
    # Revoking again changes nothing; an unknown id is a 404 that names it.
    assert (await client.delete(f"/v1/api-keys/{created['id']}")).status_code == 204
    missing = await client.delete("/v1/api-keys/key_unknown")
    assert missing.status_code == 404
    assert "key_unknown" in missing.json()["error"]["message"]

    listed = (await client.get("/v1/api-keys")).json()["data"]
    assert [key["revoked_at"] is not None for key in listed] == [True]


async def test_only_the_prefix_is_readable_in_the_database(
    client: httpx.AsyncClient, module_database_url: str
) -> None:
    created = await create_key(client, "read", name="grafana")
    key = created["key"]
    assert key.startswith(created["prefix"] + "_")
    assert (
        await client.get("/v1/stats", headers={"Authorization": f"Bearer {key}"})
    ).status_code == 200

    connection = await asyncpg.connect(module_database_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch("SELECT * FROM api_keys")
    finally:
        await connection.close()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0].values())
    secret_part = key.removeprefix(created["prefix"] + "_")
    assert secret_part not in stored
    assert key not in stored
    assert rows[0]["prefix"] == created["prefix"]
    assert rows[0]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert rows[0]["last_used_at"] is not None

    # Neither the list nor a later read shows the key again.
    listing = await client.get("/v1/api-keys")
    assert secret_part not in listing.text
    assert listing.json()["data"][0]["prefix"] == created["prefix"]


async def test_api_key_requests_are_validated(client: httpx.AsyncClient) -> None:
    for body in (
        {"name": "x", "scope": "root"},
        {"name": "", "scope": "read"},
        {"scope": "read"},
        {"name": "x"},
        {"name": "x", "scope": "read", "key": "rk_chosen_by_me"},
    ):
        response = await client.post("/v1/api-keys", json=body)
        assert response.status_code == 422, body
    assert (await client.get("/v1/api-keys")).json()["data"] == []


async def test_a_key_cannot_mint_a_stronger_key(client: httpx.AsyncClient) -> None:
    ops = (await create_key(client, "ops"))["key"]
    response = await client.post(
        "/v1/api-keys",
        json={"name": "escalate", "scope": "admin"},
        headers={"Authorization": f"Bearer {ops}"},
    )
    assert response.status_code == 403
    assert len((await client.get("/v1/api-keys")).json()["data"]) == 1


def _cli_env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(RELAY_DATABASE_URL=database_url, RELAY_DATA_DIR=str(data_dir))
    return env


def _relay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RELAY, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_cli_creates_lists_and_revokes_keys(
    client: httpx.AsyncClient, module_database_url: str, tmp_path: Path, settings: Any
) -> None:
    env = _cli_env(module_database_url, settings.data_dir)

    refused = _relay(env, "api-keys", "create", "--scope", "root")
    assert refused.returncode == 2
    assert "--scope must be one of read, ops, admin" in refused.stderr

    created = _relay(env, "api-keys", "create", "--scope", "ops", "--name", "on-call")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("rk_")
    auth = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/deliveries", headers=auth)).status_code == 200
    assert (await client.post("/v1/sources", json={}, headers=auth)).status_code == 403

    listed = _relay(env, "api-keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert "on-call" in listed.stdout
    assert key.split("_")[1] in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout
    key_id = listed.stdout.split()[0]

    revoked = _relay(env, "api-keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert (await client.get("/v1/deliveries", headers=auth)).status_code == 401

    unknown = _relay(env, "api-keys", "revoke", "key_nope")
    assert unknown.returncode == 1
    assert unknown.stderr == "error: no API key with id 'key_nope'\n"
