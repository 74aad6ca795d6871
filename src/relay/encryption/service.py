"""Rewriting stored secrets under the newest key of the keyring, one batch at a time."""

from __future__ import annotations

from relay.encryption.repository import EncryptionRepository


class EncryptionService:
    def __init__(self, repository: EncryptionRepository) -> None:
        self.repository = repository

    async def rotate_sources(self, *, after: str, limit: int) -> list[str]:
        """Rewrites the next batch of sources after the id `after`; returns their ids."""
        rows = await self.repository.sources_after(after, limit=limit)
        for source_id, verification in rows:
            await self.repository.rewrite_source(source_id, verification)
        await self.repository.session.flush()
        return [row[0] for row in rows]

    async def rotate_subscriptions(self, *, after: str, limit: int) -> list[str]:
        rows = await self.repository.subscriptions_after(after, limit=limit)
        for subscription_id, secret, previous, headers in rows:
            await self.repository.rewrite_subscription(subscription_id, secret, previous, headers)
        await self.repository.session.flush()
        return [row[0] for row in rows]
