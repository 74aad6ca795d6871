"""The sources and live subscriptions the ingest reads, kept in memory for a moment.

Every webhook needs its source (credentials decrypted, mapping parsed) and the subscriptions
that may want its events. Reading them cost a round trip and a decryption per webhook, for
rows that change a few times a day. The ingest keeps what it read for up to `KEEP_SECONDS`, and
exactness does not depend on it:

- A webhook is stored only if the configuration it was handled with is still current when its
  statement runs (`ConfigVersion`, bumped by triggers); if not, it is handled again with the
  configuration read afresh. So what is stored, and which subscriptions get deliveries, is
  always what the configuration said at commit.
- A refusal for what the configuration says (wrong credentials, inactive source, a body its
  mapping cannot read) is checked against a fresh read first.
- What is left is the rate limit, applied before the body is read: a changed limit takes
  effect within `KEEP_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from relay.ingest.repository import IngestRepository, SubscriptionTarget
from relay.ingest.source import IngestSource

KEEP_SECONDS = 1.0

Found = tuple[IngestSource, Sequence[SubscriptionTarget]]


@dataclass(frozen=True, slots=True)
class _Kept:
    found: Found
    until: float


class SourceDirectory:
    def __init__(self, engine: AsyncEngine, *, keep_seconds: float = KEEP_SECONDS) -> None:
        self.engine = engine
        self.keep_seconds = keep_seconds
        self._kept: dict[str, _Kept] = {}

    async def lookup(self, slug: str, *, fresh: bool = False) -> Found | None:
        """The source named `slug`, active or not, with every subscription that takes new
        deliveries; None if there is no such source. `fresh` reads the database."""
        kept = self._kept.get(slug)
        now = time.monotonic()
        if kept is not None and not fresh and now < kept.until:
            return kept.found
        async with self.engine.connect() as connection:
            read = await IngestRepository(connection).lookup(slug)
        if read is None:
            # Unknown slugs are not kept: anyone can send any number of them.
            self._kept.pop(slug, None)
            return None
        row, subscriptions = read
        found = (IngestSource.of(row), subscriptions)
        self._kept[slug] = _Kept(found, now + self.keep_seconds)
        return found

    async def changed_since(self, source: IngestSource) -> bool:
        """Whether the configuration changed after `source` was read (a fresh read, kept)."""
        found = await self.lookup(source.slug, fresh=True)
        return found is None or found[0].config_version != source.config_version
