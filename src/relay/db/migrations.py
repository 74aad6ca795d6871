"""Applying and checking Alembic migrations from inside the relay."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


def _migrations_dir() -> Path:
    # A wheel carries the scripts inside the package; a source checkout keeps them at the top.
    packaged = Path(__file__).resolve().parents[1] / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


MIGRATIONS_DIR = _migrations_dir()


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused"))
    return script.get_current_head()


async def upgrade_to_head(database_url: str) -> None:
    # Alembic's command API is synchronous and runs its own event loop for the async env.py.
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)
