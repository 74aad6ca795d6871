"""Autovacuum's ANALYZE, done by the bench on its own database while a run lasts.

This machine's PostgreSQL runs with autovacuum off; a relay in production runs with it on
(docs/operations.md#autovacuum), and its plans depend on it. Each connection plans the claim
once and keeps the plan until its tables' statistics change: a plan made while `deliveries`
was small scans the whole table in every claim, and only an ANALYZE replaces it. Without this,
every figure would measure the relay on tables no autovacuum had ever looked at.

Every `NAPTIME` seconds the tables PostgreSQL's autovacuum would analyze, with the settings
docs/operations.md recommends, are analyzed: those whose rows changed since their last
analysis by more than 50 plus 2 % of their size. Vacuum is not done here (as before), only the
analysis that keeps the planner's picture of the tables true.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

NAPTIME = 10.0
THRESHOLD = 50
SCALE_FACTOR = 0.02

_DUE = """
    SELECT format('%I.%I', s.schemaname, s.relname)
    FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.n_mod_since_analyze > $1 + $2 * greatest(c.reltuples, 0)
    ORDER BY s.n_mod_since_analyze DESC
"""


class AutoAnalyze:
    """Analyzes what autovacuum would, every `naptime` seconds, until `stop()`."""

    def __init__(self, database_url: str, *, naptime: float = NAPTIME) -> None:
        self.database_url = database_url
        self.naptime = naptime
        self.analyzed: list[str] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-autoanalyze")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def analyze_due(self, connection: asyncpg.Connection) -> list[str]:
        tables: list[str] = [
            row[0] for row in await connection.fetch(_DUE, THRESHOLD, SCALE_FACTOR)
        ]
        for table in tables:
            await connection.execute(f"ANALYZE {table}")
        self.analyzed.extend(tables)
        return tables

    async def _run(self) -> None:
        connection = await asyncpg.connect(self.database_url)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.naptime)
                if self._stopping.is_set():
                    return
                await self.analyze_due(connection)
        finally:
            await connection.close()
