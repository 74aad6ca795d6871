from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import cast, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from relay.events.models import Event


@dataclass(frozen=True, slots=True)
class EventQuery:
    type: str | None = None
    vendor: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    subject_id: str | None = None
    # A JSON object the event's `data` must contain (PostgreSQL's @>), e.g. {"status": "late"}.
    data_contains: dict[str, Any] | None = None


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
        if query.subject_id is not None:
            statement = statement.where(Event.subject_id == query.subject_id)
        if query.data_contains is not None:
            data = cast(Event.envelope, JSONB)["data"]
            statement = statement.where(
                data.op("@>")(func.cast(type_coerce(query.data_contains, JSONB), JSONB))
            )
        return (await self.session.execute(statement)).scalars().all()
