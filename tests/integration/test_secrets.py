"""Secrets after creation: masked in every answer, absent from the logs of a whole run, and
absent from the database's raw contents, while the relay still verifies and signs with them."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
import standardwebhooks.webhooks

from tests.conftest import ADMIN_TOKEN
from tests.support.relay import routestripe_batch, routestripe_signature, visit_event
from tests.support.subscriber import Answer, Subscriber

RELAY = str(Path(sys.executable).parent / "relay")
ENCRYPTION_KEY = "zN8kZ1sVfQH3bA2w7c0dF9eG4hJ6kL1mN3pQ5rS7tU8="


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass
class Served:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> str:
        """Stops the relay gracefully and returns everything it wrote."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.log.read_text(errors="replace")


@pytest.fixture
def served(module_database_url: str, tmp_path: Path, engine: Any) -> Iterator[Served]:
    """`relay serve` at debug level with JSON logs, stdout and stderr into one file; the
    tables were emptied first (the engine fixture)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_DATABASE_URL=module_database_url,
        RELAY_DATA_DIR=str(tmp_path / "serve-data"),
        RELAY_ADMIN_TOKEN=ADMIN_TOKEN,
        RELAY_ENCRYPTION_KEY=ENCRYPTION_KEY,
        RELAY_PORT=str(port),
        RELAY_LOG_LEVEL="debug",
        RELAY_LOG_FORMAT="json",
        RELAY_DISPATCHER_POLL_INTERVAL="0.2",
        RELAY_SHUTDOWN_GRACE="1",
        RELAY_ALLOWED_DESTINATION_NETWORKS="127.0.0.0/8",
    )
    log = tmp_path / "serve.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [RELAY, "serve"], cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    running = Served(f"http://127.0.0.1:{port}", log, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{running.url}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "relay serve did not become ready"
            time.sleep(0.1)
        yield running
    finally:
        running.stop()


@dataclass
class Run:
    """Every secret the run made, and every answer the admin API gave."""

    secrets: dict[str, str] = field(default_factory=dict)
    answers: list[str] = field(default_factory=list)

    def keep(self, response: httpx.Response) -> httpx.Response:
        self.answers.append(response.text)
        return response


def leaked(text: str, secrets: dict[str, str]) -> list[str]:
    return sorted(name for name, secret in secrets.items() if secret in text)


SCHEMES: dict[str, dict[str, Any]] = {
    "hmac": {"type": "hmac", "secret": "hmac-secret-aaaaaaaaaaaaaaaa"},
    "basic": {"type": "basic", "username": "ants", "password": "basic-password-bbbbbbbbbbbb"},
    "header": {"type": "header_token", "token": "header-token-cccccccccccccccc"},
    "query": {"type": "query_token", "token": "query-token-dddddddddddddddd"},
    "jwt": {"type": "jwt", "secret": "jwt-secret-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"},
    "oauth": {
        "type": "oauth2",
        "client_id": "vendor",
        "client_secret": "oauth-client-secret-ffffffffffffffffffffffff",
    },
}
ROTATED_HMAC = "hmac-rotated-secret-gggggggggggggggg"
ROTATED_OAUTH = "oauth-rotated-secret-hhhhhhhhhhhhhhhhhhhhhhhhhhh"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _ingest(
    http: httpx.AsyncClient, slug: str, credentials: dict[str, str], *, query: str = ""
) -> httpx.Response:
    body = routestripe_batch([visit_event()])
    headers = {"Content-Type": "application/json", "Authorization": "", **credentials}
    if "hmac_secret" in credentials:
        headers["X-Signature"] = routestripe_signature(body, headers.pop("hmac_secret"))
    return await http.post(f"/ingest/{slug}{query}", content=body, headers=headers)


async def _full_run(http: httpx.AsyncClient, subscriber: Subscriber) -> Run:
    run = Run()
    run.secrets["admin token"] = ADMIN_TOKEN
    for name, verification in SCHEMES.items():
        for field_name in ("secret", "password", "token", "client_secret"):
            if field_name in verification:
                run.secrets[f"{name} {field_name}"] = verification[field_name]
        created = run.keep(
            await http.post(
                "/v1/sources",
                json={"slug": name, "vendor": "routestripe", "verification": verification},
            )
        )
        assert created.status_code == 201, created.text
    run.secrets["basic as sent"] = _basic("ants", SCHEMES["basic"]["password"]).split()[1]
    run.secrets["hmac rotated"] = ROTATED_HMAC
    run.secrets["oauth rotated"] = ROTATED_OAUTH
    sources = {s["slug"]: s for s in run.keep(await http.get("/v1/sources")).json()["data"]}
    for slug, new in (
        ("hmac", {"type": "hmac", "secret": ROTATED_HMAC}),
        ("oauth", {"type": "oauth2", "client_id": "vendor", "client_secret": ROTATED_OAUTH}),
    ):
        rotated = run.keep(
            await http.patch(
                f"/v1/sources/{sources[slug]['id']}",
                json={"verification": new, "keep_previous_for_seconds": 3600},
            )
        )
        assert rotated.status_code == 200, rotated.text

    ok = run.keep(
        await http.post(
            "/v1/subscriptions", json={"url": subscriber.url("/ok"), "event_types": ["*"]}
        )
    )
    failing = run.keep(
        await http.post(
            "/v1/subscriptions",
            json={"url": subscriber.url("/fail"), "event_types": ["*"], "retry_schedule": [1, 1]},
        )
    )
    assert ok.status_code == failing.status_code == 201, (ok.text, failing.text)
    run.secrets["subscription ok first"] = ok.json()["secret"]
    run.secrets["subscription failing"] = failing.json()["secret"]
    rotation = run.keep(await http.post(f"/v1/subscriptions/{ok.json()['id']}/rotate-secret"))
    assert rotation.status_code == 200, rotation.text
    run.secrets["subscription ok rotated"] = rotation.json()["secret"]
    subscriber.script("/fail", then=Answer(500, body=b"no"))

    key = run.keep(await http.post("/v1/api-keys", json={"name": "ci", "scope": "read"}))
    run.secrets["api key"] = key.json()["key"]
    as_key = {"Authorization": f"Bearer {run.secrets['api key']}"}
    assert run.keep(await http.get("/v1/deliveries", headers=as_key)).status_code == 200
    assert run.keep(await http.post("/v1/sources", json={}, headers=as_key)).status_code == 403
    wrong_admin = {"Authorization": f"Bearer {ADMIN_TOKEN}-wrong"}
    assert run.keep(await http.get("/v1/sources", headers=wrong_admin)).status_code == 401

    token = run.keep(
        await http.post(
            "/ingest/oauth/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": _basic("vendor", ROTATED_OAUTH)},
        )
    )
    assert token.status_code == 200, token.text
    run.secrets["oauth access token"] = token.json()["access_token"]
    jwt_token = jwt.encode({"exp": int(time.time()) + 300}, SCHEMES["jwt"]["secret"], "HS256")
    run.secrets["jwt as sent"] = jwt_token

    genuine: list[tuple[str, dict[str, str], str]] = [
        ("hmac", {"hmac_secret": ROTATED_HMAC}, ""),
        ("hmac", {"hmac_secret": SCHEMES["hmac"]["secret"]}, ""),
        ("basic", {"Authorization": _basic("ants", SCHEMES["basic"]["password"])}, ""),
        ("header", {"Authorization": f"Bearer {SCHEMES['header']['token']}"}, ""),
        ("query", {}, f"?token={SCHEMES['query']['token']}"),
        ("jwt", {"Authorization": f"Bearer {jwt_token}"}, ""),
        ("oauth", {"Authorization": f"Bearer {run.secrets['oauth access token']}"}, ""),
    ]
    for slug, credentials, query in genuine:
        accepted = await _ingest(http, slug, credentials, query=query)
        assert accepted.status_code == 200, (slug, accepted.text)
    forged: list[tuple[str, dict[str, str], str]] = [
        ("hmac", {"hmac_secret": "not-the-secret-0123456789"}, ""),
        ("basic", {"Authorization": _basic("ants", "not-the-password")}, ""),
        ("header", {"Authorization": "Bearer not-the-token-0123456789"}, ""),
        ("query", {}, "?token=not-the-token-0123456789"),
        ("jwt", {"Authorization": "Bearer " + jwt.encode({"a": 1}, "k" * 32, "HS256")}, ""),
        ("oauth", {"Authorization": "Bearer not-a-token"}, ""),
    ]
    for slug, credentials, query in forged:
        refused = await _ingest(http, slug, credentials, query=query)
        assert refused.status_code == 401, (slug, refused.text)

    delivered = await subscriber.wait_for(len(genuine), path="/ok", within=60)
    # Both secrets sign during the rotation overlap: a receiver holding either accepts.
    for secret in (run.secrets["subscription ok rotated"], run.secrets["subscription ok first"]):
        for request in delivered:
            standardwebhooks.webhooks.Webhook(secret).verify(
                request.body, request.headers, json_parse=False
            )
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.webhooks.Webhook(run.secrets["subscription failing"]).verify(
            delivered[0].body, delivered[0].headers, json_parse=False
        )
    await subscriber.wait_for(len(genuine) + 1, path="/fail", within=60)
    for request in subscriber.on("/fail")[:1]:
        standardwebhooks.webhooks.Webhook(run.secrets["subscription failing"]).verify(
            request.body, request.headers, json_parse=False
        )

    for path in ("/v1/sources", "/v1/subscriptions", "/v1/deliveries", "/v1/requests"):
        listing = run.keep(await http.get(path, params={"limit": 200}))
        assert listing.status_code == 200
    for source in sources.values():
        run.keep(await http.get(f"/v1/sources/{source['id']}"))
    for request_row in run.keep(await http.get("/v1/requests")).json()["data"]:
        run.keep(await http.get(f"/v1/requests/{request_row['id']}"))
    for subscription in (ok.json(), failing.json()):
        run.keep(await http.get(f"/v1/subscriptions/{subscription['id']}"))
        run.keep(await http.get(f"/v1/subscriptions/{subscription['id']}/attempts"))
    return run


async def raw_dump(database_url: str) -> str:
    """What a dump of the database holds: every row of every table, every column as text."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
        rows = []
        for (table,) in tables:
            rows += await connection.fetch(f'SELECT t::text FROM "{table}" AS t')  # noqa: S608
    finally:
        await connection.close()
    return "\n".join(row[0] for row in rows)


async def test_full_run_leaks_no_secret_to_answers_logs_or_database(
    served: Served, subscriber: Subscriber, module_database_url: str
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=30) as http:
        run = await _full_run(http, subscriber)

    creation_answers = {
        "subscription ok first",
        "subscription ok rotated",
        "subscription failing",
        "api key",
        "oauth access token",
    }
    # Shown once, in the answer that created them; after that, masked everywhere.
    later_answers = "\n".join(run.answers)
    shown_once = {name: secret for name, secret in run.secrets.items() if name in creation_answers}
    for name, secret in shown_once.items():
        assert sum(secret in answer for answer in run.answers) == 1, name
    masked = {name: secret for name, secret in run.secrets.items() if name not in shown_once}
    masked.pop("admin token")
    assert leaked(later_answers, masked) == []

    dump = await raw_dump(module_database_url)
    # The dump is real: it holds what is not secret.
    assert subscriber.url("/ok") in dump
    assert "src_" in dump
    assert "evt_" in dump
    assert leaked(dump, {k: v for k, v in run.secrets.items() if k != "api key"}) == []
    assert run.secrets["api key"] not in dump

    logs = served.stop()
    assert '"event": "relay_listening"' in logs or '"event":"relay_listening"' in logs, logs[:2000]
    assert leaked(logs, run.secrets) == []


async def test_database_dump_holds_only_ciphertext(
    client: httpx.AsyncClient, module_database_url: str
) -> None:
    created = await client.post(
        "/v1/sources",
        json={"slug": "hmac", "vendor": "routestripe", "verification": SCHEMES["hmac"]},
    )
    subscription = await client.post("/v1/subscriptions", json={"url": "https://a.example/h"})
    assert created.status_code == subscription.status_code == 201

    connection = await asyncpg.connect(module_database_url.replace("+asyncpg", ""))
    try:
        verification = await connection.fetchval("SELECT verification #>> '{}' FROM sources")
        secret, previous = await connection.fetchrow(
            "SELECT secret, previous_secret FROM subscriptions"
        )
    finally:
        await connection.close()
    # Fernet tokens: version byte 0x80, base64url; nothing of the scheme readable.
    assert verification.startswith("gAAAAA")
    assert "hmac" not in verification
    assert secret.startswith("gAAAAA")
    assert previous is None
    assert subscription.json()["secret"] not in secret
