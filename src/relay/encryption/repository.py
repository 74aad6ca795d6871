"""All SQL about re-encrypting secret columns. Reads decrypt with any key of the keyring and
writes encrypt with its newest, through the columns' types; timestamps are left as they were:
nothing a user sees changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from relay.sources.models import Source
from relay.subscriptions.models import Subscription


class EncryptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sources_after(
        self, cursor: str, *, limit: int
    ) -> Sequence[tuple[str, dict[str, Any]]]:
        query = (
            select(Source.id, Source.verification)
            .where(Source.id > cursor)
            .order_by(Source.id)
            .limit(limit)
        )
        return [(row.id, row.verification) for row in await self.session.execute(query)]

    async def rewrite_source(self, source_id: str, verification: dict[str, Any]) -> None:
        await self.session.execute(
            update(Source)
            .where(Source.id == source_id)
            .values(verification=verification, updated_at=Source.updated_at)
        )

    async def subscriptions_after(
        self, cursor: str, *, limit: int
    ) -> Sequence[tuple[str, str, str | None, dict[str, str]]]:
        query = (
            select(
                Subscription.id,
                Subscription.secret,
                Subscription.previous_secret,
                Subscription.headers,
            )
            .where(Subscription.id > cursor)
            .order_by(Subscription.id)
            .limit(limit)
        )
        return [
            (row.id, row.secret, row.previous_secret, row.headers)
            for row in await self.session.execute(query)
        ]

    async def rewrite_subscription(
        self,
        subscription_id: str,
        secret: str,
        previous_secret: str | None,
        headers: dict[str, str],
    ) -> None:
        await self.session.execute(
            update(Subscription)
            .where(Subscription.id == subscription_id)
            .values(
                secret=secret,
                previous_secret=previous_secret,
                headers=headers,
                updated_at=Subscription.updated_at,
            )
        )
