from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from relay.events.models import Event


@dataclass(frozen=True, slots=True)
class EventQuery:
    type: str | None = None
    vendor: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, event_id: str) -> Event | None:
        return await self.session.get(Event, event_id)

    async def list(self, query: EventQuery, *, limit: int, cursor: str | None) -> Sequence[Event]:
        statement = select(Event).order_by(Event.id.desc()).limit(limit)
        if cursor is not None:
            statement = statement.where(Event.id < cursor)
        if query.type is not None:
            statement = statement.where(Event.type == query.type)
        if query.vendor is not None:
            statement = statement.where(Event.vendor == query.vendor)
        if query.source is not None:
            statement = statement.where(Event.source_id == query.source)
        if query.since is not None:
            statement = statement.where(Event.received_at >= query.since)
        if query.until is not None:
            statement = statement.where(Event.received_at < query.until)
        return (await self.session.execute(statement)).scalars().all()
