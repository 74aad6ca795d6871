"""Real PostgreSQL for every test that needs one.

Which server: RELAY_TEST_DATABASE_URL when set, else one answering on 127.0.0.1:5432, else an
embedded server started for this run. The schema is built once by the migrations into a
template database; each test module gets its own database copied from it, and every table is
emptied before each test.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv4Network
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from relay.core.settings import Settings
from relay.db.engine import asyncpg_url, create_engine, create_session_factory
from relay.db.migrations import upgrade_to_head
from relay.ingest.models import ConfigVersion
from relay.models import metadata
from tests.support.relay import relay_client
from tests.support.subscriber import Subscriber

ADMIN_TOKEN = "test-admin-token-0123456789"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _server_answers(url: str) -> bool:
    async def probe() -> bool:
        try:
            connection = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await connection.close()
        return True

    return asyncio.run(probe())


def _choose_server(tmp_root: Path) -> str:
    configured = os.environ.get("RELAY_TEST_DATABASE_URL")
    if configured:
        return asyncpg_url(configured)
    if _server_answers(LOCAL_SERVER):
        return asyncpg_url(LOCAL_SERVER)
    from relay.db.embedded import start_embedded_postgres

    return start_embedded_postgres(tmp_root)


def _with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _plain_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _admin_execute(server_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_plain_url(server_url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


class DatabaseServer:
    """Creates databases from the migrated template and drops them at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.prefix = f"relay_test_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_template"
        self.created: list[str] = []

    def url(self, database: str) -> str:
        return _with_database(self.server_url, database)

    async def build_template(self) -> None:
        await _admin_execute(self.server_url, f'CREATE DATABASE "{self.template}"')
        self.created.append(self.template)
        await upgrade_to_head(self.url(self.template))

    async def new_database(self) -> str:
        name = f"{self.prefix}_{len(self.created)}"
        await _admin_execute(
            self.server_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'
        )
        self.created.append(name)
        return self.url(name)

    async def drop_all(self) -> None:
        await _admin_execute(
            self.server_url,
            *(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in reversed(self.created)),
        )


@pytest.fixture(scope="session")
def database_server() -> Iterator[DatabaseServer]:
    with tempfile.TemporaryDirectory(prefix="relay-test-pg-") as tmp:
        server = DatabaseServer(_choose_server(Path(tmp)))
        asyncio.run(server.build_template())
        try:
            yield server
        finally:
            asyncio.run(server.drop_all())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def module_database_url(database_server: DatabaseServer) -> str:
    return await database_server.new_database()


@pytest.fixture
def settings(module_database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=module_database_url,
        data_dir=tmp_path / "data",
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        log_format="json",
        # Every subscriber in the tests listens on loopback, which is refused by default.
        allowed_destination_networks=[IPv4Network("127.0.0.0/8")],
    )


# config_version only ever goes up: a relay that keeps running across tests trusts its cached
# sources while the number stands. Emptied, it counted again from 1, and a relay took the next
# test's new source for the one it had cached at the same number (a 500 on a foreign key).
_TABLES = ", ".join(
    f'"{table.name}"'
    for table in metadata.sorted_tables
    if table.name != ConfigVersion.__tablename__
)


async def _empty_tables(database_url: str) -> None:
    # A module's relay process may still be claiming when the next test empties the tables:
    # TRUNCATE locks table after table and can be picked as the deadlock's victim. Its retry
    # finds the relay's short transaction gone.
    for attempt in range(5):
        try:
            await _admin_execute(database_url, f"TRUNCATE {_TABLES} CASCADE")
            return
        except asyncpg.DeadlockDetectedError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(loop_scope="session")
async def engine(module_database_url: str, settings: Settings) -> AsyncIterator[AsyncEngine]:
    await _empty_tables(module_database_url)
    engine = create_engine(module_database_url, settings)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_session_factory(engine)


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    settings: Settings, engine: AsyncEngine, module_database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process; admin requests carry the admin token unless a test removes it."""
    async with relay_client(settings, module_database_url, admin_token=ADMIN_TOKEN) as http:
        yield http


@pytest.fixture
async def subscriber() -> AsyncIterator[Subscriber]:
    """A real HTTP subscriber on 127.0.0.1 for the test's deliveries."""
    async with Subscriber().running() as running:
        yield running
