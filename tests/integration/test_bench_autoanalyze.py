"""The bench's stand-in for autovacuum's ANALYZE (bench/autoanalyze.py): it analyzes a table
once enough of its rows changed, as autovacuum would, and leaves it alone after."""

from __future__ import annotations

import asyncpg
from bench.autoanalyze import THRESHOLD, AutoAnalyze

from relay.db.listen import asyncpg_connect_args
from tests.support.subscriber import eventually


async def test_a_table_is_analyzed_once_enough_of_it_changed(module_database_url: str) -> None:
    args = asyncpg_connect_args(module_database_url)
    writer = await asyncpg.connect(**args)
    try:
        await writer.execute("CREATE TABLE bench_autoanalyze_probe (n integer)")
        await writer.execute(
            "INSERT INTO bench_autoanalyze_probe SELECT generate_series(1, $1)", THRESHOLD * 4
        )
    finally:
        # A closing connection reports its counts to the statistics at once.
        await writer.close()
    autoanalyze = AutoAnalyze(module_database_url)
    connection = await asyncpg.connect(**args)
    try:
        analyzed: list[str] = []

        async def probe_analyzed() -> bool:
            analyzed.extend(await autoanalyze.analyze_due(connection))
            return "public.bench_autoanalyze_probe" in analyzed

        await eventually(probe_analyzed, within=10)
        assert await connection.fetchval(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE relname = 'bench_autoanalyze_probe'"
        )
        assert "public.bench_autoanalyze_probe" not in await autoanalyze.analyze_due(connection)
    finally:
        await connection.execute("DROP TABLE bench_autoanalyze_probe")
        await connection.close()
