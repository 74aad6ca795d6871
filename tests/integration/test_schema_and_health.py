from __future__ import annotations

import asyncpg
import httpx
import orjson
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from relay.core.settings import Settings
from relay.db.listen import asyncpg_connect_args
from relay.models import metadata
from tests.conftest import DatabaseServer
from tests.support.relay import relay_client


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_build_exactly_the_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)

    assert differences == []


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"


async def _get(app_settings: Settings, url: str, path: str) -> httpx.Response:
    async with relay_client(app_settings, url) as http:
        return await http.get(path)


async def test_readyz_is_503_when_migrations_are_not_applied(
    database_server: DatabaseServer, settings: Settings
) -> None:
    import asyncpg

    name = f"{database_server.prefix}_empty"
    connection = await asyncpg.connect(database_server.server_url.replace("+asyncpg", ""))
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    database_server.created.append(name)

    response = await _get(settings, database_server.url(name), "/readyz")

    assert response.status_code == 503
    assert response.json()["migrations"]["current"] is None
    assert "relay migrate" in response.json()["hint"]


async def test_readyz_is_503_when_the_database_is_unreachable(settings: Settings) -> None:
    response = await _get(settings, "postgresql://postgres@127.0.0.1:1/nothing", "/readyz")

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


_COSTLY = (
    "EXPLAIN (FORMAT JSON) SELECT count(*) "
    "FROM generate_series(1, 1000) AS a, generate_series(1, 1000) AS b, "
    "generate_series(1, 1000) AS c"
)


async def test_the_relays_connections_never_compile_a_plan(
    engine: AsyncEngine, module_database_url: str
) -> None:
    """JIT compiles a plan whose estimated cost passes a threshold, on every execution: the
    claim with fresh statistics spent 142 ms compiling to run for 5. The same costly plan on a
    connection of the server's own defaults is compiled (where the server has JIT at all)."""
    async with engine.connect() as connection:
        [relays] = (await connection.exec_driver_sql(_COSTLY)).scalar_one()
    assert "JIT" not in relays
    plain = await asyncpg.connect(**asyncpg_connect_args(module_database_url))
    try:
        if await plain.fetchval("SELECT pg_jit_available()"):
            [defaults] = orjson.loads(await plain.fetchval(_COSTLY))
            assert "JIT" in defaults
    finally:
        await plain.close()
