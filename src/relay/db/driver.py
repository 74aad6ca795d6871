"""Statements of the hot paths, run by asyncpg itself on a connection of the engine's pool.

SQLAlchemy's execution layer (execution events, parameter processing, cursor adaptation, the
result object) cost the ingest about a tenth of its CPU per webhook, for statements whose text
is fixed and whose parameters are plain values: the store statement and the wake-up's NOTIFY.
Those go to the driver directly. The connection still comes from the engine's pool, with its
limits and its codecs, and a failure that leaves the connection closed is dealt with as
SQLAlchemy deals with it for the statements it runs: a database out of reach, and a pool
replaced (see `fetch`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import TextClause
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A `text()` statement compiled once for asyncpg: `$n` placeholders, named parameters in
    their order, the type casts its bind parameters declare."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: TextClause) -> DriverStatement:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        return cls(sql=compiled.string, names=tuple(compiled.positiontup or ()))

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


async def fetch(
    connection: AsyncConnection, statement: DriverStatement, params: Mapping[str, Any]
) -> list[asyncpg.Record]:
    """The statement's rows, run on `connection`'s driver connection; it must not be in a
    transaction SQLAlchemy began, so in autocommit the statement commits by itself.

    A failure after which the connection is closed is the server gone away, whatever asyncpg
    raised: a statement sent on an idle connection just as the server's goodbye arrives fails
    with "another operation is in progress", not with a connection error. It is raised as
    asyncpg's connection error, so that callers answer it as the outage it is (a 503), and the
    pool is cleared as SQLAlchemy clears it for the statements it runs."""
    arguments = statement.arguments(params)
    driver = (await connection.get_raw_connection()).driver_connection
    assert isinstance(driver, asyncpg.Connection), "the engine's driver is asyncpg"
    try:
        rows: list[asyncpg.Record] = await driver.fetch(statement.sql, *arguments)
    except Exception as exc:
        if not driver.is_closed():
            raise
        # SQLAlchemy takes a closed connection for a server gone away: it invalidates it and
        # every pooled connection opened before, as it does after the 503 its own statements
        # answer (db/engine.py). A statement through it on the closed connection fails at
        # once, without I/O, and has it do exactly that.
        with contextlib.suppress(Exception):
            await connection.exec_driver_sql("SELECT 1")
        if isinstance(exc, asyncpg.ConnectionDoesNotExistError | asyncpg.InterfaceError):
            raise
        raise asyncpg.ConnectionDoesNotExistError(
            f"the connection closed during the statement: {exc}"
        ) from exc
    return rows
