"""All SQL about API keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relay.apikeys.models import ApiKey


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, api_key: ApiKey) -> None:
        self.session.add(api_key)
        await self.session.flush()

    async def get(self, api_key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, api_key_id)

    async def get_by_prefix(self, prefix: str) -> ApiKey | None:
        result = await self.session.execute(select(ApiKey).where(ApiKey.prefix == prefix))
        return result.scalar_one_or_none()

    async def list(self, *, limit: int, cursor: str | None) -> Sequence[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.id.desc()).limit(limit)
        if cursor is not None:
            query = query.where(ApiKey.id < cursor)
        return (await self.session.execute(query)).scalars().all()
