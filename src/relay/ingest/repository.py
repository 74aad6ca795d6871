from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relay.ingest.models import RequestLog


class RequestLogRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, request: RequestLog) -> None:
        self.session.add(request)

    async def get(self, request_id: str) -> RequestLog | None:
        return await self.session.get(RequestLog, request_id)

    async def list(
        self,
        *,
        source: str | None,
        verdict: str | None,
        limit: int,
        cursor: str | None,
    ) -> Sequence[RequestLog]:
        statement = select(RequestLog).order_by(RequestLog.id.desc()).limit(limit)
        if cursor is not None:
            statement = statement.where(RequestLog.id < cursor)
        if source is not None:
            statement = statement.where(RequestLog.source_id == source)
        if verdict is not None:
            statement = statement.where(RequestLog.verdict == verdict)
        return (await self.session.execute(statement)).scalars().all()
