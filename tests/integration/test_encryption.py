"""Encryption at rest across a key's life: the migration that encrypts existing rows, rotation
to a new key, and the refusal to start in production without one."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from cryptography.fernet import Fernet
from pydantic import SecretStr

from relay.core.crypto import Keyring, install_keyring, new_key
from relay.core.settings import Settings
from relay.db.migrations import alembic_config
from tests.conftest import ADMIN_TOKEN, DatabaseServer
from tests.support.relay import (
    ROUTESTRIPE_SECRET,
    create_routestripe_source,
    post_routestripe,
    relay_client,
    visit_event,
)

RELAY = str(Path(sys.executable).parent / "relay")
VERIFICATION = {
    "current": {"type": "hmac", "secret": "plain-secret-0123456789", "header": "X-Signature"},
    "previous": {"type": "basic", "username": "u", "password": "plain-password-0123"},
    "previous_expires_at": "2030-01-01T00:00:00+00:00",
}


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(_plain(url))
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


async def test_migration_encrypts_existing_plaintext_rows_and_downgrade_restores_them(
    database_server: DatabaseServer,
) -> None:
    url = database_server.url(f"{database_server.prefix}_plaintext")
    await _create_database(database_server, url.rsplit("/", 1)[1])
    config = alembic_config(url)
    await asyncio.to_thread(command.upgrade, config, "0004")
    connection = await asyncpg.connect(_plain(url))
    try:
        await connection.execute(
            "INSERT INTO sources (id, slug, vendor, verification) VALUES ($1, $2, $3, $4::jsonb)",
            "src_1",
            "rs",
            "routestripe",
            json.dumps(VERIFICATION),
        )
        await connection.execute(
            "INSERT INTO subscriptions (id, url, event_types, secret, previous_secret, headers) "
            "VALUES ('sub_1', 'https://a.example/h', '{*}', 'whsec_current', 'whsec_previous', "
            """'{"X-Partner-Cred": "plain-header-value"}'), """
            "('sub_2', 'https://b.example/h', '{*}', 'whsec_alone', NULL, '{}')"
        )
    finally:
        await connection.close()
    keyring = Keyring([new_key()])
    install_keyring(keyring)

    await asyncio.to_thread(command.upgrade, config, "head")

    [source] = await _fetch(url, "SELECT verification #>> '{}' AS token FROM sources")
    assert json.loads(keyring.decrypt(source["token"])) == VERIFICATION
    rows = await _fetch(
        url,
        "SELECT id, secret, previous_secret, headers #>> '{}' AS headers "
        "FROM subscriptions ORDER BY id",
    )
    assert json.loads(keyring.decrypt(rows[0]["headers"])) == {
        "X-Partner-Cred": "plain-header-value"
    }
    assert json.loads(keyring.decrypt(rows[1]["headers"])) == {}
    assert [keyring.decrypt(rows[0]["secret"]), keyring.decrypt(rows[0]["previous_secret"])] == [
        "whsec_current",
        "whsec_previous",
    ]
    assert keyring.decrypt(rows[1]["secret"]) == "whsec_alone"
    assert rows[1]["previous_secret"] is None
    dump = " ".join(str(dict(row)) for row in rows) + source["token"]
    for plaintext in ("plain-secret", "plain-password", "whsec_", "plain-header-value"):
        assert plaintext not in dump

    await asyncio.to_thread(command.downgrade, config, "0004")

    [restored] = await _fetch(url, "SELECT verification FROM sources")
    assert json.loads(restored["verification"]) == VERIFICATION
    rows = await _fetch(
        url, "SELECT secret, previous_secret, headers::text FROM subscriptions ORDER BY id"
    )
    assert [tuple(row) for row in rows] == [
        ("whsec_current", "whsec_previous", '{"X-Partner-Cred": "plain-header-value"}'),
        ("whsec_alone", None, "{}"),
    ]


async def _create_database(server: DatabaseServer, name: str) -> None:
    connection = await asyncpg.connect(_plain(server.server_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    server.created.append(name)


def _env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(values)
    return env


def _relay(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RELAY, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


async def test_rotating_to_a_new_key_rewrites_every_secret(
    settings: Settings, module_database_url: str, tmp_path: Path, engine: Any
) -> None:
    old, new = new_key(), new_key()
    under_old = settings.model_copy(update={"encryption_key": SecretStr(old)})
    async with relay_client(under_old, module_database_url, admin_token=ADMIN_TOKEN) as client:
        await create_routestripe_source(client)
        created = await client.post(
            "/v1/subscriptions",
            json={"url": "https://a.example/h", "headers": {"X-Partner-Cred": "partner-key-7"}},
        )
        assert created.status_code == 201
        rotated = await client.post(f"/v1/subscriptions/{created.json()['id']}/rotate-secret")
        assert rotated.status_code == 200

    env = _env(
        RELAY_DATABASE_URL=module_database_url,
        RELAY_DATA_DIR=str(tmp_path / "cli-data"),
        RELAY_ENCRYPTION_KEY=f"{new},{old}",
    )
    done = _relay(env, "encryption", "rotate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 sources, 1 subscriptions" in done.stdout

    only_new = Keyring([new])
    [source] = await _fetch(module_database_url, "SELECT verification #>> '{}' AS t FROM sources")
    assert ROUTESTRIPE_SECRET in only_new.decrypt(source["t"])
    [row] = await _fetch(
        module_database_url,
        "SELECT secret, previous_secret, headers #>> '{}' AS headers FROM subscriptions",
    )
    assert only_new.decrypt(row["secret"]) == rotated.json()["secret"]
    assert only_new.decrypt(row["previous_secret"]) == created.json()["secret"]
    # Custom header values are secrets too: stored encrypted, and rotated with the rest.
    assert "partner-key-7" not in row["headers"]
    assert json.loads(only_new.decrypt(row["headers"])) == {"X-Partner-Cred": "partner-key-7"}

    # With the old key gone the relay still verifies with the stored credentials.
    under_new = settings.model_copy(update={"encryption_key": SecretStr(new)})
    async with relay_client(under_new, module_database_url, admin_token=ADMIN_TOKEN) as client:
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
        assert (await client.get("/v1/subscriptions")).status_code == 200

    wrong = _relay({**env, "RELAY_ENCRYPTION_KEY": new_key()}, "encryption", "rotate", cwd=tmp_path)
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("error: a stored secret cannot be decrypted")
    assert "Traceback" not in wrong.stderr


async def test_a_key_that_cannot_decrypt_gives_a_clear_error_not_a_secret(
    settings: Settings, module_database_url: str, engine: Any
) -> None:
    first = settings.model_copy(update={"encryption_key": SecretStr(new_key())})
    async with relay_client(first, module_database_url, admin_token=ADMIN_TOKEN) as client:
        await create_routestripe_source(client)
    other = settings.model_copy(update={"encryption_key": SecretStr(new_key())})
    async with relay_client(other, module_database_url, admin_token=ADMIN_TOKEN) as client:
        response = await client.get("/v1/sources")
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "encryption_error",
        "message": "a stored secret cannot be decrypted with any key in RELAY_ENCRYPTION_KEY: "
        "the key that encrypted it was removed, or the row was written in the clear or altered",
    }


def test_production_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    env = _env(
        RELAY_ENV="production",
        RELAY_DATA_DIR=str(tmp_path / "data"),
        RELAY_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none",
    )
    for args in (["serve"], ["worker"], ["migrate"], ["api-keys", "list"]):
        refused = _relay(env, *args, cwd=tmp_path)
        assert refused.returncode == 1, (args, refused.stderr)
        assert refused.stderr.strip().endswith(
            "RELAY_ENCRYPTION_KEY is required when RELAY_ENV=production: make a key with "
            "`relay encryption new-key`, keep it in your secret store and set "
            "RELAY_ENCRYPTION_KEY to it"
        ), refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / "data").exists()

    made = _relay(env, "encryption", "new-key", cwd=tmp_path)
    assert made.returncode == 0
    Fernet(made.stdout.strip())


async def test_each_start_of_the_embedded_default_reuses_its_generated_key(
    settings: Settings, module_database_url: str, engine: Any
) -> None:
    async with relay_client(settings, module_database_url, admin_token=ADMIN_TOKEN) as client:
        await create_routestripe_source(client)
    key_file = settings.data_dir / "encryption-key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    async with relay_client(settings, module_database_url, admin_token=ADMIN_TOKEN) as client:
        assert (await post_routestripe(client, [visit_event()])).status_code == 200
