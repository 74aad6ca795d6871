"""A short, in-process retry for a unit of database work when the database could not be
reached: a connection the server dropped (after a restart, say) fails its first statement, and
SQLAlchemy replaces the pool, so the next try usually gets through. Never for the durable
delivery schedule, which lives in the deliveries table."""

from __future__ import annotations

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from relay.core.errors import is_database_unavailable


def retrying_while_unavailable(attempts: int = 3) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(is_database_unavailable),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=2),
        reraise=True,
    )
