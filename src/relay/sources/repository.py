from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relay.sources.models import Source


class SourceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, source_id: str) -> Source | None:
        return await self.session.get(Source, source_id)

    async def get_by_slug(self, slug: str) -> Source | None:
        result = await self.session.execute(select(Source).where(Source.slug == slug))
        return result.scalar_one_or_none()

    async def list(self, *, limit: int, cursor: str | None) -> Sequence[Source]:
        query = select(Source).order_by(Source.id.desc()).limit(limit)
        if cursor is not None:
            query = query.where(Source.id < cursor)
        return (await self.session.execute(query)).scalars().all()

    async def add(self, source: Source) -> None:
        self.session.add(source)
        await self.session.flush()

    async def delete(self, source: Source) -> None:
        await self.session.delete(source)
        await self.session.flush()
