"""All SQL of the retention purge: one small batch per statement, and the dry run's counts.

Every batch picks its rows with `FOR UPDATE SKIP LOCKED`, so two processes purging at once
share the work instead of waiting on each other, and a row another transaction holds (an
event a replay job is reading, say) is left for the next pass.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, TextClause, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from relay.outbox import transitions


def _timed(sql: str, *names: str) -> TextClause:
    # asyncpg must be told the cutoffs are timestamptz where they are compared.
    return text(sql).bindparams(*(bindparam(name, type_=DateTime(timezone=True)) for name in names))


# An event goes only when none of its deliveries is still pending; its deliveries and their
# attempts go with it (ON DELETE CASCADE).
_DELETE_EVENTS = _timed(
    """
    DELETE FROM events WHERE id IN (
        SELECT e.id FROM events AS e
        WHERE e.received_at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id AND d.status = 'pending'
          )
        ORDER BY e.received_at
        LIMIT :limit
        FOR UPDATE OF e SKIP LOCKED
    )
    """,
    "cutoff",
)

_DELETE_REQUESTS = _timed(
    """
    DELETE FROM inbound_requests WHERE id IN (
        SELECT id FROM inbound_requests WHERE received_at < :cutoff
        ORDER BY received_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """,
    "cutoff",
)

_DELETE_DEDUPE_KEYS = _timed(
    """
    DELETE FROM dedupe_keys WHERE (source_id, key) IN (
        SELECT source_id, key FROM dedupe_keys WHERE created_at < :cutoff
        ORDER BY created_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    """,
    "cutoff",
)

_PREVIEW = _timed(
    """
    WITH purgeable AS (
        SELECT e.id FROM events AS e
        WHERE e.received_at < :cutoff
          AND NOT EXISTS (
              SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id AND d.status = 'pending'
          )
    ),
    doomed_deliveries AS (
        SELECT d.id FROM deliveries AS d JOIN purgeable ON purgeable.id = d.event_id
    )
    SELECT
        (SELECT count(*) FROM purgeable) AS events,
        (SELECT count(*) FROM doomed_deliveries) AS deliveries,
        (SELECT count(*) FROM delivery_attempts AS a
            JOIN doomed_deliveries ON doomed_deliveries.id = a.delivery_id) AS delivery_attempts,
        (SELECT count(*) FROM events WHERE received_at < :cutoff)
            - (SELECT count(*) FROM purgeable) AS events_kept_pending,
        (SELECT count(*) FROM inbound_requests WHERE received_at < :cutoff) AS inbound_requests,
        (SELECT count(*) FROM dedupe_keys WHERE created_at < :dedupe_cutoff) AS dedupe_keys,
        CASE WHEN CAST(:body_cutoff AS timestamptz) > :cutoff THEN
            (SELECT count(*) FROM delivery_attempts AS a
             WHERE a.response_body IS NOT NULL AND a.started_at < :body_cutoff
               AND NOT EXISTS (
                   SELECT 1 FROM doomed_deliveries WHERE doomed_deliveries.id = a.delivery_id
               ))
        ELSE 0 END AS attempt_bodies
    """,
    "cutoff",
    "dedupe_cutoff",
    "body_cutoff",
)


class RetentionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _run(self, statement: TextClause, cutoff: datetime, limit: int) -> int:
        result = await self.session.execute(statement, {"cutoff": cutoff, "limit": limit})
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def delete_events(self, *, before: datetime, limit: int) -> int:
        return await self._run(_DELETE_EVENTS, before, limit)

    async def delete_inbound_requests(self, *, before: datetime, limit: int) -> int:
        return await self._run(_DELETE_REQUESTS, before, limit)

    async def delete_dedupe_keys(self, *, before: datetime, limit: int) -> int:
        return await self._run(_DELETE_DEDUPE_KEYS, before, limit)

    async def clear_attempt_bodies(self, *, before: datetime, limit: int) -> int:
        return await transitions.clear_attempt_bodies(self.session, before=before, limit=limit)

    async def preview(
        self, *, before: datetime, dedupe_before: datetime, bodies_before: datetime
    ) -> dict[str, int]:
        row = (
            await self.session.execute(
                _PREVIEW,
                {"cutoff": before, "dedupe_cutoff": dedupe_before, "body_cutoff": bodies_before},
            )
        ).one()
        return {name: int(value) for name, value in row._mapping.items()}
