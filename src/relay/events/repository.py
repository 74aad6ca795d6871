from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from relay.events.models import DedupeKey, Event


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

    async def claim_dedupe_keys(
        self, source_id: str, keys_to_event_ids: dict[str, str], *, now: datetime
    ) -> set[str]:
        """Records the keys not seen before for this source; returns those, the rest are dupes.

        A concurrent request with the same key waits on the unique index until this
        transaction ends, so one of the two always sees the other's key.
        """
        if not keys_to_event_ids:
            return set()
        statement = (
            pg_insert(DedupeKey)
            .values(
                [
                    {"source_id": source_id, "key": key, "event_id": event_id, "created_at": now}
                    for key, event_id in keys_to_event_ids.items()
                ]
            )
            .on_conflict_do_nothing(index_elements=["source_id", "key"])
            .returning(DedupeKey.key)
        )
        return set((await self.session.execute(statement)).scalars().all())

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(Event), list(rows))

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
