"""Engine and session factory; one of each per process."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from relay.core.crypto import install_from_settings
from relay.core.settings import Settings
from relay.db.embedded import start_embedded_postgres


def asyncpg_url(url: str) -> str:
    """Accepts the usual postgresql:// spelling and points SQLAlchemy at asyncpg."""
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('://', 1)[0]}://...")


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return asyncpg_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    # The encrypted columns read the process's keyring; nothing reaches them without an engine.
    install_from_settings(settings)
    return create_async_engine(
        asyncpg_url(url),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_connect_timeout,
        # No ping on checkout: asyncpg's costs three round trips (BEGIN, a query, ROLLBACK) on
        # every request. A connection the server dropped fails its first statement instead;
        # that request answers 503 and SQLAlchemy replaces every pooled connection at once.
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_connect_timeout,
            # No JIT: once a table's statistics make a plan's estimated cost pass
            # jit_above_cost, PostgreSQL compiles it on every execution. The claim crossed it
            # with fresh statistics on a few tens of thousands of deliveries, and its 142 ms of
            # compiling dwarfed the 5 ms of running it (docs/operations.md#autovacuum).
            "server_settings": {"application_name": "relay", "timezone": "UTC", "jit": "off"},
        },
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
