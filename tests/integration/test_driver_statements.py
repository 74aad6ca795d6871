"""The hot paths' statements run by asyncpg itself (relay.db.driver): they bind what SQLAlchemy
would have bound, and a connection the server dropped leaves the pool with every other one
opened before it, as it does for the statements SQLAlchemy runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import ARRAY, DateTime, bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from relay.core.errors import is_database_unavailable
from relay.db.driver import DriverStatement, fetch
from relay.db.engine import asyncpg_url
from relay.db.listen import asyncpg_connect_args
from relay.ingest.repository import _STORE_BY_DRIVER
from relay.outbox.wakeup import _NOTIFY
from tests.support.subscriber import eventually

_BACKEND = DriverStatement.of(text("SELECT pg_backend_pid() AS pid"))


@pytest_asyncio.fixture(loop_scope="session")
async def two_connections(module_database_url: str) -> AsyncIterator[AsyncEngine]:
    """A pool of exactly two connections, in autocommit as the ingest's."""
    engine = create_async_engine(
        asyncpg_url(module_database_url), pool_size=2, max_overflow=0
    ).execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        await engine.dispose()


async def _backends_of_both(engine: AsyncEngine) -> set[int]:
    """The backend of each pooled connection: both checked out at once."""
    gate = asyncio.Barrier(2)

    async def one() -> int:
        async with engine.connect() as connection:
            [row] = await fetch(connection, _BACKEND, {})
            await gate.wait()
            return int(row["pid"])

    return set(await asyncio.gather(one(), one()))


async def test_parameters_bind_by_name_with_their_declared_types(
    two_connections: AsyncEngine,
) -> None:
    statement = DriverStatement.of(
        text(
            "SELECT :word AS first, CAST(:moments AS timestamptz[]) AS moments, "
            ":word || :other AS joined"
        ).bindparams(bindparam("moments", type_=ARRAY(DateTime(timezone=True))))
    )
    moments = [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)]
    async with two_connections.connect() as connection:
        [row] = await fetch(connection, statement, {"other": "-b", "moments": moments, "word": "a"})
    assert (row["first"], row["moments"], row["joined"]) == ("a", moments, "a-b")


async def test_a_failing_statement_keeps_its_connection(two_connections: AsyncEngine) -> None:
    dividing = DriverStatement.of(text("SELECT 1 / :zero AS never"))
    before = await _backends_of_both(two_connections)
    async with two_connections.connect() as connection:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await fetch(connection, dividing, {"zero": 0})
    assert await _backends_of_both(two_connections) == before


async def test_a_dropped_connection_is_replaced_with_every_pooled_one(
    two_connections: AsyncEngine, module_database_url: str
) -> None:
    killed = await _backends_of_both(two_connections)
    admin = await asyncpg.connect(**asyncpg_connect_args(module_database_url))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(killed)
        )

        async def gone() -> bool:
            alive = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", list(killed)
            )
            return alive == 0

        await eventually(gone, within=10)
    finally:
        await admin.close()
    # The first statement on a dropped connection fails as a database out of reach (the
    # ingest answers 503 for it), and nothing after it meets the other dropped connection.
    async with two_connections.connect() as connection:
        with pytest.raises(
            (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError)
        ) as failure:
            await fetch(connection, _BACKEND, {})
    assert is_database_unavailable(failure.value)
    replaced = await _backends_of_both(two_connections)
    assert len(replaced) == 2
    assert not replaced & killed


async def test_a_statement_meeting_the_servers_goodbye_fails_as_a_database_out_of_reach(
    two_connections: AsyncEngine, module_database_url: str
) -> None:
    """A statement sent on an idle connection while the server's "terminating connection"
    arrives: asyncpg raises "another operation is in progress" for some of these races, which
    the ingest must answer 503 like any outage, not 500. Sent a little later each time until
    that race has been met."""
    admin = await asyncpg.connect(**asyncpg_connect_args(module_database_url))
    raced = 0
    try:
        for attempt in range(1000):
            async with two_connections.connect() as connection:
                [row] = await fetch(connection, _BACKEND, {})
                await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
                await asyncio.sleep((attempt % 16) * 0.0002)
                with pytest.raises(
                    (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError)
                ) as failure:
                    await fetch(connection, _BACKEND, {})
            assert is_database_unavailable(failure.value), repr(failure.value)
            raced += isinstance(failure.value.__cause__, asyncpg.InternalClientError)
            if raced >= 3:
                break
    finally:
        await admin.close()
    assert raced >= 1, "the race with the server's goodbye never happened"


@pytest.mark.parametrize("statement", [_STORE_BY_DRIVER, _NOTIFY], ids=["store", "notify"])
async def test_each_statement_is_prepared_once_per_connection(
    two_connections: AsyncEngine, statement: DriverStatement
) -> None:
    """asyncpg keeps a prepared statement only below a size (15 KiB by default): a longer one
    would be parsed and planned again on every call. The store statement with empty arrays
    stores nothing; the NOTIFY goes to a channel nobody listens on."""
    params = {name: [] for name in statement.names} | {"channel": "relay_nobody", "origin": "x"}
    async with two_connections.connect() as connection:
        for _ in range(2):
            await fetch(connection, statement, params)
        driver = (await connection.get_raw_connection()).driver_connection
        kept = await driver.fetchval(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", statement.sql
        )
    assert kept == 1
