"""A session per request. The endpoint (the request boundary) commits; services only flush.

Endpoints commit explicitly, before they return, so that no answer leaves before its data is
durable: FastAPI may run a dependency's exit code after the response has been sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    async with factory() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(_session)]
